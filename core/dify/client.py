"""DifyClient: one aiohttp session for streaming chat/workflow runs and the small JSON endpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

from core.dify.errors import (
    DifyAppBusy,
    DifyAppUnavailable,
    DifyBadBaseUrl,
    DifyError,
    DifyProtocolError,
    DifyTimeout,
    DifyTransportError,
    DifyUnreachable,
    classify,
)
from core.dify.events import StreamEvent, event_from_json
from core.dify.sse import SSEDecodeError, SSEDecoder, SSEMessage
from core.errors import AnswerIdle
from core.files.model import CHUNK, FileFetchFailed, FileProblem

log = logging.getLogger(__name__)

CHAT_MODES = frozenset({"chat", "agent-chat", "advanced-chat", "agent"})
WORKFLOW_MODE = "workflow"
DEFAULT_RETRY_DELAYS = (0.5, 2.0)

Sleep = Callable[[float], Awaitable[None]]
ReadPause = Callable[[], float]
# A rest shorter than this saves no wake-up worth having; a longer one than this would delay noticing an
# answer that ran out of time (the deadline is checked as events arrive).
MIN_READ_PAUSE = 0.05
MAX_READ_PAUSE = 1.0

# False while answering a caller that retries by itself, so one busy answer is not retried twice over.
_retry_busy: ContextVar[bool] = ContextVar("dify_retry_busy", default=True)


@contextmanager
def caller_retries() -> Iterator[None]:
    """Within this block a busy app (429 too_many_requests) is not retried: the caller gets it and retries."""
    token = _retry_busy.set(False)
    try:
        yield
    finally:
        _retry_busy.reset(token)


@dataclass(frozen=True, slots=True)
class AppInfo:
    """What GET /info says about the app."""

    name: str
    mode: str
    description: str = ""


class DifyClient:
    """Talks to one Dify app. Retries only before a stream has started; never after."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        idle_timeout: float = 120.0,
        app_mode: str = "",
        workflow_input: str = "query",
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        sleep: Sleep = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._mode = app_mode
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._workflow_input = workflow_input
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            # Streams are long-lived: aiohttp's default pool of 100 connections would queue answer 101.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "dify-bots"}, connector=connector
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("DifyClient is not open: use `async with DifyClient(...)`")
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    @property
    def host_url(self) -> str:
        """The base URL without its `/v1`: relative `/files/...` links resolve against it."""
        base = self._base_url
        return base[: -len("/v1")] if base.endswith("/v1") else base

    # ---- small JSON endpoints -------------------------------------------------------------------

    async def _request_json(self, method: str, path: str, *, body: Mapping[str, Any] | None = None) -> Any:
        with _transport_errors(f"{method} {path}"):
            async with self.session.request(
                method, f"{self._base_url}{path}", json=body, headers=self._headers(), timeout=self._timeout
            ) as response:
                if response.status >= 400:
                    raise await _error_from_response(response)
                if response.status == 204:
                    return None
                _not_an_html_page(response, f"{method} {path}")
                return await response.json(content_type=None)

    async def info(self) -> AppInfo:
        data = await self._request_json("GET", "/info")
        if not isinstance(data, Mapping):
            raise DifyProtocolError("GET /info did not return an object")
        info = AppInfo(
            name=str(data.get("name") or ""),
            mode=str(data.get("mode") or ""),
            description=str(data.get("description") or ""),
        )
        if not self._mode:
            self._mode = info.mode
        return info

    async def parameters(self) -> Mapping[str, Any]:
        data = await self._request_json("GET", "/parameters")
        return data if isinstance(data, Mapping) else {}

    async def app_mode(self) -> str:
        """The app's mode, detected once with GET /info unless configured."""
        if not self._mode:
            await self.info()
        return self._mode

    async def stop(self, *, task_id: str, user: str) -> None:
        mode = await self.app_mode()
        path = f"/workflows/tasks/{task_id}/stop" if mode == WORKFLOW_MODE else f"/chat-messages/{task_id}/stop"
        await self._request_json("POST", path, body={"user": user})

    async def delete_conversation(self, *, conversation_id: str, user: str) -> None:
        await self._request_json("DELETE", f"/conversations/{conversation_id}", body={"user": user})

    async def feedback(self, *, message_id: str, rating: str | None, user: str) -> None:
        """Rate an answer `like` or `dislike`, or clear its rating with None (only when it has one)."""
        await self._request_json(
            "POST", f"/messages/{message_id}/feedbacks", body={"rating": rating, "user": user, "content": ""}
        )

    async def suggested(self, *, message_id: str, user: str) -> list[str]:
        """The follow-up questions Dify suggests after an answer."""
        data = await self._request_json("GET", f"/messages/{message_id}/suggested?user={quote(user)}")
        found = data.get("data") if isinstance(data, Mapping) else None
        return [item for item in found if isinstance(item, str) and item.strip()] if isinstance(found, list) else []

    # ---- files ----------------------------------------------------------------------------------

    async def _post_file(self, path: str, *, file: Path, name: str, mime: str, user: str) -> Any:
        """POST one multipart `file` part streamed from disk, plus `user`; the JSON answer."""
        with _transport_errors(f"POST {path}"), file.open("rb") as handle:
            form = aiohttp.FormData(quote_fields=False)  # Dify keeps a name as sent: no %20
            form.add_field("user", user)
            form.add_field("file", handle, filename=name, content_type=mime)
            async with self.session.post(
                f"{self._base_url}{path}", data=form, headers=self._headers(), timeout=self._timeout
            ) as response:
                if response.status >= 400:
                    raise await _error_from_response(response)
                _not_an_html_page(response, f"POST {path}")
                return await response.json(content_type=None)

    async def upload_file(self, *, path: Path, name: str, mime: str, user: str) -> str:
        """POST /files/upload (streamed from `path`) for `user`; the upload_file_id."""
        data = await self._post_file("/files/upload", file=path, name=name, mime=mime, user=user)
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str) or not data["id"]:
            raise DifyProtocolError("POST /files/upload did not return a file id")
        return str(data["id"])

    async def audio_to_text(self, *, path: Path, name: str, mime: str, user: str) -> str:
        """POST /audio-to-text; the transcript. `mime` must be one Dify accepts (audio/mp3, audio/wav, ...)."""
        data = await self._post_file("/audio-to-text", file=path, name=name, mime=mime, user=user)
        if not isinstance(data, Mapping) or not isinstance(data.get("text"), str):
            raise DifyProtocolError("POST /audio-to-text did not return text")
        return str(data["text"])

    async def fetch_file(self, url: str, dest: Path, *, max_bytes: int) -> tuple[str, int]:
        """GET an absolute file URL into `dest`, at most `max_bytes`; (content type, size).

        Dify's signed links need no key; it is only sent to the Dify API host, never elsewhere."""
        target = URL(url)
        base = URL(self._base_url)
        same_host = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
        headers = self._headers() if same_host else {}
        size = 0
        try:
            async with self.session.get(target, headers=headers, timeout=self._timeout) as response:
                if response.status >= 400:
                    raise FileFetchFailed(f"HTTP {response.status} for a file of the answer")
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise FileProblem("too_large", limit_mb=str(max_bytes // (1024 * 1024)))
                with dest.open("wb") as handle:
                    async for block in response.content.iter_chunked(CHUNK):
                        size += len(block)
                        if size > max_bytes:
                            raise FileProblem("too_large", limit_mb=str(max_bytes // (1024 * 1024)))
                        handle.write(block)
                return response.content_type or "application/octet-stream", size
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileFetchFailed(f"downloading a file of the answer failed: {type(exc).__name__}") from None

    # ---- streaming ------------------------------------------------------------------------------

    async def stream_batches(
        self,
        *,
        query: str,
        user: str,
        conversation_id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        files: Sequence[Mapping[str, Any]] = (),
        pause: ReadPause | None = None,
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """Stream one answer, choosing /chat-messages or /workflows/run from the app's mode; each item holds
        the events of one read of the stream.

        `pause()`, asked after every read, gives the seconds the reader has no use for new text (a chat
        that cannot be edited sooner): reading the connection rests that long (at most `MAX_READ_PAUSE`),
        so what Dify sends meanwhile arrives as one read instead of one wake-up per token."""
        path, body = self._request(await self.app_mode(), query, user, conversation_id, inputs, files)
        response = await self._open(path, body)
        try:
            _not_an_html_page(response, f"POST {path}")
            if "json" in response.content_type:
                # A 200 JSON body here is a blocking answer or an error object, not a stream.
                raise DifyProtocolError(f"POST {path} answered JSON instead of an event stream")
            decoder = SSEDecoder()
            try:
                with _transport_errors(f"the stream of POST {path}"):
                    active_at = self._clock()
                    async for chunk in response.content.iter_any():
                        batch: list[StreamEvent] = []
                        try:
                            for message in decoder.feed(chunk):
                                if (event := _event(message)) is not None:
                                    batch.append(event)
                        except DifyProtocolError:
                            if batch:
                                yield batch  # the events before the broken one still count
                            raise
                        # Pings keep the connection open but say nothing about progress.
                        if batch:
                            active_at = self._clock()
                            yield batch
                        elif self._clock() - active_at >= self._idle_timeout:
                            raise AnswerIdle(f"only pings for {self._idle_timeout:g}s on POST {path}")
                        if pause is not None and (rest := pause()) >= MIN_READ_PAUSE:
                            await self._rest(response, min(rest, MAX_READ_PAUSE))
                    batch = [event for message in decoder.flush() if (event := _event(message)) is not None]
                    if batch:
                        yield batch
            except SSEDecodeError as exc:
                raise DifyProtocolError(f"malformed event stream: {exc}") from exc
        finally:
            response.close()

    def _request(
        self,
        mode: str,
        query: str,
        user: str,
        conversation_id: str | None,
        inputs: Mapping[str, Any] | None,
        files: Sequence[Mapping[str, Any]],
    ) -> tuple[str, dict[str, Any]]:
        """The path and body that ask an app of `mode` for a streamed answer."""
        body: dict[str, Any] = {"inputs": dict(inputs or {}), "user": user, "response_mode": "streaming"}
        if files:
            body["files"] = [dict(item) for item in files]
        if mode == WORKFLOW_MODE:
            body["inputs"].setdefault(self._workflow_input, query)
            return "/workflows/run", body
        if mode in CHAT_MODES:
            body.update(query=query, conversation_id=conversation_id or "", auto_generate_name=False)
            return "/chat-messages", body
        raise DifyAppUnavailable(f"app mode {mode!r} is not supported", code="unsupported_mode")

    async def _open(self, path: str, body: Mapping[str, Any]) -> aiohttp.ClientResponse:
        """POST and return an open 200 event-stream response, retrying what is safe to retry."""
        attempt = 0
        error: DifyError
        while True:
            try:
                with _transport_errors(f"POST {path}"):
                    response = await self.session.post(
                        f"{self._base_url}{path}", json=body, headers=self._headers(), timeout=self._timeout
                    )
            except DifyTransportError as exc:
                error = exc
            else:
                if response.status == 200:
                    return response
                try:
                    error = await _error_from_response(response)
                finally:
                    response.release()
            if not error.retryable or attempt >= len(self._retry_delays):
                raise error
            if isinstance(error, DifyAppBusy) and not _retry_busy.get():
                raise error
            delay = self._retry_delays[attempt]
            attempt += 1
            log.warning("dify %s failed (%r), retry %d in %.1fs", path, error, attempt, delay)
            await self._sleep(delay)

    async def _rest(self, response: aiohttp.ClientResponse, seconds: float) -> None:
        """Leave the stream unread for `seconds`: the kernel holds what arrives meanwhile."""
        transport = response.connection.transport if response.connection is not None else None
        if transport is None:
            return
        transport.pause_reading()
        try:
            await self._sleep(seconds)
        finally:
            if not transport.is_closing():
                transport.resume_reading()


@contextmanager
def _transport_errors(what: str) -> Iterator[None]:
    """Turn a failed, silent or garbled connection while doing `what` into DifyTimeout or DifyTransportError."""
    try:
        yield
    except TimeoutError as exc:
        raise DifyTimeout(f"{what}: nothing arrived within the timeout") from exc
    except aiohttp.ClientConnectorError as exc:
        raise DifyUnreachable(f"{what} failed: {_connect_failure(exc)} ({type(exc).__name__}: {exc})") from exc
    except (aiohttp.ClientError, json.JSONDecodeError) as exc:
        raise DifyTransportError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _connect_failure(error: aiohttp.ClientConnectorError) -> str:
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "certificate not accepted"
    if isinstance(error.os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error.os_error, socket.gaierror):
        return "name or service not known"
    return "no connection"


def _event(message: SSEMessage) -> StreamEvent | None:
    """The event in one SSE block; None for `event: ping` and other blocks without data."""
    if not message.data:
        return None
    try:
        return event_from_json(json.loads(message.data))
    except ValueError as exc:
        raise DifyProtocolError(f"malformed event JSON: {exc}") from exc


def _not_an_html_page(response: aiohttp.ClientResponse, what: str) -> None:
    """A web page where the Service API answers JSON or events: DIFY_BASE_URL points somewhere else."""
    if response.content_type in ("text/html", "application/xhtml+xml"):
        where = response.url.with_query(None)
        raise DifyBadBaseUrl(f"{what} answered an HTML page (HTTP {response.status}) from {where}")


async def _error_from_response(response: aiohttp.ClientResponse) -> DifyError:
    """Turn a non-2xx response (Dify JSON envelope, proxy HTML page, empty body) into a typed error."""
    try:
        raw = await response.read()
    except aiohttp.ClientError:
        raw = b""
    code: str | None = None
    message = f"HTTP {response.status}"
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        code = str(data["code"]) if data.get("code") is not None else None
        message = str(data.get("message") or message)
    elif response.status in (404, 405):
        # Dify answers unknown routes with an HTML page, never its JSON envelope: the base URL is wrong.
        where = response.url.with_query(None)
        return DifyBadBaseUrl(f"HTTP {response.status} without Dify's JSON from {where}", status=response.status)
    return classify(response.status, code, message)
