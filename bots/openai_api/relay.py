"""One Dify answer relayed as an OpenAI response: a chat.completion body, or a chat.completion.chunk stream."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bots.openai_api.errors import from_bot_error
from bots.openai_api.payloads import DONE_FRAME, Completion, chunk_body, completion_body, sse_frame
from core.answer import Done, Failed, ReplyEvent, TextDelta, TextReplace, Usage
from core.dify.errors import DifyProtocolError
from core.errors import BotError
from core.service import ReplyStream
from core.texts import friendly_error

log = logging.getLogger(__name__)

_NO_OUTCOME = "the answer ended without an outcome"


class ClientGone(Exception):
    """The caller closed the connection before the answer was complete."""


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _answer_after(event: ReplyEvent, answer: str) -> str:
    if isinstance(event, TextDelta):
        return answer + event.text
    if isinstance(event, TextReplace):
        return event.text
    if isinstance(event, Done):
        return event.answer
    return answer


async def _stop(stream: ReplyStream) -> None:
    """Stop the Dify task behind an answer nobody is waiting for any more (best effort)."""
    try:
        await stream.stop()
    except Exception as exc:  # the answer is abandoned either way
        log.warning("could not stop task %s: %r", stream.task_id, exc)


async def relay_completion(request: web.Request, stream: ReplyStream, meta: Completion) -> web.StreamResponse:
    """`stream: false`: wait for the outcome; a failure is an HTTP error even if some text had arrived."""
    try:
        async for event in stream:
            if _gone(request):
                raise ClientGone
            if isinstance(event, Failed):
                raise from_bot_error(event.error)
            if isinstance(event, Done):
                return web.json_response(completion_body(meta, event.answer, event.usage))
        raise from_bot_error(DifyProtocolError(_NO_OUTCOME))
    except (ClientGone, asyncio.CancelledError) as exc:
        log.info("the caller of %s went away; stopping its answer", meta.id)
        await asyncio.shield(_stop(stream))
        if isinstance(exc, asyncio.CancelledError):
            raise
        return web.Response()  # nobody reads it


class _ChunkWriter:
    """The SSE response of one completion; its headers go out with the first text or the outcome."""

    def __init__(self, request: web.Request, meta: Completion) -> None:
        self._request = request
        self._meta = meta
        self.response: web.StreamResponse | None = None

    async def _send(self, body: dict[str, object]) -> None:
        if self.response is None:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(self._request)
            self.response = response
            await response.write(sse_frame(chunk_body(self._meta, {"role": "assistant", "content": ""})))
        await self.response.write(sse_frame(body))

    async def text(self, text: str) -> None:
        await self._send(chunk_body(self._meta, {"content": text}))

    async def finish(self, reason: str, *, usage: Usage | None = None, content: str = "") -> web.StreamResponse:
        delta = {"content": content} if content else {}
        await self._send(chunk_body(self._meta, delta, finish_reason=reason, usage=usage))
        assert self.response is not None
        await self.response.write(DONE_FRAME)
        await self.response.write_eof()
        return self.response


async def relay_stream(request: web.Request, stream: ReplyStream, meta: Completion) -> web.StreamResponse:
    """`stream: true`: text as it comes. Sent text cannot be taken back, so only what extends it is sent."""
    out = _ChunkWriter(request, meta)
    sent = answer = ""

    async def fail(error: BotError) -> web.StreamResponse:
        if out.response is None:
            raise from_bot_error(error)  # nothing sent yet: a proper HTTP error
        log.info("answer %s failed after it began streaming: %r", meta.id, error)
        return await out.finish("error", content=("\n\n" if sent else "") + friendly_error(error))

    try:
        async for event in stream:
            if _gone(request):
                raise ClientGone
            if isinstance(event, Failed):
                return await fail(event.error)
            answer = _answer_after(event, answer)
            if len(answer) > len(sent) and answer.startswith(sent):
                await out.text(answer[len(sent) :])
                sent = answer
            if isinstance(event, Done):
                return await out.finish("stop", usage=event.usage)
        return await fail(DifyProtocolError(_NO_OUTCOME))
    except (ClientGone, ConnectionError, asyncio.CancelledError) as exc:
        log.info("the caller of %s went away; stopping its answer", meta.id)
        await asyncio.shield(_stop(stream))
        if isinstance(exc, asyncio.CancelledError):
            raise
        return out.response or web.Response()  # nobody reads it
