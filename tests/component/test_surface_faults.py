"""Surfaces over their fakes when the platform is away: HTML 502 pages, refused connections, chat migration."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.surface import UpdateSurface
from bots.telegram.fast_methods import LeanSession
from bots.telegram.surface import TelegramSurface
from core.render.surface import SurfaceMessageGone, SurfaceTransient
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import ANY_METHOD, MIGRATED, FakeTelegram

TOKEN = "123456:TEST-TOKEN"
GROUP, SUPERGROUP = -77, -1000077


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, rate_limits=False) as fake:
        yield fake


@pytest.fixture
async def bot(telegram: FakeTelegram) -> AsyncIterator[Bot]:
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)))
    yield bot
    await bot.session.close()


@pytest.mark.parametrize(("method", "count"), [("sendMessage", 1), (ANY_METHOD, 3)])
async def test_telegram_html_502_is_transient(telegram: FakeTelegram, bot: Bot, method: str, count: int) -> None:
    surface = TelegramSurface(bot, chat_id=42)
    telegram.fail_next(method, "bad_gateway", count=count)  # the send, then typing and delete
    with pytest.raises(SurfaceTransient):
        await surface.send("hello", final=True)
    await surface.typing()  # best effort: the page is swallowed
    await surface.delete(12345)
    assert telegram.count("sendMessage", status=502) == 1
    handle = await surface.send("hello", final=True)
    assert telegram.visible_texts(42) == ["hello"] and handle == telegram.chat_messages(42)[0].message_id


async def test_telegram_refused_connection_is_transient(telegram: FakeTelegram, bot: Bot) -> None:
    surface = TelegramSurface(bot, chat_id=42)
    handle = await surface.send("one", final=False)
    await telegram.refuse_connections()
    with pytest.raises(SurfaceTransient):
        await surface.edit(handle, "one two", final=True)
    await surface.typing()
    await telegram.accept_connections()
    await surface.edit(handle, "one two", final=True)
    assert telegram.visible_texts(42) == ["one two"]


async def test_telegram_send_follows_a_group_upgrade(telegram: FakeTelegram, bot: Bot) -> None:
    telegram.migrate_chat(GROUP, SUPERGROUP, announce=False)
    surface = TelegramSurface(bot, chat_id=GROUP, reply_to=5)
    handle = await surface.send("answer", final=True)
    assert surface.chat_id == SUPERGROUP and surface.migrated_from == GROUP
    [message] = telegram.chat_messages(SUPERGROUP)
    assert message.message_id == handle and message.text == "answer" and message.reply_to_message_id is None
    refused = [call for call in telegram.calls if call.chat_id == GROUP]
    assert [(call.method, call.status, call.error) for call in refused] == [("sendMessage", 400, MIGRATED)]


async def test_telegram_edit_after_a_group_upgrade_continues_in_the_supergroup(
    telegram: FakeTelegram, bot: Bot
) -> None:
    surface = TelegramSurface(bot, chat_id=GROUP)
    old = await surface.send("partial", final=False)
    telegram.migrate_chat(GROUP, SUPERGROUP, announce=False)
    with pytest.raises(SurfaceMessageGone):
        await surface.edit(old, "partial and more", final=False)
    await surface.delete(old)  # goes to the old group (where it is refused), not to the supergroup
    assert telegram.count("deleteMessage", chat_id=SUPERGROUP) == 0
    new = await surface.send("partial and more", final=True)
    assert telegram.visible_texts(SUPERGROUP) == ["partial and more"]
    assert new == telegram.chat_messages(SUPERGROUP)[0].message_id


async def test_slack_html_502_and_refused_connections_are_transient() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test-token", base_url=slack.api_url)
        surface = UpdateSurface(client, channel="C1", thread_ts="1.000001")
        slack.fail_next("chat.postMessage", "bad_gateway")
        with pytest.raises(SurfaceTransient):
            await surface.send("hello", final=False)
        ts = await surface.send("hello", final=False)
        await slack.refuse_connections()
        with pytest.raises(SurfaceTransient):
            await surface.edit(ts, "hello world", final=True)
        await slack.accept_connections()
        await surface.edit(ts, "hello world", final=True)
        assert [m.text for m in slack.thread("C1", "1.000001")] == ["hello world"]
        assert [c.status for c in slack.calls if not c.ok] == [502]


async def test_telegram_typing_goes_lean_and_follows_a_group_upgrade(telegram: FakeTelegram) -> None:
    bot = Bot(TOKEN, session=LeanSession(api=TelegramAPIServer.from_base(telegram.url)))
    try:
        telegram.migrate_chat(GROUP, SUPERGROUP, announce=False)
        surface = TelegramSurface(bot, chat_id=GROUP)
        await surface.typing()  # refused in the old group: the answer moves to the supergroup
        assert surface.chat_id == SUPERGROUP and surface.migrated_from == GROUP
        await surface.typing()
        await TelegramSurface(bot, chat_id=42, thread_id=7).typing()
    finally:
        await bot.session.close()
    actions = [
        (call.chat_id, call.params.get("action"), call.params.get("message_thread_id"), call.status)
        for call in telegram.calls
        if call.method == "sendChatAction"
    ]
    assert actions == [(GROUP, "typing", None, 400), (SUPERGROUP, "typing", None, 200), (42, "typing", 7, 200)]
