"""Which controls each message of an answer carries: Stop while it streams, feedback and suggestions after."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.controls.model import Controls, FeedbackButtons
from core.render.messages import SentMessages
from core.render.stats import RenderStats
from core.render.surface import ControlledSurface
from core.render.throttle import Budget, Sleep

log = logging.getLogger(__name__)

FollowUps = Callable[[str], Awaitable[tuple[str, ...]]]
"""The follow-up questions for a completed answer, by its Dify message id (empty when the app has none)."""

NONE = Controls()


@dataclass(frozen=True, slots=True)
class ControlPlan:
    """The controls one answer offers: `stop` is its stop token ('' = no Stop button)."""

    stop: str = ""
    feedback: bool = False
    follow_ups: FollowUps | None = None

    def streaming(self) -> Controls:
        """What the answer's last message carries while it streams."""
        return Controls(stop=self.stop) if self.stop else NONE

    def finished(self, message_id: str | None, suggestions: tuple[str, ...] = ()) -> Controls:
        """What the last message of a completed answer carries."""
        if not message_id:
            return NONE
        feedback = FeedbackButtons(message_id=message_id) if self.feedback else None
        return Controls(feedback=feedback, suggestions=suggestions)

    def wanted(self, count: int, last: Controls) -> list[Controls]:
        """Controls for each of `count` messages: only the last one carries any."""
        return [NONE] * (count - 1) + [last] if count else []


async def add_follow_ups(
    plan: ControlPlan,
    surface: ControlledSurface,
    sent: SentMessages,
    *,
    throttle: Budget,
    stats: RenderStats,
    sleep: Sleep,
) -> None:
    """Put the app's follow-up questions for a completed answer on its last message (best effort)."""
    message_id = stats.message_id
    if plan.follow_ups is None or not message_id or not sent:
        return
    try:
        questions = await plan.follow_ups(message_id)
    except Exception as exc:  # suggestions are a courtesy: the answer stands without them
        log.info("no follow-up questions: %r", exc)
        return
    if not questions:
        return
    index = len(sent) - 1
    part, _ = sent.shown(index)
    controls = plan.finished(message_id, questions)
    try:
        await throttle.take(sleep)
        handle = await surface.edit(sent.handle(index), part, final=True, controls=controls)
        sent.replace(index, handle, part, final=True, controls=controls)
        stats.edits += 1
    except Exception as exc:
        log.info("could not show follow-up questions: %r", exc)
    finally:
        throttle.release()
