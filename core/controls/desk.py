"""ControlDesk: what a front door calls when someone presses a control or sends /stop, for every platform."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from core.controls.feedback import FeedbackBook
from core.controls.model import FeedbackAction, Rating
from core.controls.relay import StopRelay
from core.controls.stops import IsAdmin, StopOutcome, StopRegistry
from core.conversations import ChatKey
from core.dify.errors import DifyError
from core.errors import StoreUnavailable
from core.texts import Lang, text

log = logging.getLogger(__name__)

_STOP_TEXTS: dict[StopOutcome, str] = {"stopped": "stop_done", "not_yours": "stop_not_yours", "ended": "stop_ended"}


@dataclass(frozen=True, slots=True)
class Rated:
    """The outcome of a feedback press: the rating now chosen (None: cleared or not saved) and what to say."""

    ok: bool
    rating: Rating | None
    notice: str


@dataclass(frozen=True, slots=True)
class ControlOptions:
    stop_button: bool = True
    feedback_buttons: bool = True


class ControlDesk:
    """Stop, feedback and suggestions state shared by every front door of one process."""

    def __init__(self, *, feedback: FeedbackBook | None = None, options: ControlOptions | None = None) -> None:
        self.options = options or ControlOptions()
        self.stops = StopRegistry()
        self.feedback = feedback
        self.relay: StopRelay | None = None  # set when other replicas may be running the answer

    def relay_over(self, redis: Redis, *, channel: str) -> StopRelay:
        """Carry presses between replicas on `channel`; enter the returned relay for its lifetime."""
        self.relay = StopRelay(redis, channel=channel, registry=self.stops)
        return self.relay

    async def stop(
        self,
        *,
        by: str,
        lang: Lang,
        token: str | None = None,
        chat: ChatKey | None = None,
        is_admin: IsAdmin | None = None,
    ) -> tuple[StopOutcome, str]:
        """Stop an answer by its button's token or the chat's running one; returns the outcome and its notice."""
        outcome = await self.stops.stop(by=by, token=token, chat=chat, is_admin=is_admin)
        if outcome == "ended" and self.relay is not None:
            outcome = await self._stop_elsewhere(by=by, token=token, chat=chat, is_admin=is_admin)
        if outcome == "ended" and token is None:
            return outcome, text("stop_nothing", lang)
        return outcome, text(_STOP_TEXTS[outcome], lang)

    async def _stop_elsewhere(
        self, *, by: str, token: str | None, chat: ChatKey | None, is_admin: IsAdmin | None
    ) -> StopOutcome:
        """Ask the other replicas; whether the presser is a chat admin is checked only when it matters."""
        assert self.relay is not None
        outcome = await self.relay.ask(by=by, token=token, chat=chat, admin=False)
        if outcome == "not_yours" and is_admin is not None and await is_admin():
            outcome = await self.relay.ask(by=by, token=token, chat=chat, admin=True)
        return outcome or "ended"

    async def rate(self, action: FeedbackAction, *, chat: ChatKey, lang: Lang) -> Rated:
        """Apply a 👍/👎 press on answer `action.message_id` of `chat`."""
        if self.feedback is None:
            return Rated(ok=False, rating=None, notice=text("feedback_failed", lang))
        try:
            rating = await self.feedback.press(action.message_id, action.rating, fallback_user=chat.user)
        except (DifyError, StoreUnavailable) as exc:
            log.warning("could not save feedback for %s: %r", action.message_id, exc)
            return Rated(ok=False, rating=None, notice=text("feedback_failed", lang))
        key = "feedback_cleared" if rating is None else f"feedback_{rating}"
        return Rated(ok=True, rating=rating, notice=text(key, lang))
