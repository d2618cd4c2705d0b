"""NativeStreamSurface: one Slack answer as native chat streams, falling back to chat.update."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.api import BudgetFor, SlackApi
from bots.slack.blocks import Block, ControlBlocks
from bots.slack.errors import NETWORK_ERRORS, describe, error_code, status_code, surface_error
from bots.slack.update_surface import NO_CONTROLS, THINKING, UPDATE_LIMITS, UpdateSurface
from bots.slack.uploads import FileUploader
from core.controls.model import Controls
from core.files.model import ProducedFile
from core.render.surface import (
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)

__all__ = [
    "MAX_CALL_CHARS",
    "NOT_STREAMING",
    "NO_STREAMING",
    "STREAM_CONFLICT",
    "STREAM_LIMITS",
    "NativeStreamSurface",
]

log = logging.getLogger(__name__)

# A stream is append-only (no placeholder to overwrite); each call takes at most 12,000 characters.
STREAM_LIMITS = SurfaceLimits(max_length=11000, cursor_length=0, placeholder=False)
MAX_CALL_CHARS = 12000
STOP_ATTEMPTS = 3
MAX_STOP_PAUSE = 5.0

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


@dataclass(slots=True)
class _Stream:
    """A message started with chat.startStream: what it shows, and whether it still takes appends."""

    ts: str
    shown: str
    live: bool = True
    has_blocks: bool = False  # stopped or rewritten with control blocks: later rewrites use blocks too


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
        self._slack = SlackApi(client, channel=channel, thread_ts=thread_ts, budget=budget)
        self._uploads = FileUploader(self._slack)
        self.channel = channel
        self.thread_ts = thread_ts
        self._recipient_user_id = recipient_user_id
        self._recipient_team_id = recipient_team_id
        self._fallback = fallback
        self._update: UpdateSurface | None = None
        self._streams: dict[str, _Stream] = {}
        self._started = False
        self._status_text: str | None = None
        self._blocks = ControlBlocks()
        # The chat.startStream error that made this answer fall back (the workspace lacks streaming).
        self.native_failed: str | None = None

    @property
    def calls(self) -> Counter[str]:
        """Web API calls per method (failed ones included), also those made through the fallback."""
        return self._slack.calls

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

    async def send(self, markdown: str, *, final: bool, controls: Controls | None = None) -> str:
        self._slack.urgent = final
        if self._update is not None:
            return await self._send_update(markdown, final=final, controls=controls)
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
            if code in NO_STREAMING or status_code(exc) == 404:
                return await self._fall_back(
                    code or f"HTTP {status_code(exc)}", markdown, final=final, controls=controls
                )
            raise surface_error(exc) from exc
        except NETWORK_ERRORS as exc:
            raise surface_error(exc) from exc
        self._started = True
        stream = self._streams[str(response["ts"])] = _Stream(ts=str(response["ts"]), shown=markdown)
        if final:
            await self._stop_quietly(stream, self._closing_blocks(controls))
        return stream.ts

    async def edit(self, handle: str, markdown: str, *, final: bool, controls: Controls | None = None) -> str:
        self._slack.urgent = final
        stream = self._streams.get(handle)
        if stream is None:
            if self._update is None:
                raise SurfaceMessageGone(f"unknown message {handle}")
            return await self._edit_update(handle, markdown, final=final, controls=controls)
        try:
            await self._edit_stream(stream, markdown, final=final, controls=controls or NO_CONTROLS)
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

    async def attach(self, files: Sequence[ProducedFile]) -> None:
        """Share files the app produced into the answer's thread (the same flow after a fallback)."""
        await self._uploads.attach(files)

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

    def _closing_blocks(self, controls: Controls | None) -> list[Block]:
        """What chat.stopStream puts under a finished stream: feedback and suggestions (never Stop)."""
        if not controls:
            return []
        return self._blocks(Controls(feedback=controls.feedback, suggestions=controls.suggestions))

    async def _edit_stream(self, stream: _Stream, markdown: str, *, final: bool, controls: Controls) -> None:
        if stream.live:
            delta = _stream_delta(stream.shown, markdown)
            if delta is None:
                # The answer was replaced (or cut differently): a stream cannot take text back.
                await self._stop_for_update(stream)
                await self._rewrite(stream, markdown, controls)
                return
            if not final:
                # Trailing whitespace waits for the text after it: appended text can't be taken back, and
                # the final frame is stripped.
                delta = delta.rstrip()
            try:
                await self._append(stream, delta, final=final, blocks=self._closing_blocks(controls) if final else [])
                return
            except SlackApiError as exc:
                if error_code(exc) != NOT_STREAMING:
                    raise
                # Slack closed the stream (about 5 minutes after it started): rewrite it from now on.
                log.info("stream %s in %s was closed by Slack; continuing with chat.update", stream.ts, self.channel)
                stream.live = False
        await self._rewrite(stream, markdown, controls)

    async def _append(self, stream: _Stream, delta: str, *, final: bool, blocks: list[Block]) -> None:
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
                self._slack.client.chat_stopStream(
                    channel=self.channel, ts=stream.ts, markdown_text=delta or None, blocks=blocks or None
                ),
            )
            stream.shown += delta
            stream.live = False
            stream.has_blocks = stream.has_blocks or bool(blocks)

    async def _rewrite(self, stream: _Stream, markdown: str, controls: Controls = NO_CONTROLS) -> None:
        # A streamed message carries no cursor (its limits say so): a rewrite shows the text as it is.
        try:
            await self._update_message(stream, markdown, controls)
        except SlackApiError as exc:
            if error_code(exc) != STREAM_CONFLICT:
                raise
            await self._stop_for_update(stream, force=True)
            await self._update_message(stream, markdown, controls)
        stream.shown = markdown

    async def _update_message(self, stream: _Stream, markdown: str, controls: Controls) -> None:
        """chat.update of an ended stream; once it carries blocks (feedback), with blocks (Stop works here)."""
        blocks = self._blocks(controls)
        if blocks or stream.has_blocks:
            await self._slack.update_blocks(stream.ts, markdown, blocks)
            stream.has_blocks = True
        else:
            await self._slack.update(stream.ts, markdown)

    async def _stop_for_update(
        self, stream: _Stream, *, force: bool = False, blocks: list[Block] | None = None
    ) -> None:
        """End a live stream so that chat.update may rewrite the message (`blocks` go under it)."""
        if not stream.live and not force:
            return
        try:
            await self._slack.call(
                "chat.stopStream",
                self._slack.client.chat_stopStream(channel=self.channel, ts=stream.ts, blocks=blocks or None),
            )
            stream.has_blocks = stream.has_blocks or bool(blocks)
        except SlackApiError as exc:
            if error_code(exc) != NOT_STREAMING:
                raise
        stream.live = False

    async def _stop_quietly(self, stream: _Stream, blocks: list[Block] | None = None) -> None:
        """Finish a stream whose text is complete. The message already shows everything, so failures
        are retried briefly and then left to Slack, which closes streams on its own."""
        for attempt in range(STOP_ATTEMPTS):
            try:
                await self._stop_for_update(stream, blocks=blocks or [])
                return
            except SlackApiError as exc:
                error = surface_error(exc)
                if not isinstance(error, SurfaceRateLimited | SurfaceTransient) or attempt == STOP_ATTEMPTS - 1:
                    log.warning("could not stop stream %s in %s: %s", stream.ts, self.channel, describe(exc))
                    return
                pause = error.retry_after if isinstance(error, SurfaceRateLimited) else 0.5
                await asyncio.sleep(min(pause, MAX_STOP_PAUSE))
            except NETWORK_ERRORS as exc:
                if attempt == STOP_ATTEMPTS - 1:
                    log.warning("could not stop stream %s in %s: %r", stream.ts, self.channel, exc)
                    return
                await asyncio.sleep(0.5)

    # ---- fallback ---------------------------------------------------------------------------------

    async def _fall_back(self, code: str, markdown: str, *, final: bool, controls: Controls | None) -> str:
        self.native_failed = code
        if self._fallback is None:
            raise SurfaceTransient(f"native streaming unavailable: {code}")
        log.info("native streaming unavailable in %s (%s); using chat.update", self.channel, code)
        update = self._fallback()
        update.count_calls_in(self.calls)  # one counter for the whole answer
        self._update = update
        return await self._send_update(markdown, final=final, controls=controls)

    def _fits_update(self, markdown: str) -> None:
        if len(markdown) > UPDATE_LIMITS.max_length:
            raise SurfaceTooLong(f"{len(markdown)} characters after falling back to chat.update")

    async def _send_update(self, markdown: str, *, final: bool, controls: Controls | None) -> str:
        assert self._update is not None
        self._fits_update(markdown)
        ts = await self._update.send(markdown, final=final, controls=controls)
        self._started = True
        return ts

    async def _edit_update(self, handle: str, markdown: str, *, final: bool, controls: Controls | None) -> str:
        assert self._update is not None
        self._fits_update(markdown)
        return await self._update.edit(handle, markdown, final=final, controls=controls)
