"""Slack surfaces: one answer as chat.update edits of thread replies, or as native chat streams."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.markdown import to_mrkdwn
from core.render.surface import (
    SurfaceBlocked,
    SurfaceBusy,
    SurfaceError,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)
from core.render.throttle import TokenBucket

log = logging.getLogger(__name__)

# chat.update with markdown_text takes 12,000 characters, but long messages get refused well before that
# in practice: keep each message of the update path under 4k.
UPDATE_LIMITS = SurfaceLimits(max_length=3900, cursor_length=2, placeholder=True)
# A stream is append-only (no placeholder to overwrite); each call takes at most 12,000 characters.
STREAM_LIMITS = SurfaceLimits(max_length=11000, cursor_length=0, placeholder=False)
MAX_CALL_CHARS = 12000
CURSOR = " ▌"
THINKING = "is thinking…"
STATUS_REFRESH = 60.0  # Slack drops a status after 2 minutes without a message
STOP_ATTEMPTS = 3
MAX_STOP_PAUSE = 5.0
DEFAULT_RETRY_AFTER = 1.0

RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "markdown_text_too_long"})
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
BLOCKED = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "restricted_action",
        "ekm_access_denied",
    }
)
# chat.startStream answers meaning native streaming is not available for this app, workspace or channel.
NO_STREAMING = frozenset(
    {
        "feature_not_enabled",
        "not_allowed_token_type",
        "unknown_method",
        "missing_scope",
        "missing_recipient_user_id",
        "missing_recipient_team_id",
        "invalid_arguments",
        "not_supported",
        "method_deprecated",
    }
)
NOT_STREAMING = "message_not_in_streaming_state"
STREAM_CONFLICT = "streaming_state_conflict"
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, SlackClientError)


def error_code(exc: SlackApiError) -> str:
    """The `error` field of a failed Web API answer ('' when the body had none)."""
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or "")


def _status_code(exc: SlackApiError) -> int:
    status = getattr(exc.response, "status_code", 0)
    return status if isinstance(status, int) else 0


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return DEFAULT_RETRY_AFTER


def surface_error(exc: Exception) -> SurfaceError:
    """Map a slack_sdk or network failure to what the renderer reacts to."""
    if not isinstance(exc, SlackApiError):
        return SurfaceTransient(repr(exc))
    code = error_code(exc)
    status = _status_code(exc)
    if status == 429 or code in RATE_LIMITED:
        return SurfaceRateLimited(_retry_after(exc))
    if code in TOO_LONG:
        return SurfaceTooLong(code)
    if code in GONE:
        return SurfaceMessageGone(code)
    if code in BLOCKED:
        return SurfaceBlocked(code)
    return SurfaceTransient(code or f"HTTP {status}")


# Errors with which a workspace or API version refuses `markdown_text`.
MARKDOWN_REFUSED = frozenset({"invalid_arguments", "invalid_markdown", "markdown_text_not_supported"})


BudgetFor = Callable[[str], TokenBucket | None]
BUSY_RETRY = 0.5  # seconds before an interim frame tries a spent budget again


class _Slack:
    """Web API calls of one answer, counted per method and kept within the workspace's budgets."""

    def __init__(
        self, client: AsyncWebClient, *, channel: str, thread_ts: str, budget: BudgetFor | None = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.calls: Counter[str] = Counter()
        self.urgent = False  # a final frame waits for budget; an interim one is skipped instead
        self._budget = budget
        self._status_broken = False
        self._status_shown: str | None = None
        self._status_at = float("-inf")
        self._mrkdwn = False

    async def call(self, method: str, request: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
        bucket = self._budget(method) if self._budget is not None else None
        if bucket is not None:
            if self.urgent:
                await bucket.take()
            elif not bucket.try_take(reserve=bucket.burst // 2):  # half the burst is kept for final frames
                if inspect.iscoroutine(request):
                    request.close()  # never sent
                raise SurfaceBusy(max(bucket.delay(), BUSY_RETRY))
        self.calls[method] += 1
        return await request

    async def post(self, markdown: str) -> str:
        if not self._mrkdwn:
            try:
                response = await self.call(
                    "chat.postMessage",
                    self.client.chat_postMessage(
                        channel=self.channel, thread_ts=self.thread_ts, markdown_text=markdown
                    ),
                )
                return str(response["ts"])
            except SlackApiError as exc:
                self._give_up_markdown(exc)
        response = await self.call(
            "chat.postMessage",
            self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=to_mrkdwn(markdown)),
        )
        return str(response["ts"])

    async def update(self, ts: str, markdown: str) -> None:
        if not self._mrkdwn:
            try:
                await self.call(
                    "chat.update", self.client.chat_update(channel=self.channel, ts=ts, markdown_text=markdown)
                )
                return
            except SlackApiError as exc:
                self._give_up_markdown(exc)
        await self.call("chat.update", self.client.chat_update(channel=self.channel, ts=ts, text=to_mrkdwn(markdown)))

    def _give_up_markdown(self, exc: SlackApiError) -> None:
        """Where Slack refuses `markdown_text`, send Slack's own mrkdwn in `text` from now on."""
        if error_code(exc) not in MARKDOWN_REFUSED:
            raise exc
        log.info("slack refused markdown_text (%s); sending mrkdwn text instead", error_code(exc))
        self._mrkdwn = True

    async def delete(self, ts: str) -> None:
        await self.call("chat.delete", self.client.chat_delete(channel=self.channel, ts=ts))

    async def set_status(self, text: str) -> None:
        """Best effort; after the first failure (often a missing scope) stop trying for this answer."""
        if self._status_broken:
            return
        now = time.monotonic()
        if text == self._status_shown and now - self._status_at < STATUS_REFRESH:
            return
        try:
            await self.call(
                "assistant.threads.setStatus",
                self.client.assistant_threads_setStatus(channel_id=self.channel, thread_ts=self.thread_ts, status=text),
            )
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            self._status_broken = True
            log.info("cannot set the thread status in %s: %s", self.channel, _describe(exc))
            return
        self._status_shown, self._status_at = text, now


def _describe(exc: Exception) -> str:
    return (error_code(exc) or repr(exc)) if isinstance(exc, SlackApiError) else repr(exc)


def _stream_delta(shown: str, markdown: str) -> str | None:
    """What to append to a stream showing `shown` so that it shows `markdown`; None if it cannot."""
    if markdown.startswith(shown):
        return markdown[len(shown) :]
    base = shown.rstrip()
    rest = markdown[len(base) :]
    if markdown.startswith(base) and (not rest or rest.startswith("\n\n")):
        # Only the whitespace the stream ends with differs (the final frame is stripped, notes follow
        # after a blank line): Markdown renders both alike, so no rewrite is needed.
        return rest
    return None


def _frame(markdown: str, final: bool) -> str:
    return markdown if final else markdown + CURSOR


class UpdateSurface:
    """One answer as thread replies posted with chat.postMessage and rewritten with chat.update."""

    limits = UPDATE_LIMITS

    def __init__(
        self, client: AsyncWebClient, *, channel: str, thread_ts: str, budget: BudgetFor | None = None
    ) -> None:
        self._slack = _Slack(client, channel=channel, thread_ts=thread_ts, budget=budget)
        self.channel = channel
        self.thread_ts = thread_ts
        self.calls: Counter[str] = self._slack.calls  # Web API calls per method, failed ones included
        self._posted = False

    def measure(self, markdown: str) -> int:
        return len(markdown)

    async def send(self, markdown: str, *, final: bool) -> str:
        self._slack.urgent = final
        try:
            ts = await self._slack.post(_frame(markdown, final))
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            raise surface_error(exc) from exc
        self._posted = True
        return ts

    async def edit(self, handle: str, markdown: str, *, final: bool) -> str:
        self._slack.urgent = final
        try:
            await self._slack.update(handle, _frame(markdown, final))
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            raise surface_error(exc) from exc
        return handle

    async def delete(self, handle: str) -> None:
        try:
            await self._slack.delete(handle)
        except SlackApiError as exc:
            if error_code(exc) != "message_not_found":  # already gone is what we wanted
                raise surface_error(exc) from exc
        except NETWORK_ERRORS as exc:
            raise surface_error(exc) from exc

    async def typing(self) -> None:
        # Posting a reply clears the status; setting it again afterwards would leave it hanging under
        # the finished answer, and the placeholder with its cursor shows progress from then on.
        if not self._posted:
            await self._slack.set_status(THINKING)

    async def status(self, text: str) -> None:
        """Progress lines normally go into the placeholder; shown as the thread status if asked."""
        if not self._posted:
            await self._slack.set_status(text)


@dataclass(slots=True)
class _Stream:
    """A message started with chat.startStream: what it shows, and whether it still takes appends."""

    ts: str
    shown: str
    live: bool = True


class NativeStreamSurface:
    """One answer as native Slack streams (chat.startStream / appendStream / stopStream) in the thread.

    When chat.startStream says streaming is unavailable here, the answer continues through the
    `fallback` UpdateSurface (and `native_failed` holds the error code). A stream that Slack closed
    (about 5 minutes after it started) or an answer that was replaced is finished with chat.update.
    """

    limits = STREAM_LIMITS

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        recipient_user_id: str,
        recipient_team_id: str,
        fallback: Callable[[], UpdateSurface] | None = None,
        budget: BudgetFor | None = None,
    ) -> None:
        self._slack = _Slack(client, channel=channel, thread_ts=thread_ts, budget=budget)
        self.channel = channel
        self.thread_ts = thread_ts
        self._recipient_user_id = recipient_user_id
        self._recipient_team_id = recipient_team_id
        self._fallback = fallback
        self._update: UpdateSurface | None = None
        self._streams: dict[str, _Stream] = {}
        self._started = False
        self._status_text: str | None = None
        # Web API calls per method (failed ones included), also those made through the fallback.
        self.calls: Counter[str] = self._slack.calls
        # The chat.startStream error that made this answer fall back (the workspace lacks streaming).
        self.native_failed: str | None = None

    @property
    def fallback_surface(self) -> UpdateSurface | None:
        """The UpdateSurface the answer switched to, if native streaming was refused."""
        return self._update

    def measure(self, markdown: str) -> int:
        if self._update is None:
            return len(markdown)
        # The renderer keeps splitting at our max_length: after a fallback, count characters in
        # proportion so that the longest frame it lays out is one the update surface takes.
        return -(-len(markdown) * self.limits.max_length // UPDATE_LIMITS.max_length)

    # ---- MessageSurface ---------------------------------------------------------------------------

    async def send(self, markdown: str, *, final: bool) -> str:
        self._slack.urgent = final
        if self._update is not None:
            return await self._send_update(markdown, final=final)
        if len(markdown) > MAX_CALL_CHARS:
            raise SurfaceTooLong(f"{len(markdown)} characters")
        try:
            response = await self._slack.call(
                "chat.startStream",
                self._slack.client.chat_startStream(
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    recipient_user_id=self._recipient_user_id,
                    recipient_team_id=self._recipient_team_id,
                    markdown_text=markdown or None,
                ),
            )
        except SlackApiError as exc:
            code = error_code(exc)
            if code in NO_STREAMING or _status_code(exc) == 404:
                return await self._fall_back(code or f"HTTP {_status_code(exc)}", markdown, final=final)
            raise surface_error(exc) from exc
        except NETWORK_ERRORS as exc:
            raise surface_error(exc) from exc
        self._started = True
        stream = self._streams[str(response["ts"])] = _Stream(ts=str(response["ts"]), shown=markdown)
        if final:
            await self._stop_quietly(stream)
        return stream.ts

    async def edit(self, handle: str, markdown: str, *, final: bool) -> str:
        self._slack.urgent = final
        stream = self._streams.get(handle)
        if stream is None:
            if self._update is None:
                raise SurfaceMessageGone(f"unknown message {handle}")
            return await self._edit_update(handle, markdown, final=final)
        try:
            await self._edit_stream(stream, markdown, final=final)
        except SlackApiError as exc:
            error = surface_error(exc)
            if isinstance(error, SurfaceMessageGone):
                self._streams.pop(handle, None)
            raise error from exc
        except NETWORK_ERRORS as exc:
            # The call may have reached Slack all the same: appending the delta again could show it
            # twice, so this message is rewritten in full from now on.
            stream.live = False
            raise surface_error(exc) from exc
        return handle

    async def delete(self, handle: str) -> None:
        stream = self._streams.pop(handle, None)
        if stream is None and self._update is not None:
            await self._update.delete(handle)
            return
        try:
            try:
                await self._slack.delete(handle)
            except SlackApiError as exc:
                if stream is None or not stream.live or error_code(exc) != STREAM_CONFLICT:
                    raise
                await self._stop_for_update(stream, force=True)
                await self._slack.delete(handle)
        except SlackApiError as exc:
            if error_code(exc) != "message_not_found":
                raise surface_error(exc) from exc
        except NETWORK_ERRORS as exc:
            raise surface_error(exc) from exc

    async def typing(self) -> None:
        # The streamed message shows progress once it exists; before that, the thread status does
        # (kept on the last progress line rather than reset to the generic one).
        if not self._started:
            await self._slack.set_status(self._status_text or THINKING)

    async def status(self, text: str) -> None:
        self._status_text = text
        if not self._started:
            await self._slack.set_status(text)

    # ---- streams ----------------------------------------------------------------------------------

    async def _edit_stream(self, stream: _Stream, markdown: str, *, final: bool) -> None:
        if stream.live:
            delta = _stream_delta(stream.shown, markdown)
            if delta is None:
                # The answer was replaced (or cut differently): a stream cannot take text back.
                await self._stop_for_update(stream)
                await self._rewrite(stream, markdown, final=final)
                return
            try:
                await self._append(stream, delta, final=final)
                return
            except SlackApiError as exc:
                if error_code(exc) != NOT_STREAMING:
                    raise
                # Slack closed the stream (about 5 minutes after it started): rewrite it from now on.
                log.info("stream %s in %s was closed by Slack; continuing with chat.update", stream.ts, self.channel)
                stream.live = False
        await self._rewrite(stream, markdown, final=final)

    async def _append(self, stream: _Stream, delta: str, *, final: bool) -> None:
        """Append `delta` (in calls of at most MAX_CALL_CHARS); a final frame ends with chat.stopStream."""
        while len(delta) > MAX_CALL_CHARS or (delta and not final):
            piece = delta[:MAX_CALL_CHARS]
            await self._slack.call(
                "chat.appendStream",
                self._slack.client.chat_appendStream(channel=self.channel, ts=stream.ts, markdown_text=piece),
            )
            stream.shown += piece
            delta = delta[len(piece) :]
        if final:
            await self._slack.call(
                "chat.stopStream",
                self._slack.client.chat_stopStream(channel=self.channel, ts=stream.ts, markdown_text=delta or None),
            )
            stream.shown += delta
            stream.live = False

    async def _rewrite(self, stream: _Stream, markdown: str, *, final: bool) -> None:
        try:
            await self._slack.update(stream.ts, _frame(markdown, final))
        except SlackApiError as exc:
            if error_code(exc) != STREAM_CONFLICT:
                raise
            await self._stop_for_update(stream, force=True)
            await self._slack.update(stream.ts, _frame(markdown, final))
        stream.shown = markdown

    async def _stop_for_update(self, stream: _Stream, *, force: bool = False) -> None:
        """End a live stream so that chat.update may rewrite the message."""
        if not stream.live and not force:
            return
        try:
            await self._slack.call(
                "chat.stopStream", self._slack.client.chat_stopStream(channel=self.channel, ts=stream.ts)
            )
        except SlackApiError as exc:
            if error_code(exc) != NOT_STREAMING:
                raise
        stream.live = False

    async def _stop_quietly(self, stream: _Stream) -> None:
        """Finish a stream whose text is complete. The message already shows everything, so failures
        are retried briefly and then left to Slack, which closes streams on its own."""
        for attempt in range(STOP_ATTEMPTS):
            try:
                await self._stop_for_update(stream)
                return
            except SlackApiError as exc:
                error = surface_error(exc)
                if not isinstance(error, SurfaceRateLimited | SurfaceTransient) or attempt == STOP_ATTEMPTS - 1:
                    log.warning("could not stop stream %s in %s: %s", stream.ts, self.channel, _describe(exc))
                    return
                pause = error.retry_after if isinstance(error, SurfaceRateLimited) else 0.5
                await asyncio.sleep(min(pause, MAX_STOP_PAUSE))
            except NETWORK_ERRORS as exc:
                if attempt == STOP_ATTEMPTS - 1:
                    log.warning("could not stop stream %s in %s: %r", stream.ts, self.channel, exc)
                    return
                await asyncio.sleep(0.5)

    # ---- fallback ---------------------------------------------------------------------------------

    async def _fall_back(self, code: str, markdown: str, *, final: bool) -> str:
        self.native_failed = code
        if self._fallback is None:
            raise SurfaceTransient(f"native streaming unavailable: {code}")
        log.info("native streaming unavailable in %s (%s); using chat.update", self.channel, code)
        update = self._fallback()
        self.calls.update(update.calls)
        update.calls = update._slack.calls = self.calls  # one counter for the whole answer
        self._update = update
        return await self._send_update(markdown, final=final)

    def _fits_update(self, markdown: str) -> None:
        if len(markdown) > UPDATE_LIMITS.max_length:
            raise SurfaceTooLong(f"{len(markdown)} characters after falling back to chat.update")

    async def _send_update(self, markdown: str, *, final: bool) -> str:
        assert self._update is not None
        self._fits_update(markdown)
        ts = await self._update.send(markdown, final=final)
        self._started = True
        return ts

    async def _edit_update(self, handle: str, markdown: str, *, final: bool) -> str:
        assert self._update is not None
        self._fits_update(markdown)
        return await self._update.edit(handle, markdown, final=final)
