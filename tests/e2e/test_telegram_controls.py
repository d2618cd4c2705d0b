"""Telegram controls end to end: Stop (button and /stop), 👍/👎, presses by others and after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.texts import text
from tests.e2e.telegram_controls_harness import (
    CHOSEN,
    DISLIKE,
    LIKE,
    STOP,
    all_answered,
    keyboard,
    notice,
    press,
)
from tests.e2e.telegram_harness import (
    CALLBACK_DEADLINE,
    SCALE,
    TOKEN,
    TelegramHarness,
    bot_on,
    eventually,
    scaled_clock,
    telegram_bot,
)
from tests.fakes.dify import Answer, FakeDify
from tests.fakes.dify_controls import FeedbackCall
from tests.fakes.telegram import FakeTelegram

GROUP = -100500
SLOW = " ".join(f"w{i}" for i in range(300))


def slow_answer() -> Answer:
    """About nine seconds of streaming: plenty of time to press Stop."""
    return Answer(SLOW, chunks=[SLOW[i : i + 5] for i in range(0, len(SLOW), 5)], delay=0.03)


@pytest.fixture(params=["polling", "webhook"])
async def bot(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=request.param == "webhook") as h:
        yield h


@pytest.fixture
async def polling_bot(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as harness:
        yield harness


async def streaming_with_stop(harness: TelegramHarness, chat_id: int = 42) -> None:
    await eventually(
        lambda: bool(harness.telegram.chat_messages(chat_id)) and keyboard(harness, chat_id) == [[STOP]],
        5.0,
        "(the answer shows a Stop button)",
    )


async def assert_stopped(harness: TelegramHarness, *, chat_id: int = 42, pressed_at: float) -> None:
    """Dify was told at once, the answer ends with the partial text and "(Stopped.)", no keyboard, no more edits."""
    loop = asyncio.get_running_loop()
    await eventually(lambda: len(harness.dify.stops) == 1, 1.0, "(Dify got the stop)")
    assert loop.time() - pressed_at < 1.0
    await eventually(harness.idle, 3.0, "(the answer ended)")
    message = harness.telegram.chat_messages(chat_id)[-1]
    stopped = text("stopped")
    assert message.text.endswith(stopped)
    shown = message.text.removesuffix(stopped).strip()
    assert shown and SLOW.startswith(shown) and shown != SLOW
    assert message.reply_markup is None
    edits = message.edits
    await asyncio.sleep(0.3)
    assert message.edits == edits  # nothing after the final frame


async def test_stop_button_ends_a_slow_answer(bot: TelegramHarness) -> None:
    bot.dify.script(slow_answer(), Answer("right away"))
    await bot.say("tell me everything")
    await streaming_with_stop(bot)
    pressed_at = asyncio.get_running_loop().time()
    query = await press(bot, STOP)
    assert notice(bot, query) == text("stop_done")
    await assert_stopped(bot, pressed_at=pressed_at)
    await bot.say("next")
    texts = await bot.settled(count=2, timeout=3.0)  # the chat is free at once
    assert texts[-1] == "right away"
    assert all_answered(bot)


async def test_stop_command_ends_the_running_answer(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.script(slow_answer())
    await polling_bot.say("tell me everything")
    await streaming_with_stop(polling_bot)
    pressed_at = asyncio.get_running_loop().time()
    await polling_bot.say("/stop")
    await assert_stopped(polling_bot, pressed_at=pressed_at)
    assert polling_bot.answers()[-1].endswith(text("stopped"))  # no extra reply: the answer says it


async def test_stop_command_with_nothing_running(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("/stop")
    assert await polling_bot.settled() == [text("stop_nothing")]
    assert polling_bot.dify.stops == []


async def test_in_a_group_only_the_asker_or_an_admin_may_stop(polling_bot: TelegramHarness) -> None:
    polling_bot.telegram.members.make_admin(GROUP, 9)
    polling_bot.dify.script(slow_answer())
    await polling_bot.say("@test_bot tell me everything", chat_id=GROUP, chat_type="supergroup", user_id=7)
    await streaming_with_stop(polling_bot, GROUP)
    query = await press(polling_bot, STOP, chat_id=GROUP, user_id=8)
    assert notice(polling_bot, query) == text("stop_not_yours")
    await asyncio.sleep(0.3)
    assert polling_bot.dify.stops == [] and not polling_bot.idle()
    pressed_at = asyncio.get_running_loop().time()
    query = await press(polling_bot, STOP, chat_id=GROUP, user_id=9)
    assert notice(polling_bot, query) == text("stop_done")
    await assert_stopped(polling_bot, chat_id=GROUP, pressed_at=pressed_at)
    assert all_answered(polling_bot)


async def test_stop_command_in_a_group_by_name(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.script(slow_answer())
    await polling_bot.say("@test_bot tell me everything", chat_id=GROUP, chat_type="supergroup", user_id=7)
    await streaming_with_stop(polling_bot, GROUP)
    await polling_bot.say("/stop@other_bot", chat_id=GROUP, chat_type="supergroup", user_id=7)
    await asyncio.sleep(0.3)
    assert polling_bot.dify.stops == []  # a command for another bot
    pressed_at = asyncio.get_running_loop().time()
    await polling_bot.say("/stop@test_bot", chat_id=GROUP, chat_type="supergroup", user_id=7)
    await assert_stopped(polling_bot, chat_id=GROUP, pressed_at=pressed_at)


async def test_like_dislike_and_clear(bot: TelegramHarness) -> None:
    await bot.say("rate me")
    await bot.settled()
    assert keyboard(bot) == [[LIKE, DISLIKE]]
    first = await press(bot, LIKE)
    await eventually(lambda: keyboard(bot) == [[LIKE + CHOSEN, DISLIKE]], 3.0)
    second = await press(bot, DISLIKE)
    await eventually(lambda: keyboard(bot) == [[LIKE, DISLIKE + CHOSEN]], 3.0)
    third = await press(bot, DISLIKE + CHOSEN)
    await eventually(lambda: keyboard(bot) == [[LIKE, DISLIKE]], 3.0)
    calls = bot.dify.controls.feedbacks
    assert [call.rating for call in calls] == ["like", "dislike", None]
    assert {call.user for call in calls} == {"tg-7"}
    assert len({call.message_id for call in calls}) == 1
    assert [notice(bot, query) for query in (first, second, third)] == [
        text("feedback_like"),
        text("feedback_dislike"),
        text("feedback_cleared"),
    ]
    assert all_answered(bot)


async def test_group_feedback_goes_to_dify_as_the_group(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("@test_bot rate me", chat_id=GROUP, chat_type="supergroup", user_id=7)
    await polling_bot.settled(GROUP)
    await press(polling_bot, LIKE, chat_id=GROUP, user_id=8)  # anyone in the group may rate
    await eventually(lambda: keyboard(polling_bot, GROUP) == [[LIKE + CHOSEN, DISLIKE]], 3.0)
    assert polling_bot.dify.controls.feedbacks[0].user == f"tg-chat-{GROUP}"


async def test_feedback_still_works_after_a_restart(redis_url: str, key_prefix: str) -> None:
    async with (
        FakeDify() as dify,
        FakeTelegram(
            token=TOKEN, clock=scaled_clock, retry_after=1, callback_deadline=CALLBACK_DEADLINE * SCALE
        ) as telegram,
    ):
        async with bot_on(dify, telegram, redis_url=redis_url, key_prefix=key_prefix) as first:
            await first.say("rate me")
            await first.settled()
            await press(first, LIKE)
            await eventually(lambda: keyboard(first) == [[LIKE + CHOSEN, DISLIKE]], 3.0)
        async with bot_on(dify, telegram, redis_url=redis_url, key_prefix=key_prefix) as second:
            query = await press(second, LIKE + CHOSEN)  # the button of the bot that is gone
            await eventually(lambda: keyboard(second) == [[LIKE, DISLIKE]], 3.0)
            assert notice(second, query) == text("feedback_cleared")
            message_id = dify.controls.feedbacks[0].message_id
            assert dify.controls.feedbacks == [
                FeedbackCall(message_id=message_id, rating="like", user="tg-7"),
                FeedbackCall(message_id=message_id, rating=None, user="tg-7"),
            ]
            assert all_answered(second)


async def test_an_old_stop_button_says_the_answer_ended(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("hello")
    await polling_bot.settled()
    message_id = polling_bot.telegram.chat_messages(42)[-1].message_id
    for data in ("s:gone-token", "x:forged", "f:z:1", "q:99", ""):
        update = polling_bot.telegram.callback_update(chat_id=42, user_id=7, message_id=message_id, data=data or "?")
        polling_bot.telegram.push_update(update)
    await eventually(lambda: len(polling_bot.telegram.queries.answers) == 5, 5.0)
    assert {answer.text for answer in polling_bot.telegram.queries.answers.values()} == {text("stop_ended")}
    assert polling_bot.dify.stops == [] and polling_bot.dify.controls.feedbacks == []
    assert all_answered(polling_bot)


async def test_presses_follow_the_allow_lists(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(
        redis_url=redis_url, key_prefix=key_prefix, webhook=True, telegram_allowed_users="7"
    ) as harness:
        assert "callback_query" in harness.telegram.webhook["allowed_updates"]  # type: ignore[index]
        await harness.say("@test_bot rate me", chat_id=GROUP, chat_type="supergroup", user_id=7)
        await harness.settled(GROUP)
        query = await press(harness, LIKE, chat_id=GROUP, user_id=8)
        assert notice(harness, query) == text("not_allowed")
        assert harness.dify.controls.feedbacks == [] and keyboard(harness, GROUP) == [[LIKE, DISLIKE]]
        query = await press(harness, LIKE, chat_id=GROUP, user_id=7)
        assert notice(harness, query) == text("feedback_like")
