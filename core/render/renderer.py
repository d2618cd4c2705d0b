"""StreamRenderer: the one place that decides when and what to send or edit while an answer streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Literal, cast

from core.answer import (
    FilesReady,
    ReplyEvent,
    TaskStarted,
)
from core.controls.model import Controls
from core.errors import BotError, Stopped
from core.files.model import ProducedFile
from core.render.activity import keep_typing, wait_either
from core.render.controls import NONE, ControlPlan, add_follow_ups
from core.render.deliver import BACKOFF_CAP, BACKOFF_FIRST, FINAL_DEADLINE, RETRY_MARGIN, deliver_files
from core.render.events import EventApplier
from core.render.flags import Flag
from core.render.footers import UsageMode
from core.render.layout import FrameLayout
from core.render.messages import SentMessages
from core.render.stats import RenderStats
from core.render.surface import (
    ControlledSurface,
    MessageSurface,
    SurfaceBlocked,
    SurfaceBusy,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)
from core.render.throttle import Budget, Clock, Sleep
from core.texts import Lang

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_FIRST",
    "FINAL_DEADLINE",
    "MAX_STRIKES",
    "RETRY_MARGIN",
    "RenderStats",
    "StreamRenderer",
]

log = logging.getLogger(__name__)

MAX_STRIKES = 3  # rate-limit answers after which only the final frame goes out
# Once the chat's slot opens, an interim edit waits this share of the throttle's interval before it goes:
# Dify often sends its last text and message_end together, and a final arriving in that window takes the
# open slot at once instead of queueing a whole interval behind an interim edit of almost the same text.
HOLD_SHARE = 0.5
# Text that has been quiet this long at the end of a hold has probably stopped: Dify's message_end tends
# to follow its last text after a short pause, so the hold goes on once more for it.
QUIET = 0.15
# Dify's stream rests unread until this long before the chat's next slot, so the slot finds the latest text.
READ_AHEAD = 0.05

Outcome = Literal["ok", "again", "transient"]  # taken; try again at once (after any pause); back off


FrameHook = Callable[[int, Any, str, bool], None]
"""Called after message `index` (handle) took a frame: (index, handle, markdown without cursor, final)."""


class StreamRenderer:
    """Renders one answer onto one surface. Call `render(events)` once."""

    _frame_hook: FrameHook | None = None
    _plan: ControlPlan | None = None

    def use_controls(self, plan: ControlPlan) -> None:
        """Put buttons on the answer: Stop while it streams, then feedback and follow-up questions."""
        self._plan = plan

    @property
    def fetches_files(self) -> bool:
        """True when the surface can deliver files: the pipeline then downloads the answer's files for it."""
        return hasattr(self._surface, "attach")

    def on_frame(self, callback: FrameHook) -> None:
        """Report every delivered frame to `callback` (the answer journal); it must not raise."""
        self._frame_hook = callback

    def __init__(
        self,
        surface: MessageSurface,
        *,
        throttle: Budget,
        lang: Lang = "en",
        status_delay: float = 1.0,
        typing_interval: float = 4.5,
        stop_source: Callable[[], Awaitable[None]] | None = None,
        show_sources: bool = False,
        show_usage: UsageMode = "off",
        interim_hold: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`interim_hold`: seconds an interim edit waits once its slot is open (default HOLD_SHARE of the
        throttle's interval); the first frame with text never waits. `show_sources` / `show_usage`: the
        footers a completed answer ends with (its cited documents; its tokens, or also price, time, steps)."""
        self._surface = surface
        self._throttle = throttle
        self._lang = lang
        self._status_delay = status_delay
        self._typing_interval = typing_interval
        self._stop_source = stop_source  # cancels the Dify task when the answer can't or mustn't go on
        self._clock = clock
        self._sleep = sleep
        self.stats = RenderStats()
        self._frames = FrameLayout(surface, lang=lang)
        self._events = EventApplier(
            self._frames, self.stats, lang=lang, show_sources=show_sources, show_usage=show_usage
        )
        self._sent = SentMessages()
        self._showing_text = False  # the chat shows some of the answer (not just a placeholder)
        self._changed = Flag()
        self._has_text = Flag()
        self._finished = Flag()
        self._strikes = 0
        self._blocked = False
        self._interrupting = False
        self._reader: asyncio.Task[None] | None = None
        self._placeholder = surface.limits.placeholder
        self._status_changed = Flag()
        self._files: tuple[ProducedFile, ...] = ()
        if interim_hold is None:
            interim_hold = HOLD_SHARE * float(getattr(throttle, "interval", 0.0))
        self._hold = interim_hold
        self._text_at = float("-inf")
        self._text_arrived = Flag()
        self._closing = False  # the final frame is being written
        self._task_started = False

    # ---- public ---------------------------------------------------------------------------------

    async def render(self, events: AsyncIterable[ReplyEvent]) -> RenderStats:
        """Consume reply events and keep the chat in step; returns when the final frame is delivered."""
        self.stats.started_at = self._clock()
        typing = asyncio.create_task(
            keep_typing(
                self._surface,
                self._frames,
                finished=self._finished,
                status_changed=self._status_changed,
                interval=self._typing_interval,
                text_shown=lambda: self.stats.first_text_at is not None,
            )
        )
        reader = self._reader = asyncio.create_task(self._read(events))
        try:
            await self._write_interim()
            await reader  # re-raises a reader failure
            if not self._blocked:
                await self._write_final()
                if self._files:
                    await deliver_files(
                        self._surface,
                        self._files,
                        throttle=self._throttle,
                        stats=self.stats,
                        clock=self._clock,
                        sleep=self._sleep,
                    )
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

    def read_pause(self) -> float:
        """Seconds Dify's stream may rest unread: text arriving meanwhile could not be shown any sooner.

        Once the chat shows answer text, nothing new can go out before the next slot; reading resumes
        READ_AHEAD before it (and stays on through the slot's hold), so each frame still shows the latest
        text and an end arriving near the slot goes straight out as the final frame."""
        if not self._showing_text or self._finished.is_set():
            return 0.0
        return self._throttle.delay() - READ_AHEAD

    def interrupt(self, error: BotError) -> None:
        """Stop reading and finish with the partial text plus a line saying why (shutdown, Stop pressed)."""
        if self._finished.is_set():
            return
        self._interrupting = True
        if isinstance(error, Stopped):
            self._events.stopped()
        else:
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
        if isinstance(event, FilesReady):
            self._files = event.files
        elif isinstance(event, TaskStarted):
            self._task_started = True  # from now on Stop can reach Dify's task
        effect = self._events.apply(event)
        if effect == "none":
            return
        if effect == "text":
            self._text_came()
        elif effect == "status":
            if not self._placeholder and not self._frames.has_text:
                self._status_changed.set()
        elif effect == "end":
            self._finished.set()
        if self._frames.has_text:
            self._has_text.set()
        self._changed.set()

    def _text_came(self) -> None:
        self._text_at = self._clock()
        self._text_arrived.set()

    def _fail(self, error: BotError, *, outcome: str) -> None:
        self._events.fail(error, outcome=outcome)

    # ---- writing --------------------------------------------------------------------------------

    async def _wait(self, event: Flag, limit: float | None) -> None:
        """Wait for `event` or the end of the answer, at most `limit` seconds."""
        await wait_either(event, self._finished, limit)

    async def _write_interim(self) -> None:
        """At most one operation per throttle slot, always with the latest text; never delays the final."""
        started = self._clock()
        frames = self._frames
        backoff = BACKOFF_FIRST
        held = False  # this slot's interim frame has waited its hold
        while not self._finished.is_set() and not self._blocked:
            if not self._sent and not frames.has_text and not self._placeholder:
                await self._wait(self._has_text, None)  # nothing to show in the chat before text
                continue
            if not self._sent and not frames.has_text:
                waited = self._clock() - started
                if waited < self._status_delay:
                    # Give Dify a moment to start talking before showing a status placeholder.
                    await self._wait(self._has_text, self._status_delay - waited)
                    if not frames.has_text:
                        continue
                self._changed.set()  # text arrived, or it is time for the placeholder
            if not self._changed.is_set():
                held = False  # text arriving after a quiet spell may come with the end: hold it too
                await self._wait(self._changed, None)
                continue
            if self._strikes >= MAX_STRIKES:
                await self._finished.wait()  # flood-limited three times: only the final frame goes out
                return
            delay = self._throttle.delay()
            if delay > 0:
                await self._wait(self._finished, delay)
                continue
            if self._showing_text and not held and self._hold > 0:
                held = True  # a final arriving meanwhile takes the open slot (the loop ends)
                await self._wait(self._finished, self._hold)
                await self._linger()
                continue
            if self._finished.is_set():
                return  # the final frame supersedes any interim one
            self._changed.clear()
            parts = frames.interim_parts(started=bool(self._sent))
            if parts is None:
                continue
            status_only = not frames.has_text  # a status line is shown as is, without a cursor
            index = self._sent.first_difference(parts, final=status_only, controls=self._wanted(parts))
            if index is None:
                continue
            if not self._throttle.try_take():
                self._changed.set()
                continue
            held = False
            outcome = await self._apply_part(index, parts, final=status_only or index < len(parts) - 1)
            if outcome == "transient":
                # The platform may be down: skip frames for a while rather than knock at every slot.
                self._changed.set()
                await self._wait(self._finished, backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)
            elif outcome != "ok":
                self._changed.set()  # retry the frame at the next slot
            else:
                backoff = BACKOFF_FIRST
                self._showing_text = not status_only
                if self._sent.first_difference(parts, final=status_only) is not None:
                    self._changed.set()  # a rollover needs a second operation

    async def _linger(self) -> None:
        """End of a hold: go on while the text still flows; if it stopped, the end may be near, so wait
        for it once more (an interim frame now would make the final wait a whole slot)."""
        quiet_for = self._clock() - self._text_at
        if quiet_for < QUIET:
            self._text_arrived.clear()
            await wait_either(self._text_arrived, self._finished, QUIET - quiet_for)
            if self._text_arrived.is_set():
                return
        await self._wait(self._finished, self._hold)

    async def _write_final(self) -> None:
        self._closing = True
        deadline = self._clock() + FINAL_DEADLINE
        backoff = BACKOFF_FIRST
        parts: list[str] = []
        while not self._blocked:
            parts = self._frames.final_parts()
            index = self._sent.first_difference(parts, final=True, controls=self._wanted(parts))
            if index is None:
                break
            if self._clock() + self._throttle.delay() > deadline:
                self._give_up()
                break
            await self._throttle.take(self._sleep)
            outcome = await self._apply_part(index, parts, final=True)
            if outcome == "ok":
                backoff = BACKOFF_FIRST
            elif outcome == "transient":
                left = deadline - self._clock()
                if left <= 0:
                    self._give_up()
                    break
                await self._sleep(min(backoff, left))  # the platform may be down: try again, less often
                backoff = min(backoff * 2, BACKOFF_CAP)
        for handle in self._sent.handles_from(len(parts)):
            try:
                await self._throttle.take(self._sleep)
                await self._surface.delete(handle)
            except Exception as exc:  # best effort: a leftover message must not keep the answer open
                log.info("could not delete a leftover message: %r", exc)
            finally:
                self._throttle.release()
        self._sent.drop_from(len(parts))
        self.stats.final_at = self._clock()

    def _give_up(self) -> None:
        log.error("giving up on the final frame after %d failures", len(self.stats.errors) + self.stats.rate_limited)
        self.stats.outcome = "undelivered"

    async def _apply_part(self, index: int, parts: list[str], *, final: bool) -> Outcome:
        """Send or edit message `index` in the slot already taken, and say what to do next."""
        try:
            await self._call_surface(index, parts, final=final)
        except SurfaceBusy as exc:
            self._throttle.pause(exc.retry_after)  # our own budget: wait, no strike
            return "again"
        except SurfaceRateLimited as exc:
            self.stats.rate_limited += 1
            self._strikes += 1  # enough strikes stop interim frames; the final waits only as long as asked
            self._throttle.pause(exc.retry_after + RETRY_MARGIN)
            return "again"
        except SurfaceMessageGone:
            gone = self._sent.handle(index)
            self._sent.drop_from(index)  # continue in a new message
            with contextlib.suppress(Exception):
                await self._surface.delete(gone)  # it may still show an interim frame
            return "again"
        except SurfaceTooLong:
            self._frames.shrink()
            return "again"
        except SurfaceBlocked:
            await self._block()
            return "again"
        except SurfaceTransient as exc:
            self.stats.errors.append(repr(exc))
            return "transient"
        except Exception as exc:  # a failure the surface did not map must not leave the answer unfinished
            log.warning("unexpected failure of a platform call: %r", exc)
            self.stats.errors.append(repr(exc))
            return "transient"
        if self.stats.first_text_at is None and self._frames.has_text:
            self.stats.first_text_at = self._clock()
        return "ok"

    def _wanted(self, parts: list[str]) -> list[Controls] | None:
        """The buttons each message should carry now (None: this answer offers none)."""
        plan = self._plan
        if plan is None:
            return None
        if not self._closing:
            return plan.wanted(len(parts), plan.streaming() if self._task_started else NONE)
        done = self.stats.outcome == "done"
        return plan.wanted(len(parts), plan.finished(self.stats.message_id) if done else NONE)

    async def _call_surface(self, index: int, parts: list[str], *, final: bool) -> None:
        part = parts[index]
        wanted = self._wanted(parts)
        controls = wanted[index] if wanted is not None else None
        extra: dict[str, Any] = {} if controls is None else {"controls": controls}
        try:
            if index < len(self._sent):
                handle = await self._surface.edit(self._sent.handle(index), part, final=final, **extra)
                self._sent.replace(index, handle, part, final=final, controls=controls)
                self.stats.edits += 1
            else:
                handle = await self._surface.send(part, final=final, **extra)
                self._sent.append(handle, part, final=final, controls=controls)
                self.stats.sends += 1
                self.stats.messages = len(self._sent)
            if self._frame_hook is not None:
                self._frame_hook(index, handle, part, final)
        finally:
            self._throttle.release()

    async def show_follow_ups(self) -> None:
        """After a completed answer, add the app's suggested follow-up questions to its last message."""
        if self._plan is not None and self.stats.outcome == "done":
            await add_follow_ups(
                self._plan,
                cast(ControlledSurface, self._surface),
                self._sent,
                throttle=self._throttle,
                stats=self.stats,
                sleep=self._sleep,
            )

    async def _block(self) -> None:
        self._blocked = True
        self.stats.outcome = "blocked"
        self._finished.set()
        await self._stop()

    async def _stop(self) -> None:
        if self._stop_source is not None:
            with contextlib.suppress(Exception):
                await self._stop_source()
