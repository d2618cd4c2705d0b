"""What a message's controls are and how a pressed control is spelled (Telegram callback data, Slack values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Rating = Literal["like", "dislike"]

MAX_SUGGESTIONS = 3
MAX_ACTION_BYTES = 64  # Telegram's callback_data limit; Slack's button values are longer

STOP = "s"
FEEDBACK = "f"
ASK = "q"
_RATING_CODES: dict[str, Rating] = {"l": "like", "d": "dislike"}
_CODES_OF_RATINGS = {rating: code for code, rating in _RATING_CODES.items()}


@dataclass(frozen=True, slots=True)
class FeedbackButtons:
    """👍/👎 under a completed answer; `rating` is the one currently chosen (shown marked)."""

    message_id: str
    rating: Rating | None = None


@dataclass(frozen=True, slots=True)
class Controls:
    """The buttons one message carries: Stop while it streams, or feedback and suggestions once done."""

    stop: str = ""  # the running answer's stop token ('' = no Stop button)
    feedback: FeedbackButtons | None = None
    suggestions: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.stop or self.feedback or self.suggestions)


@dataclass(frozen=True, slots=True)
class StopAction:
    token: str


@dataclass(frozen=True, slots=True)
class FeedbackAction:
    message_id: str
    rating: Rating


@dataclass(frozen=True, slots=True)
class AskAction:
    """Ask suggestion number `index` of the pressed message (the question itself is the button's text)."""

    index: int


Action = StopAction | FeedbackAction | AskAction


def stop_data(token: str) -> str:
    return f"{STOP}:{token}"


def feedback_data(message_id: str, rating: Rating) -> str:
    return f"{FEEDBACK}:{_CODES_OF_RATINGS[rating]}:{message_id}"


def ask_data(index: int) -> str:
    return f"{ASK}:{index}"


def parse_action(data: str | None) -> Action | None:
    """The action a button's data names; None for anything else (old, forged or foreign buttons)."""
    if not data or len(data.encode()) > MAX_ACTION_BYTES:
        return None
    kind, _, rest = data.partition(":")
    if kind == STOP and rest:
        return StopAction(token=rest)
    if kind == FEEDBACK:
        code, _, message_id = rest.partition(":")
        rating = _RATING_CODES.get(code)
        return FeedbackAction(message_id=message_id, rating=rating) if rating and message_id else None
    if kind == ASK and rest.isdigit() and int(rest) < MAX_SUGGESTIONS:
        return AskAction(index=int(rest))
    return None
