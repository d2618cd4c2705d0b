"""The fake Bot API is as strict as Telegram about button presses: one timely answer, keyboards, admins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Update

from tests.fakes.telegram import NOT_MODIFIED, FakeTelegram, ManualClock
from tests.fakes.telegram_controls import ANSWER_TOO_LONG, QUERY_INVALID

CHAT = 42
GROUP = -100123


def buttons(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=label, callback_data=f"q:{i}")] for i, label in enumerate(labels)]
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock, callback_deadline=10.0, rate_limits=False) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))
    try:
        yield bot
    finally:
        await bot.session.close()


async def test_a_query_is_answered_once_and_in_time(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    sent = await bot.send_message(CHAT, "pick", reply_markup=buttons("A", "B"))
    first = fake.press_update(chat_id=CHAT, user_id=7, button="B")
    query = Update.model_validate(first).callback_query
    assert query is not None and query.data == "q:1" and query.message is not None
    assert query.message.message_id == sent.message_id
    assert fake.queries.unanswered() == [query.id]
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(query.id, text="x" * 201)
    assert await bot.answer_callback_query(query.id, text="Done.", show_alert=True)
    assert fake.queries.answers[query.id].text == "Done." and fake.queries.answers[query.id].show_alert
    with pytest.raises(TelegramBadRequest) as twice:
        await bot.answer_callback_query(query.id)
    late = fake.press_update(chat_id=CHAT, user_id=7, button="A")["callback_query"]["id"]
    clock.advance(10.5)
    with pytest.raises(TelegramBadRequest) as too_late:
        await bot.answer_callback_query(late)
    with pytest.raises(TelegramBadRequest):
        await bot.answer_callback_query("never-pressed")
    assert twice.value.message == too_late.value.message == QUERY_INVALID
    assert [description for _, description in fake.queries.refused] == [ANSWER_TOO_LONG] + [QUERY_INVALID] * 3
    assert fake.queries.unanswered() == [late]


async def test_press_update_finds_the_newest_button(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(CHAT, "old", reply_markup=buttons("A"))
    newer = await bot.send_message(CHAT, "new", reply_markup=buttons("A"))
    update = fake.press_update(chat_id=CHAT, user_id=7, button="A", queue=True)
    assert update["callback_query"]["message"]["message_id"] == newer.message_id
    assert await bot.get_updates() != []
    with pytest.raises(LookupError):
        fake.press_update(chat_id=CHAT, user_id=7, button="missing")


async def test_edit_reply_markup(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(CHAT, "pick", reply_markup=buttons("A", "B"))
    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id, reply_markup=buttons("A"))
    assert fake.buttons(CHAT, sent.message_id) == [["A"]]
    with pytest.raises(TelegramBadRequest) as same:
        await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id, reply_markup=buttons("A"))
    assert same.value.message == NOT_MODIFIED
    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id)
    assert fake.buttons(CHAT, sent.message_id) == []
    # Same text, other buttons: a real edit.
    await bot.edit_message_text("pick", chat_id=CHAT, message_id=sent.message_id, reply_markup=buttons("C"))
    assert fake.buttons(CHAT, sent.message_id) == [["C"]]
    with pytest.raises(TelegramBadRequest) as again:
        await bot.edit_message_text("pick", chat_id=CHAT, message_id=sent.message_id, reply_markup=buttons("C"))
    assert again.value.message == NOT_MODIFIED


async def test_chat_member_statuses(fake: FakeTelegram, bot: Bot) -> None:
    fake.members.make_admin(GROUP, 9)
    fake.members.make_admin(GROUP, 10, status="creator")
    statuses = [(await bot.get_chat_member(GROUP, user)).status for user in (8, 9, 10)]
    assert statuses == ["member", "administrator", "creator"]
