"""Pressing buttons on the fake Telegram the way a user would, for the controls tests."""

from __future__ import annotations

from tests.e2e.telegram_harness import TelegramHarness, eventually

STOP = "⏹ Stop"
LIKE = "👍"
DISLIKE = "👎"
CHOSEN = " ✓"


async def press(
    harness: TelegramHarness, button: str, *, chat_id: int = 42, user_id: int = 7, message_id: int | None = None
) -> str:
    """`user_id` presses `button` on a bot message in the chat; returns the query id once it is answered."""
    update = harness.telegram.press_update(chat_id=chat_id, user_id=user_id, button=button, message_id=message_id)
    query_id = str(update["callback_query"]["id"])
    assert await harness.deliver(update) == 200
    await eventually(lambda: query_id in harness.telegram.queries.answers, 5.0, f"(press of {button!r} answered)")
    return query_id


def notice(harness: TelegramHarness, query_id: str) -> str:
    return harness.telegram.queries.text_of(query_id)


def keyboard(harness: TelegramHarness, chat_id: int = 42, index: int = -1) -> list[list[str]]:
    """The button labels of the chat's bot message `index` (default: the newest)."""
    message = harness.telegram.chat_messages(chat_id)[index]
    return harness.telegram.buttons(chat_id, message.message_id)


def all_answered(harness: TelegramHarness) -> bool:
    queries = harness.telegram.queries
    return not queries.unanswered() and not queries.refused
