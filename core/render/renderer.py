"""StreamRenderer: the one place that decides when and what to send or edit while an answer streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field

from core.answer import ContextReset, Done, Failed, Files, Progress, ReplyEvent, TextDelta, TextReplace
from core.errors import BotError
from core.render.split import split_markdown
from core.render.surface import (
    Handle,
    MessageSurface,
    SurfaceBlocked,
    SurfaceBusy,
    SurfaceError,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)
from core.render.throttle import Budget, Clock, Sleep
from core.texts import Lang, friendly_error, progress_line, text

log = logging.getLogger(__name__)

MAX_STRIKES = 3
FINAL_ATTEMPTS = 6  # failures other than "wait" answers (network, 5xx) before giving up a final frame
FINAL_DEADLINE = 600.0  # seconds a final frame keeps waiting out rate limits
MAX_FINAL_PAUSE = 120.0


@dataclass(slots=True)
class RenderStats:
    """What one answer cost and how it went; used by metrics, tests and benchmarks."""

    started_at: float = 0.0
    sends: int = 0
    edits: int = 0
    rate_limited: int = 0
    messages: int = 0
    first_text_at: float | None = None
    final_at: float | None = None
    outcome: str = "pending"  # done | failed | blocked | interrupted
    error: BotError | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Message:
    handle: Handle
    shown: tuple[str, bool]  # the markdown the platform last accepted for it, and whether it was final


class StreamRenderer:
    """Renders one answer onto one surface. Call `render(events)` once."""

    def __init__(
        self,
        surface: MessageSurface,
        *,
        throttle: Budget,
        lang: Lang = "en",
        status_delay: float = 1.0,
        typing_interval: float = 4.5,
        stop_source: Callable[[], Awaitable[None]] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._surface = surface
        self._throttle = throttle
        self._lang = lang
        self._status_delay = status_delay
        self._typing_interval = typing_interval
        self._stop_source = stop_source  # cancels the Dify task when the answer can't or mustn't go on
        self._clock = clock
        self._sleep = sleep
        self.stats = RenderStats()
        self._text = ""  # whole answer (Markdown) so far
        self._frozen: list[str] = []  # finished parts, one per message, already shown in full
        self._messages: list[_Message] = []
        self._status: str | None = None
        self._notes: list[str] = []
        self._text_frozen = ""  # the prefix of `_text` that the frozen parts show
        self._carry = ""  # a code fence reopened at the top of the current part
        self._final_text: str | None = None
        self._changed = asyncio.Event()
        self._has_text = asyncio.Event()
        self._finished = asyncio.Event()
        self._strikes = 0
        self._cut_smaller = False
        self._rate_limited_last = False
        self._blocked = False
        self._interrupting = False
        self._reader: asyncio.Task[None] | None = None
        self._limit = surface.limits.max_length
        self._placeholder = surface.limits.placeholder
        self._status_changed = asyncio.Event()

    # ---- public ---------------------------------------------------------------------------------

    async def render(self, events: AsyncIterable[ReplyEvent]) -> RenderStats:
        """Consume reply events and keep the chat in step; returns when the final frame is delivered."""
        self.stats.started_at = self._clock()
        typing = asyncio.create_task(self._keep_typing())
        reader = self._reader = asyncio.create_task(self._read(events))
        try:
            await self._write_interim()
            await reader  # re-raises a reader failure
            if not self._blocked:
                await self._write_final()
            if self.stats.outcome == "interrupted":
                await self._stop()
        except asyncio.CancelledError:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            raise
        finally:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        return self.stats

    def interrupt(self, error: BotError) -> None:
        """Stop reading and finish with the partial text plus a line saying why (e.g. shutdown)."""
        if self._finished.is_set():
            return
        self._interrupting = True
        self._fail(error, outcome="interrupted")
        self._finished.set()
        self._changed.set()
        if self._reader is not None:
            self._reader.cancel()

    # ---- reading --------------------------------------------------------------------------------

    async def _read(self, events: AsyncIterable[ReplyEvent]) -> None:
        try:
            async for event in events:
                self._apply(event)
                if self._finished.is_set():
                    break
        except asyncio.CancelledError:
            if not self._interrupting:
                raise
        except Exception as exc:  # a bug or an unexpected failure still ends in a final frame
            log.exception("reply stream failed")
            self._fail(exc if isinstance(exc, BotError) else BotError(repr(exc)), outcome="failed")
        if not self._finished.is_set():
            self._fail(BotError("the reply ended without an outcome"), outcome="failed")
        self._finished.set()
        self._changed.set()

    def _apply(self, event: ReplyEvent) -> None:
        if isinstance(event, TextDelta):
            self._text += event.text
        elif isinstance(event, TextReplace):
            self._text = event.text
        elif isinstance(event, Progress):
            self._status = progress_line(event.kind, event.label, self._lang)
            if not self._placeholder and not self._text.strip():
                self._status_changed.set()
        elif isinstance(event, Files):
            for file in event.files:
                self._notes.append(f"[{file.type}]({file.url})")
        elif isinstance(event, ContextReset):
            self._notes.append("_" + text("context_reset", self._lang) + "_")
        elif isinstance(event, Done):
            if event.stopped:
                self._notes.append(text("stopped", self._lang))
            if event.paused:
                self._notes.append(text("paused", self._lang))
            self.stats.outcome = "done"
            self._finished.set()
        elif isinstance(event, Failed):
            self._fail(event.error, outcome="failed")
            self._finished.set()
        else:
            return
        if self._text.strip():
            self._has_text.set()
        self._changed.set()

    def _fail(self, error: BotError, *, outcome: str) -> None:
        self.stats.outcome = outcome
        self.stats.error = error
        self._notes.append("⚠️ " + friendly_error(error, self._lang))

    # ---- layout ---------------------------------------------------------------------------------

    def _layout(self, answer: str, *, final: bool) -> list[str]:
        """Every message of `answer` as it should look now; parts before the last are frozen."""
        if not answer.startswith(self._text_frozen):
            # The answer was replaced (moderation): lay everything out again from the start.
            self._frozen.clear()
            self._text_frozen, self._carry = "", ""
        room = self._limit - (0 if final else self._surface.limits.cursor_length)
        body = self._carry + answer[len(self._text_frozen) :]
        while True:
            cut = split_markdown(body, limit=room, measure=self._surface.measure)
            if cut is None:
                break
            self._frozen.append(cut.head)
            # The tail is a suffix of the answer, possibly after a reopened code fence.
            reopen = _added_prefix(body, cut.tail)
            rest = cut.tail[len(reopen) :]
            self._text_frozen = answer[: len(answer) - len(rest)]
            self._carry = reopen
            body = cut.tail
        return [*self._frozen, body]

    def _final_parts(self) -> list[str]:
        if self._final_text is None:
            notes = "\n\n".join(self._notes)
            body = self._text.rstrip()
            if not body and not notes:
                notes = text("empty_answer", self._lang)
            self._final_text = f"{body}\n\n{notes}" if body and notes else (body or notes)
        return self._layout(self._final_text, final=True)

    def _interim_parts(self) -> list[str] | None:
        if self._text.strip():
            return self._layout(self._text, final=False)
        if not self._placeholder:
            return None
        if self._status is not None:
            return [self._status]
        if not self._messages:
            return [text("thinking", self._lang)]
        return None

    # ---- writing --------------------------------------------------------------------------------

    async def _keep_typing(self) -> None:
        while not self._finished.is_set():
            with contextlib.suppress(Exception):
                await self._surface.typing()
            if self._placeholder:
                await self._wait(self._finished, self._typing_interval)
                continue
            # Surfaces without placeholder messages show progress lines through status().
            await self._wait(self._status_changed, self._typing_interval)
            if self._status_changed.is_set() and not self._finished.is_set():
                self._status_changed.clear()
                if self._status is not None and not self._text.strip():
                    with contextlib.suppress(Exception):
                        await self._surface.status(self._status)

    async def _wait(self, event: asyncio.Event, limit: float | None) -> None:
        """Wait for `event` or the end of the answer, at most `limit` seconds."""
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._finished.wait())}
        try:
            await asyncio.wait(waiters, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _write_interim(self) -> None:
        """At most one operation per throttle slot, always with the latest text; never delays the final."""
        started = self._clock()
        while not self._finished.is_set() and not self._blocked:
            if not self._messages and not self._text.strip() and not self._placeholder:
                await self._wait(self._has_text, None)  # nothing to show in the chat before text
                continue
            if not self._messages and not self._text.strip():
                waited = self._clock() - started
                if waited < self._status_delay:
                    # Give Dify a moment to start talking before showing a status placeholder.
                    await self._wait(self._has_text, self._status_delay - waited)
                    if not self._text.strip():
                        continue
                self._changed.set()  # text arrived, or it is time for the placeholder
            if not self._changed.is_set():
                await self._wait(self._changed, None)
                continue
            if self._strikes >= MAX_STRIKES:
                await self._finished.wait()  # flood-limited three times: only the final frame goes out
                return
            delay = self._throttle.delay()
            if delay > 0:
                await self._wait(self._finished, delay)
                continue
            if self._finished.is_set():
                return  # the final frame supersedes any interim one
            self._changed.clear()
            parts = self._interim_parts()
            if parts is None:
                continue
            status_only = not self._text.strip()  # a status line is shown as is, without a cursor
            index = self._first_difference(parts, final=status_only)
            if index is None:
                continue
            if not self._throttle.try_take():
                self._changed.set()
                continue
            if not await self._apply_part(index, parts, final=status_only or index < len(parts) - 1):
                self._changed.set()  # retry the frame at the next slot
            elif self._first_difference(parts, final=status_only) is not None:
                self._changed.set()  # a rollover needs a second operation

    async def _write_final(self) -> None:
        attempts = 0
        final_started = self._clock()
        while not self._blocked:
            parts = self._final_parts()
            index = self._first_difference(parts, final=True)
            if index is None:
                break
            await self._throttle.take(self._sleep)
            if not await self._apply_part(index, parts, final=True):
                if self._cut_smaller or self._rate_limited_last:
                    # Cut smaller, or told to wait: not a failed attempt, as long as time allows.
                    self._cut_smaller = self._rate_limited_last = False
                    if self._clock() - final_started < FINAL_DEADLINE:
                        continue
                attempts += 1
                if attempts >= FINAL_ATTEMPTS or self._clock() - final_started >= FINAL_DEADLINE:
                    log.error("giving up on the final frame after %d attempts", attempts)
                    self.stats.outcome = "undelivered"
                    break
        for extra in self._messages[len(parts) :]:
            with contextlib.suppress(SurfaceError):
                await self._throttle.take(self._sleep)
                await self._surface.delete(extra.handle)
        del self._messages[len(parts) :]
        self.stats.final_at = self._clock()

    def _first_difference(self, parts: list[str], *, final: bool) -> int | None:
        """The first message that does not show what it should (parts before the last are final)."""
        last = len(parts) - 1
        for index, part in enumerate(parts):
            wanted = (part, final or index < last)
            if index >= len(self._messages) or self._messages[index].shown != wanted:
                return index
        return None

    async def _apply_part(self, index: int, parts: list[str], *, final: bool) -> bool:
        """Send or edit message `index` in the slot already taken; True when the platform took it."""
        try:
            await self._call_surface(index, parts[index], final=final)
        except SurfaceBusy as exc:
            self._throttle.pause(exc.retry_after)  # our own budget: wait, no strike
            return False
        except SurfaceRateLimited as exc:
            self.stats.rate_limited += 1
            self._strikes += 1
            # Honour Retry-After, and back off further while the platform keeps refusing.
            growth = 2.0 ** max(0, self._strikes - MAX_STRIKES)
            self._throttle.pause(min(exc.retry_after * growth, MAX_FINAL_PAUSE))
            self._rate_limited_last = True
            return False
        except SurfaceMessageGone:
            gone = self._messages[index]
            del self._messages[index:]  # continue in a new message
            with contextlib.suppress(Exception):
                await self._surface.delete(gone.handle)  # it may still show an interim frame
            return False
        except SurfaceTooLong:
            self._limit = max(200, int(self._limit * 0.9))  # our measure was off: cut smaller
            self._cut_smaller = True
            self._frozen.clear()
            self._text_frozen, self._carry = "", ""
            return False
        except SurfaceBlocked:
            await self._block()
            return False
        except SurfaceTransient as exc:
            self.stats.errors.append(repr(exc))
            if final:
                await self._sleep(min(2.0, 0.25 * (1 + len(self.stats.errors))))
            return False
        if self.stats.first_text_at is None and self._text.strip():
            self.stats.first_text_at = self._clock()
        return True

    async def _call_surface(self, index: int, part: str, *, final: bool) -> None:
        try:
            if index < len(self._messages):
                handle = await self._surface.edit(self._messages[index].handle, part, final=final)
                self._messages[index] = _Message(handle=handle, shown=(part, final))
                self.stats.edits += 1
            else:
                handle = await self._surface.send(part, final=final)
                self._messages.append(_Message(handle=handle, shown=(part, final)))
                self.stats.sends += 1
                self.stats.messages = len(self._messages)
        finally:
            self._throttle.release()

    async def _block(self) -> None:
        self._blocked = True
        self.stats.outcome = "blocked"
        self._finished.set()
        await self._stop()

    async def _stop(self) -> None:
        if self._stop_source is not None:
            with contextlib.suppress(Exception):
                await self._stop_source()


def _added_prefix(body: str, tail: str) -> str:
    """The part of `tail` that is not text of `body` (a reopened code fence), usually ''."""
    if body.endswith(tail):
        return ""
    for index in range(1, len(tail)):
        if body.endswith(tail[index:]):
            return tail[:index]
    return tail
