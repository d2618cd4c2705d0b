"""The one answer pipeline: every front door turns a user's message into a rendered answer through here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.answer import Quote, ReplyEvent
from core.controls.desk import ControlDesk
from core.controls.stops import RunningAnswer
from core.controls.suggestions import follow_ups
from core.conversations import ChatKey
from core.errors import BotError, Interrupted, Stopped, StoreUnavailable
from core.files.model import IncomingFile
from core.files.produced import ProducedFiles
from core.journal import Journal, JournalWriter
from core.logs import log_context
from core.question import check_question, refused
from core.render.controls import ControlPlan
from core.render.renderer import RenderStats
from core.service import ChatService, ReplyStream

log = logging.getLogger(__name__)

INTERRUPT_WAIT = 30.0  # seconds interrupted answers get to write their last frame


class AnswerSink(Protocol):
    """Where an answer goes: a `StreamRenderer` on a chat surface, an HTTP chunk stream, a terminal."""

    async def render(self, events: AsyncIterable[ReplyEvent]) -> RenderStats:
        """Consume the answer's events; return once the user has its final frame."""
        ...

    def interrupt(self, error: BotError) -> None:
        """Stop reading and finish with what was shown plus a line saying why (shutdown, stop)."""
        ...


SinkFactory = Callable[[ReplyStream], AnswerSink]


@dataclass(frozen=True, slots=True)
class AnswerReport:
    """One finished answer, as observers (metrics, readiness) see it."""

    platform: str
    chat: ChatKey
    task_id: str | None
    stats: RenderStats


Observer = Callable[[AnswerReport], None]


class _Running:
    """A running answer as Stop sees it: its sink ends the message, its stream stops the Dify task."""

    def __init__(self, target: AnswerSink, stream: ReplyStream) -> None:
        self._target = target
        self._stream = stream

    def interrupt(self, error: Stopped) -> None:
        self._target.interrupt(error)

    async def stop_task(self) -> None:
        await self._stream.stop()


@dataclass(frozen=True, slots=True)
class _InFlight:
    platform: str
    task: asyncio.Task[Any]


