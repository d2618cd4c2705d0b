"""Telegram suggested questions end to end: follow-ups after an answer, openers on /start, a press asks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.texts import text
from tests.e2e.telegram_controls_harness import DISLIKE, LIKE, all_answered, keyboard, press
from tests.e2e.telegram_harness import TelegramHarness, eventually, rendered, telegram_bot

GROUP = -100500
FOLLOW_UPS = ["How do refunds work?", "What does shipping cost?", "Can I change my order?"]
OPENERS = ["What can you do?", "现在几点了？请告诉我一个很长的问题，测试按钮的数据长度限制"]


@pytest.fixture(params=["polling", "webhook"])
async def bot(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=request.param == "webhook") as h:
        yield h


@pytest.fixture
async def polling_bot(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as harness:
        yield harness


def all_callback_data(harness: TelegramHarness) -> list[str]:
    """The callback_data of every keyboard the bot sent or set."""
    found: list[str] = []
    for call in harness.telegram.calls:
        markup = call.params.get("reply_markup")
        if isinstance(markup, dict):
            found += [str(key["callback_data"]) for row in markup["inline_keyboard"] for key in row]
    return found


async def test_no_suggestions_when_the_app_offers_none(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("hello")
    await polling_bot.settled()
    assert keyboard(polling_bot) == [[LIKE, DISLIKE]]
    assert polling_bot.dify.controls.suggested_calls == []


async def test_a_pressed_follow_up_is_asked_in_the_same_conversation(bot: TelegramHarness) -> None:
    bot.dify.controls.follow_ups_enabled = True
    bot.dify.controls.follow_ups = list(FOLLOW_UPS)
    await bot.say("hello")
    await bot.settled()
    await eventually(lambda: keyboard(bot) == [[LIKE, DISLIKE], *([q] for q in FOLLOW_UPS)], 3.0)
    pressed = bot.telegram.chat_messages(42)[-1]
    await press(bot, FOLLOW_UPS[1])
    texts = await bot.settled(count=2)
    assert keyboard(bot, index=0) == [[LIKE, DISLIKE]]  # the suggestions went, the rating stays
    answer = bot.telegram.chat_messages(42)[-1]
    assert answer.reply_to_message_id == pressed.message_id
    assert texts[-1].startswith(rendered(text("asked", text=FOLLOW_UPS[1])))
    assert texts[-1].endswith(f"echo: {FOLLOW_UPS[1]}")
    first, second = bot.dify.chat_requests()
    assert second["query"] == FOLLOW_UPS[1]
    assert first["conversation_id"] == "" and list(bot.dify.conversations) == [second["conversation_id"]]
    assert second["user"] == first["user"] == "tg-7"
    assert all_answered(bot)


async def test_a_follow_up_pressed_in_a_group_answers_there(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.controls.follow_ups_enabled = True
    await polling_bot.say("@test_bot hello", chat_id=GROUP, chat_type="supergroup", user_id=7)
    await polling_bot.settled(GROUP)
    await eventually(lambda: len(keyboard(polling_bot, GROUP)) == 4, 3.0)
    question = keyboard(polling_bot, GROUP)[1][0]
    await press(polling_bot, question, chat_id=GROUP, user_id=8)
    texts = await polling_bot.settled(GROUP, count=2)
    assert texts[-1].endswith(f"echo: {question}")
    assert [r["user"] for r in polling_bot.dify.chat_requests()] == [f"tg-chat-{GROUP}"] * 2


async def test_start_offers_the_apps_openers(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.controls.openers = list(OPENERS)
    await polling_bot.say("/start")
    texts = await polling_bot.settled()
    assert texts == ["Hello! Ask me anything.\n\n" + text("suggestions_intro")]
    assert keyboard(polling_bot) == [[question] for question in OPENERS]
    await press(polling_bot, OPENERS[1])
    texts = await polling_bot.settled(count=2)
    assert texts[-1].endswith(f"echo: {OPENERS[1]}")
    assert keyboard(polling_bot, index=0) == []  # the greeting's buttons are gone
    assert polling_bot.dify.chat_requests()[0]["query"] == OPENERS[1]
    assert all(len(data.encode()) <= 64 for data in all_callback_data(polling_bot))


async def test_start_without_openers_is_a_plain_greeting(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("/start")
    assert await polling_bot.settled() == ["Hello! Ask me anything."]
    assert keyboard(polling_bot) == []


async def test_a_suggestion_that_is_gone_says_so(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.controls.openers = list(OPENERS)
    await polling_bot.say("/start")
    await polling_bot.settled()
    greeting = polling_bot.telegram.chat_messages(42)[-1].message_id
    fake = polling_bot.telegram
    fake.push_update(fake.callback_update(chat_id=42, user_id=7, message_id=greeting, data="q:2"))  # no third
    fake.push_update(fake.callback_update(chat_id=42, user_id=7, message_id=9999, data="q:0"))  # inaccessible
    await eventually(lambda: len(fake.queries.answers) == 2, 5.0)
    assert [answer.text for answer in fake.queries.answers.values()] == [text("suggestion_gone")] * 2
    assert polling_bot.dify.chat_requests() == []
    assert keyboard(polling_bot) == [[question] for question in OPENERS]
    assert all_answered(polling_bot)
