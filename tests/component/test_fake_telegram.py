"""Drive the fake Telegram Bot API with the real aiogram Bot over a socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from aiogram.utils.formatting import Bold, Code, Italic, Text, TextLink

from tests.fakes.telegram import (
    CONFLICT_WEBHOOK,
    EDIT_NOT_FOUND,
    NOT_MODIFIED,
    FakeTelegram,
    ManualClock,
)

PRIVATE = 42
GROUP = -100123


def make_bot(fake: FakeTelegram, token: str | None = None) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.url))
    return Bot(token or fake.token, session=session)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = make_bot(fake)
    yield bot
    await bot.session.close()


def dump(entities: list[MessageEntity] | None) -> list[dict[str, object]]:
    """aiogram models carry the bot in a private attribute, so compare plain dicts."""
    return [entity.model_dump(exclude_none=True) for entity in entities or []]


def stop_keyboard(data: str = "stop:1") -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Stop", callback_data=data)]])


# --------------------------------------------------------------------------- basics


async def test_get_me_matches_token(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == bot.id == fake.bot_id == 123456
    assert me.username == "test_bot"
    assert me.is_bot
    assert fake.calls[0].method == "getMe"


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    other = make_bot(fake, token="999:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError) as exc:
            await other.get_me()
    finally:
        await other.session.close()
    assert exc.value.message == "Unauthorized"
    assert fake.calls[-1].status == 401


async def test_unknown_method_is_not_found(bot: Bot, fake: FakeTelegram) -> None:
    class GetNothing(TelegramMethod[bool]):
        __returning__ = bool
        __api_method__ = "getNothing"

    with pytest.raises(TelegramNotFound) as exc:
        await bot(GetNothing())
    assert exc.value.message == "Not Found"
    assert fake.count("getNothing", status=404) == 1


# --------------------------------------------------------------------------- sendMessage


async def test_send_message_stores_and_returns_message(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    first = await bot.send_message(PRIVATE, "hello")
    clock.advance(1)
    second = await bot.send_message(PRIVATE, "world", reply_markup=stop_keyboard())
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.chat.type == "private"
    assert first.from_user is not None and first.from_user.id == fake.bot_id
    assert second.reply_markup is not None
    assert second.reply_markup.inline_keyboard[0][0].callback_data == "stop:1"
    assert fake.visible_texts(PRIVATE) == ["hello", "world"]
    stored = fake.messages[(PRIVATE, 2)]
    assert stored.history == ["world"] and stored.edits == 0
    assert stored.reply_markup == {"inline_keyboard": [[{"text": "Stop", "callback_data": "stop:1"}]]}
    call = fake.calls[-1]
    assert call.params["chat_id"] == PRIVATE
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "Stop"


async def test_group_chat_is_supergroup_and_reply_is_linked(fake: FakeTelegram, bot: Bot) -> None:
    update = fake.message_update(chat_id=GROUP, user_id=7, text="@test_bot hi", chat_type="supergroup")
    incoming = update["message"]
    assert incoming["entities"] == [{"type": "mention", "offset": 0, "length": 9}]
    sent = await bot.send_message(GROUP, "…", reply_parameters=ReplyParameters(message_id=incoming["message_id"]))
    assert sent.chat.type == "supergroup"
    assert sent.message_id == incoming["message_id"] + 1
    assert sent.reply_to_message is not None
    assert sent.reply_to_message.text == "@test_bot hi"
    assert fake.messages[(GROUP, sent.message_id)].reply_to_message_id == incoming["message_id"]


async def test_send_message_limits(bot: Bot, fake: FakeTelegram, clock: ManualClock) -> None:
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "")
    assert exc.value.message == "Bad Request: message text is empty"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "   \n")
    assert exc.value.message == "Bad Request: message text is empty"
    # 2048 astral characters are 4096 UTF-16 units: accepted; one more is refused.
    await bot.send_message(PRIVATE, "😀" * 2048)
    clock.advance(1)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "😀" * 2048 + "x")
    assert exc.value.message == "Bad Request: message is too long"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(GROUP, "topic", message_thread_id=1)
    assert exc.value.message == "Bad Request: message thread not found"
    assert fake.visible_texts(PRIVATE) == ["😀" * 2048]


async def test_parse_mode_errors(bot: Bot, clock: ManualClock) -> None:
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "<b>unclosed", parse_mode="HTML")
    assert exc.value.message == (
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
    )
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "<blink>x</blink>", parse_mode="HTML")
    assert exc.value.message.startswith('Bad Request: can\'t parse entities: Unsupported start tag "blink"')
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "Done.", parse_mode="MarkdownV2")
    assert exc.value.message == (
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
    )
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "abc", entities=[MessageEntity(type="bold", offset=2, length=5)])
    assert exc.value.message.startswith("Bad Request: can't parse entities: ")
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "abc", entities=[MessageEntity(type="sparkle", offset=0, length=1)])
    assert exc.value.message.startswith("Bad Request: can't parse entities: ")
    # Entities win over parse_mode, as on Telegram.
    both = await bot.send_message(
        PRIVATE, "<b>x", parse_mode="HTML", entities=[MessageEntity(type="italic", offset=0, length=1)]
    )
    assert both.text == "<b>x"
    assert dump(both.entities) == [{"type": "italic", "offset": 0, "length": 1}]


async def test_markup_parses_to_the_same_entities_aiogram_builds(bot: Bot, clock: ManualClock) -> None:
    content = Text("Hi ", Bold("bold ", Italic("both")), " 😀 ", Code("x<y"), " ", TextLink("link", url="https://e.x"))
    expected = await bot.send_message(PRIVATE, **content.as_kwargs())
    clock.advance(1)
    html = await bot.send_message(PRIVATE, content.as_html(), parse_mode="HTML")
    clock.advance(1)
    markdown = await bot.send_message(PRIVATE, content.as_markdown(), parse_mode="MarkdownV2")
    assert html.text == markdown.text == expected.text
    assert dump(html.entities) == dump(markdown.entities) == dump(expected.entities)
    assert len(dump(expected.entities)) == 4


# --------------------------------------------------------------------------- editMessageText


async def test_edit_message_text_rules(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    sent = await bot.send_message(PRIVATE, "draft", reply_markup=stop_keyboard())
    clock.advance(1)
    # Same text and same keyboard: not modified.
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("draft", chat_id=PRIVATE, message_id=sent.message_id, reply_markup=stop_keyboard())
    assert exc.value.message == NOT_MODIFIED
    # Same text but the keyboard goes away: that is a modification.
    edited = await bot.edit_message_text("draft", chat_id=PRIVATE, message_id=sent.message_id)
    assert not isinstance(edited, bool)
    assert edited.reply_markup is None and edited.edit_date is not None
    clock.advance(1)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("draft  ", chat_id=PRIVATE, message_id=sent.message_id)
    assert exc.value.message == NOT_MODIFIED, "trailing whitespace is trimmed like Telegram does"
    await bot.edit_message_text("final", chat_id=PRIVATE, message_id=sent.message_id)
    clock.advance(1)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("x" * 4097, chat_id=PRIVATE, message_id=sent.message_id)
    assert exc.value.message == "Bad Request: MESSAGE_TOO_LONG"
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("<i>x", chat_id=PRIVATE, message_id=sent.message_id, parse_mode="HTML")
    assert exc.value.message.startswith("Bad Request: can't parse entities: ")
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("x", chat_id=PRIVATE, message_id=99)
    assert exc.value.message == EDIT_NOT_FOUND
    stored = fake.messages[(PRIVATE, sent.message_id)]
    assert stored.history == ["draft", "draft", "final"]
    assert stored.edits == 2 and stored.reply_markup is None
    assert fake.count("editMessageText", chat_id=PRIVATE, status=400) == 5


async def test_user_deleted_message_cannot_be_edited(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    sent = await bot.send_message(PRIVATE, "placeholder")
    fake.delete_message(PRIVATE, sent.message_id)
    clock.advance(1)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("more", chat_id=PRIVATE, message_id=sent.message_id)
    assert exc.value.message == "Bad Request: message to edit not found"
    assert fake.chat_messages(PRIVATE) == []
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.delete_message(PRIVATE, sent.message_id)
    assert exc.value.message == "Bad Request: message to delete not found"


async def test_delete_message(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    sent = await bot.send_message(PRIVATE, "bye")
    clock.advance(1)
    assert await bot.delete_message(PRIVATE, sent.message_id) is True
    assert fake.messages[(PRIVATE, sent.message_id)].deleted
    assert fake.visible_texts(PRIVATE) == []


# --------------------------------------------------------------------------- flood rules


async def test_private_chat_needs_one_second_between_operations(
    fake: FakeTelegram, bot: Bot, clock: ManualClock
) -> None:
    await bot.send_message(PRIVATE, "one")
    clock.advance(0.5)
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(PRIVATE, "two")
    assert exc.value.retry_after == 3
    # aiogram rewrites the description of a 429 and keeps the original at the end.
    assert exc.value.message.endswith("Original description: Too Many Requests: retry after 3")
    assert fake.rate_limited == 1
    assert fake.visible_texts(PRIVATE) == ["one"], "a refused call changes nothing"
    # The refused call did not count: 1.0 s after the first operation is fine.
    clock.advance(0.5)
    await bot.send_message(PRIVATE, "two")
    clock.advance(1.0)
    await bot.send_message(PRIVATE, "three")
    assert fake.visible_texts(PRIVATE) == ["one", "two", "three"]
    assert fake.count("sendMessage", chat_id=PRIVATE, status=429) == 1
    # Chat actions are not flood-counted, and other chats have their own allowance.
    await bot.send_chat_action(PRIVATE, "typing")
    await bot.send_message(PRIVATE + 1, "elsewhere")


async def test_edits_and_deletes_share_the_private_allowance(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    sent = await bot.send_message(PRIVATE, "a")
    clock.advance(0.9)
    with pytest.raises(TelegramRetryAfter):
        await bot.edit_message_text("b", chat_id=PRIVATE, message_id=sent.message_id)
    with pytest.raises(TelegramRetryAfter):
        await bot.delete_message(PRIVATE, sent.message_id)
    assert fake.rate_limited == 2
    assert fake.messages[(PRIVATE, sent.message_id)].text == "a"


async def test_group_allows_twenty_per_minute(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    for index in range(20):
        await bot.send_message(GROUP, f"m{index}")
        clock.advance(0.1)
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(GROUP, "m20")
    assert exc.value.retry_after == 3
    assert fake.rate_limited == 1
    # The window slides: 60 s after the first operation one slot frees up.
    clock.advance(58.05)
    await bot.send_message(GROUP, "m20")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(GROUP, "m21")
    assert len(fake.chat_messages(GROUP)) == 21


async def test_rate_limits_can_be_disabled(clock: ManualClock) -> None:
    async with FakeTelegram(clock=clock, rate_limits=False) as fake:
        bot = make_bot(fake)
        try:
            for index in range(5):
                await bot.send_message(PRIVATE, str(index))
        finally:
            await bot.session.close()
    assert fake.rate_limited == 0
    assert len(fake.chat_messages(PRIVATE)) == 5


# --------------------------------------------------------------------------- injected faults


async def test_injected_faults_map_to_aiogram_exceptions(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    fake.fail_next("sendMessage", "retry_after:7")
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(PRIVATE, "x")
    assert retry.value.retry_after == 7
    assert fake.rate_limited == 0, "injected 429s are not the fake's own flood rule"

    fake.fail_next("sendMessage", "forbidden")
    with pytest.raises(TelegramForbiddenError) as forbidden:
        await bot.send_message(PRIVATE, "x")
    assert forbidden.value.message == "Forbidden: bot was blocked by the user"

    fake.fail_next("sendMessage", "server_error", count=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError) as server:
            await bot.send_message(PRIVATE, "x")
        assert server.value.message == "Internal Server Error"

    fake.fail_next("sendMessage", "thread_not_found")
    with pytest.raises(TelegramBadRequest) as thread:
        await bot.send_message(PRIVATE, "x", message_thread_id=5)
    assert thread.value.message == "Bad Request: message thread not found"

    sent = await bot.send_message(PRIVATE, "ok")
    faults = {
        "not_found": "Bad Request: message to edit not found",
        "cant_be_edited": "Bad Request: message can't be edited",
        "cant_parse": ("Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"),
    }
    for fault, message in faults.items():
        clock.advance(1)
        fake.fail_next("editMessageText", fault)
        with pytest.raises(TelegramBadRequest) as exc:
            await bot.edit_message_text("new", chat_id=PRIVATE, message_id=sent.message_id)
        assert exc.value.message == message
    clock.advance(1)
    await bot.edit_message_text("new", chat_id=PRIVATE, message_id=sent.message_id)
    assert fake.visible_texts(PRIVATE) == ["new"]
    assert fake.count("sendMessage", status=200) == 1
    assert len(fake.calls) == 10


async def test_fault_scoped_to_one_chat(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", "forbidden", chat_id=PRIVATE)
    await bot.send_message(PRIVATE + 1, "other chat is unaffected")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(PRIVATE, "blocked")
    await bot.send_message(PRIVATE, "the fault was one-shot")
    with pytest.raises(ValueError):
        fake.fail_next("sendMessage", "explode")


# --------------------------------------------------------------------------- updates and webhook


async def test_get_updates_returns_update_pushed_while_waiting(fake: FakeTelegram, bot: Bot) -> None:
    update = fake.message_update(chat_id=PRIVATE, user_id=PRIVATE, text="/start hello")
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    assert not poll.done()
    started = time.monotonic()
    update_id = fake.push_update(update)
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1
    assert [u.update_id for u in updates] == [update_id]
    message = updates[0].message
    assert message is not None and message.text == "/start hello"
    assert dump(message.entities) == [{"type": "bot_command", "offset": 0, "length": 6}]
    # Confirming with offset drops it.
    assert await bot.get_updates(offset=update_id + 1, timeout=0) == []


async def test_get_updates_waits_for_timeout_without_spinning(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.8
    assert fake.count("getUpdates") == 1


async def test_get_updates_offset_and_validation_by_aiogram(fake: FakeTelegram, bot: Bot) -> None:
    ids = [fake.push_update(fake.message_update(chat_id=PRIVATE, user_id=PRIVATE, text=f"m{i}")) for i in range(3)]
    first = await bot.get_updates(timeout=0)
    assert [u.update_id for u in first] == ids
    assert all(isinstance(u, Update) for u in first)
    rest = await bot.get_updates(offset=ids[1], timeout=0)
    assert [u.update_id for u in rest] == ids[1:]
    assert fake.calls[-1].params == {"offset": ids[1], "timeout": 0}


async def test_webhook_blocks_get_updates(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_webhook("https://bot.example/hook", secret_token="s3cr3t_-") is True
    assert fake.webhook is not None
    assert fake.webhook["url"] == "https://bot.example/hook"
    assert fake.webhook["secret_token"] == "s3cr3t_-"
    info = await bot.get_webhook_info()
    assert info.url == "https://bot.example/hook"
    with pytest.raises(TelegramConflictError) as exc:
        await bot.get_updates(timeout=0)
    assert exc.value.message == CONFLICT_WEBHOOK
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert fake.webhook is None
    assert await bot.get_updates(timeout=0) == []


async def test_webhook_secret_token_charset(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.set_webhook("https://bot.example/hook", secret_token="not allowed!")
    assert exc.value.message == "Bad Request: secret token contains unallowed characters"
    assert fake.webhook is None


# --------------------------------------------------------------------------- misc methods


async def test_simple_methods_return_true(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="new", description="Start a new conversation")]
    assert await bot.set_my_commands(commands) is True
    assert fake.commands == [{"command": "new", "description": "Start a new conversation"}]
    assert await bot.send_chat_action(GROUP, "typing", message_thread_id=1) is True
    fake.queries.press("1")  # a button was pressed: its query may be answered once
    assert await bot.answer_callback_query("1", text="Stopped") is True
    assert await bot.send_message_draft(PRIVATE, draft_id=5, text="thinking") is True
    assert await bot.delete_my_commands() is True
    assert fake.commands == []
    assert [call.method for call in fake.calls] == [
        "setMyCommands",
        "sendChatAction",
        "answerCallbackQuery",
        "sendMessageDraft",
        "deleteMyCommands",
    ]
    with pytest.raises(TelegramBadRequest):
        await bot.set_my_commands([BotCommand(command="New", description="x")])


async def test_send_document_is_flood_counted(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    sent = await bot.send_document(PRIVATE, BufferedInputFile(b"data", filename="answer.md"), caption="full answer")
    assert sent.document is not None and sent.caption == "full answer"
    upload = fake.calls[-1].params["document"]
    assert isinstance(upload, dict) and upload["data"] == b"data"
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(PRIVATE, "too soon")
    clock.advance(1)
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.edit_message_text("x", chat_id=PRIVATE, message_id=sent.message_id)
    assert exc.value.message == "Bad Request: there is no text in the message to edit"


async def test_callback_data_over_64_bytes_is_refused(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest) as exc:
        await bot.send_message(PRIVATE, "x", reply_markup=stop_keyboard("s" * 65))
    assert exc.value.message == "Bad Request: BUTTON_DATA_INVALID"


async def test_callback_update_validates_in_aiogram(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(PRIVATE, "answer", reply_markup=stop_keyboard())
    raw = fake.callback_update(chat_id=PRIVATE, user_id=PRIVATE, message_id=sent.message_id, data="stop:1")
    update = Update.model_validate(raw, context={"bot": bot})
    assert update.callback_query is not None
    assert update.callback_query.data == "stop:1"
    assert update.callback_query.message is not None
    assert update.callback_query.message.message_id == sent.message_id


async def test_dispatcher_long_polling_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    dispatcher = Dispatcher()
    seen: list[str] = []

    @dispatcher.message()
    async def echo(message: Message) -> None:
        seen.append(message.text or "")
        await message.answer(f"echo: {message.text}")

    await bot.delete_webhook(drop_pending_updates=True)
    polling = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=5)
    )
    fake.push_update(fake.message_update(chat_id=PRIVATE, user_id=PRIVATE, text="ping"))
    for _ in range(100):
        if fake.visible_texts(PRIVATE):
            break
        await asyncio.sleep(0.02)
    await dispatcher.stop_polling()
    await asyncio.wait_for(polling, 5)
    assert seen == ["ping"]
    assert fake.visible_texts(PRIVATE) == ["echo: ping"]
    polls = [call for call in fake.calls if call.method == "getUpdates"]
    assert polls[0].params["allowed_updates"] == ["message"]
    assert fake.count("getUpdates", status=409) == 0