class AnswerPipeline:
    """Log context → `ChatService.reply` → the sink → in-flight registry → observers, for every front door."""

    def __init__(
        self, service: ChatService, *, journal: Journal | None = None, controls: ControlDesk | None = None
    ) -> None:
        self.service = service
        self.journal = journal
        self.controls = controls if controls is not None else ControlDesk()
        self._observers: list[Observer] = []
        self._active: dict[AnswerSink, _InFlight] = {}

    def observe(self, observer: Observer) -> None:
        """Call `observer` with the report of every answer that finishes."""
        self._observers.append(observer)

    def in_flight(self, platform: str | None = None) -> int:
        return sum(1 for entry in self._active.values() if platform is None or entry.platform == platform)

    async def answer(
        self,
        *,
        chat: ChatKey,
        text: str,
        sink: SinkFactory,
        where: object = None,
        inputs: Mapping[str, Any] | None = None,
        files: Sequence[Mapping[str, Any]] = (),
        origin: Mapping[str, Any] | None = None,
        order: float | None = None,
        attachments: Sequence[IncomingFile] = (),
        asker: str | None = None,
        quote: str = "",
    ) -> RenderStats:
        """Answer `text` (and the user's `attachments`) in `chat` through the sink `sink(stream)` builds;
        `where` names the chat in logs. A blank text with attachments asks a default question.

        `asker`, the platform's id of who asked, puts controls on the answer (when its sink shows them):
        Stop while it streams (for the asker or a chat admin; '' lets anyone), then feedback and follow-up
        questions. `quote` is shown above the answer (a suggested question that was pressed).

        `origin`, the front door's JSON-serialisable description of the user's message, journals the answer
        until its final frame (when a journal is configured), so another replica can finish it after a crash."""
        question = check_question(text)
        produced: ProducedFiles | None = None
        plan: ControlPlan | None = None
        with log_context(platform=chat.platform, chat_id=chat.scope if where is None else where):
            async with self.service.reply(
                chat, question.text, inputs=inputs, files=files, order=order, attachments=attachments
            ) as stream:
                target = sink(stream)
                stream.read_pause = getattr(target, "read_pause", None)
                entry = self._journal_entry(chat=chat, origin=origin, target=target)
                if entry is not None:
                    await entry.begin()
                task = asyncio.current_task()
                if task is not None:
                    self._active[target] = _InFlight(platform=chat.platform, task=task)
                running: RunningAnswer | None = None
                if asker is not None and hasattr(target, "use_controls"):
                    running, plan = self._plan(chat=chat, asker=asker, target=target, stream=stream)
                    target.use_controls(plan)
                try:
                    events: AsyncIterable[ReplyEvent] = (
                        stream if question.refusal is None else refused(question.refusal)
                    )
                    if quote:
                        events = _quoted(quote, events)
                    if getattr(target, "fetches_files", False):
                        produced = ProducedFiles(self.service.dify, extra_hosts=(self.service.files_url,))
                        events = produced.relay(events)
                    if entry is not None:
                        events = entry.watch(events, lambda: stream.user)
                    stats = await target.render(events)
                finally:
                    self._active.pop(target, None)
                    if running is not None:
                        self.controls.stops.remove(running)
                    if produced is not None:
                        produced.close()
                    if entry is not None:
                        await entry.close()
            log.info(
                "answered: %s, %d sends, %d edits, %d rate-limited",
                stats.outcome,
                stats.sends,
                stats.edits,
                stats.rate_limited,
            )
            self._report(AnswerReport(platform=chat.platform, chat=chat, task_id=stream.task_id, stats=stats))
            if plan is not None and stats.outcome == "done" and stats.message_id:
                await self._after_answer(plan, stats.message_id, stream.user, target)
        return stats

    def _plan(
        self, *, chat: ChatKey, asker: str, target: AnswerSink, stream: ReplyStream
    ) -> tuple[RunningAnswer | None, ControlPlan]:
        options = self.controls.options
        running = (
            self.controls.stops.add(chat=chat, asker=asker, target=_Running(target, stream))
            if options.stop_button
            else None
        )
        service = self.service

        async def suggest(message_id: str) -> tuple[str, ...]:
            return await follow_ups(service.dify, service.parameters, message_id=message_id, user=stream.user)

        plan = ControlPlan(
            stop=running.token if running is not None else "",
            feedback=options.feedback_buttons and self.controls.feedback is not None,
            follow_ups=suggest,
        )
        return running, plan

    async def _after_answer(self, plan: ControlPlan, message_id: str, user: str, target: AnswerSink) -> None:
        """Remember whose answer it is (feedback needs Dify's user), then offer follow-up questions."""
        book = self.controls.feedback
        if plan.feedback and book is not None:
            try:
                await book.remember(message_id, user)
            except StoreUnavailable as exc:
                log.warning("could not remember the answer's user for feedback: %r", exc)
        show = getattr(target, "show_follow_ups", None)
        if show is not None:
            await show()

    def _journal_entry(
        self, *, chat: ChatKey, origin: Mapping[str, Any] | None, target: AnswerSink
    ) -> JournalWriter | None:
        if origin is None or self.journal is None:
            return None
        entry = self.journal.open(chat=chat, origin=origin)
        on_frame = getattr(target, "on_frame", None)
        if on_frame is not None:
            on_frame(entry.frame)
        return entry

    def _report(self, report: AnswerReport) -> None:
        for observer in self._observers:
            try:
                observer(report)
            except Exception:  # an observer's bug must not turn a delivered answer into a failure
                log.exception("answer observer failed")

    async def drain(self, grace: float) -> None:
        """Give answers in flight `grace` seconds, then interrupt the rest and wait for their last frame."""
        tasks = {entry.task for entry in self._active.values()}
        if tasks:
            log.info("waiting up to %.0fs for %d answers", grace, len(tasks))
            await asyncio.wait(tasks, timeout=grace)
        left = dict(self._active)
        for target in left:
            target.interrupt(Interrupted("shutting down"))
        if left:
            await asyncio.wait({entry.task for entry in left.values()}, timeout=INTERRUPT_WAIT)


async def _quoted(quote: str, events: AsyncIterable[ReplyEvent]) -> AsyncIterable[ReplyEvent]:
    yield Quote(text=quote)
    async for event in events:
        yield event
