"""The app's suggested questions: its openers for a first conversation and follow-ups after an answer."""

from __future__ import annotations

import logging

from core.controls.model import MAX_SUGGESTIONS
from core.dify.client import DifyClient
from core.dify.errors import DifyError
from core.dify.parameters import ParametersCache

log = logging.getLogger(__name__)


def _pick(questions: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(question.strip() for question in questions if question.strip())[:MAX_SUGGESTIONS]


async def openers(parameters: ParametersCache) -> tuple[str, ...]:
    """Up to three of the app's opening questions (its `suggested_questions`); none when Dify is unreachable."""
    try:
        return _pick((await parameters.get()).suggested_questions)
    except DifyError as exc:
        log.info("no opening questions: %r", exc)
        return ()


async def follow_ups(dify: DifyClient, parameters: ParametersCache, *, message_id: str, user: str) -> tuple[str, ...]:
    """Up to three follow-up questions for a completed answer, when the app suggests them."""
    try:
        if not (await parameters.get()).suggested_after_answer:
            return ()
        return _pick(await dify.suggested(message_id=message_id, user=user))
    except DifyError as exc:
        log.info("no follow-up questions for %s: %r", message_id, exc)
        return ()
