"""One answer relayed as an OpenAI response: answer sinks for a chat.completion body and a chunk stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable

from aiohttp import web

from bots.openai_api.errors import ApiError, from_bot_error
from bots.openai_api.feed import Feed
from bots.openai_api.payloads import DONE_FRAME, Completion, chunk_body, completion_body, file_links, sse_frame
from core.answer import Done, Failed, FileRef, Files, ReplyEvent, TextDelta, TextReplace
from core.dify.errors import DifyProtocolError
from core.errors import BotError
from core.render.renderer import RenderStats
from core.service import ReplyStream
from core.texts import friendly_error

log = logging.getLogger(__name__)

NO_OUTCOME = "the answer ended without an outcome"


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


class AnswerRelay:
    """An `AnswerSink` for one HTTP request: stats, interrupts, and stopping Dify's task nobody waits for."""

    def __init__(
        self,
        request: web.Request,
        stream: ReplyStream,
        meta: Completion,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request = request
        self._stream = stream
        self._meta = meta
        self._clock = clock
        self.stats = RenderStats()
        self._feed: Feed | None = None
        self._interruption: BotError | None = None
        self._error: ApiError | None = None
        self._response: web.StreamResponse | None = None
        self.hold_back = False  # send no text until the answer is final (streamed workflow previews)
        self.host_url = ""  # Dify's host: the answer's file links are made absolute against it
        self._files: list[FileRef] = []

    def _links(self, answer: str) -> str:
        """The Markdown links to the answer's files that follow its text."""
        return file_links(answer, self._files, self.host_url)

    def response(self) -> web.StreamResponse:
        """What the handler returns once `render` is done; raises the HTTP error of a failure before any text."""
        if self._error is not None:
            raise self._error
        return self._response if self._response is not None else web.Response()  # nobody reads it

    def interrupt(self, error: BotError) -> None:
        """End the response now (shutdown), even while Dify is silent; Dify's task is stopped too."""
        if self._interruption is not None or self.stats.outcome != "pending":
            return
        self._interruption = error
        if self._feed is not None:
            self._feed.interrupt()

    async def render(self, events: AsyncIterable[ReplyEvent]) -> RenderStats:
        self.stats.started_at = self._clock()
        feed = self._feed = Feed(events)
        if self._interruption is not None:
            feed.interrupt()
        try:
            await self._relay(feed)
            if self.stats.final_at is None:
                self.stats.final_at = self._clock()  # an error response is the answer's final frame
        except (ClientGone, ConnectionError):
            log.info("the caller of %s went away; stopping its answer", self._meta.id)
            self.stats.outcome = "blocked"  # like a chat that blocked the bot: the answer cannot be delivered
            await self._stop_source()
        except asyncio.CancelledError:
            log.info("the request for %s was cancelled; stopping its answer", self._meta.id)
            await asyncio.shield(self._stop_source())
            raise
        finally:
            await feed.close()
        return self.stats

    async def _relay(self, feed: Feed) -> None:
        raise NotImplementedError

    async def _stop_source(self) -> None:
        """Stop the Dify task behind an answer that will not be read to the end (best effort)."""
        try:
            await self._stream.stop()
        except Exception as exc:  # the answer is over either way
            log.warning("could not stop task %s: %r", self._stream.task_id, exc)

    def _settle(self, outcome: str, error: BotError | None = None) -> None:
        self.stats.outcome = outcome
        self.stats.error = error

    def _check_caller(self) -> None:
        if _gone(self._request):
            raise ClientGone


class CompletionRelay(AnswerRelay):
    """`stream: false`: one chat.completion body; any failure is an HTTP error, even after some text."""

    async def _relay(self, feed: Feed) -> None:
        while (event := await feed.next()) is not None:
            self._check_caller()
            if isinstance(event, Failed):
                self._settle("failed", event.error)
                self._error = from_bot_error(event.error)
                return
            if isinstance(event, Files):
                self._files.extend(event.files)
                continue
            if isinstance(event, Done):
                self._settle("done")
                content = event.answer + self._links(event.answer)
                self._response = web.json_response(completion_body(self._meta, content, event.usage))
                now = self._clock()
                self.stats.first_text_at = now if event.answer.strip() else None
                self.stats.final_at = now
                self.stats.sends = 1
                return
        if self._interruption is not None:
            self._settle("interrupted", self._interruption)
            self._error = from_bot_error(self._interruption)
            await self._stop_source()
            return
        error = DifyProtocolError(NO_OUTCOME)
        self._settle("failed", error)
        self._error = from_bot_error(error)


class ChunkRelay(AnswerRelay):
    """`stream: true`: chat.completion.chunk frames as text comes. Sent text cannot be taken back.

    With `hold_back` (workflow apps) streamed text is a preview the run's outputs replace, so the
    answer is sent once it is final rather than sent wrong.
    """

    async def _relay(self, feed: Feed) -> None:
        sent = answer = ""
        while (event := await feed.next()) is not None:
            self._check_caller()
            if isinstance(event, Failed):
                await self._fail(event.error)
                return
            if isinstance(event, Files):
                self._files.extend(event.files)
                continue
            answer = _answer_after(event, answer)
            if self.hold_back and not isinstance(event, Done):
                continue
            if len(answer) > len(sent) and answer.startswith(sent):
                await self._send(chunk_body(self._meta, {"content": answer[len(sent) :]}))
                sent = answer
                if self.stats.first_text_at is None and sent.strip():
                    self.stats.first_text_at = self._clock()
            if isinstance(event, Done):
                links = self._links(answer)
                if links:
                    await self._send(chunk_body(self._meta, {"content": links}))
                self._settle("done")
                await self._finish(chunk_body(self._meta, {}, finish_reason="stop", usage=event.usage))
                return
        if self._interruption is not None:
            await self._interrupted(self._interruption, after_text=bool(sent))
            return
        await self._fail(DifyProtocolError(NO_OUTCOME))

    async def _fail(self, error: BotError) -> None:
        self._settle("failed", error)
        if self._response is None:
            self._error = from_bot_error(error)  # nothing sent yet: a proper HTTP error
            return
        log.info("answer %s failed after it began streaming: %r", self._meta.id, error)
        # The official clients raise APIError on an `error` frame; the message is the friendly sentence.
        await self._finish(from_bot_error(error).body())

    async def _interrupted(self, error: BotError, *, after_text: bool) -> None:
        self._settle("interrupted", error)
        if self._response is None:
            self._error = from_bot_error(error)
        else:
            line = ("\n\n" if after_text else "") + friendly_error(error)
            await self._finish(chunk_body(self._meta, {"content": line}, finish_reason="stop"))
        await self._stop_source()

    async def _send(self, body: dict[str, object]) -> None:
        """One frame; the headers and the role chunk go out with the first one."""
        if self._response is None:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(self._request)
            self._response = response
            await response.write(sse_frame(chunk_body(self._meta, {"role": "assistant", "content": ""})))
            self.stats.sends += 1
        await self._response.write(sse_frame(body))
        self.stats.sends += 1

    async def _finish(self, body: dict[str, object]) -> None:
        await self._send(body)
        assert self._response is not None
        await self._response.write(DONE_FRAME)
        await self._response.write_eof()
        self.stats.final_at = self._clock()
