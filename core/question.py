"""What a question must be before it goes to Dify: valid Unicode, and no longer than MAX_QUESTION_CHARS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from core.answer import Failed, ReplyEvent
from core.errors import BotError

MAX_QUESTION_CHARS = 16_000  # far beyond a chat message; keeps pasted dumps from eating the app's context

_SURROGATES = str.maketrans({code: "\ufffd" for code in range(0xD800, 0xE000)})


class QuestionTooLong(BotError):
    """The question is longer than MAX_QUESTION_CHARS; it is answered without asking Dify."""


@dataclass(frozen=True, slots=True)
class Question:
    """A question made safe to send, or the reason it is refused."""

    text: str
    refusal: BotError | None = None


def check_question(text: str) -> Question:
    """Replace lone surrogates (undecodable input) with U+FFFD and refuse questions over the limit."""
    clean = text.translate(_SURROGATES)
    if len(clean) > MAX_QUESTION_CHARS:
        return Question(clean, QuestionTooLong(f"question of {len(clean)} characters", code="question_too_long"))
    return Question(clean)


async def refused(error: BotError) -> AsyncIterator[ReplyEvent]:
    """The reply events of a question answered with a refusal: one Failed, nothing sent to Dify."""
    yield Failed(error=error)
