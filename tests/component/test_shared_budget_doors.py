"""The doors' use of the shared budgets, two "replicas" (two real clients, two SharedBudgets) on one Redis
and one fake platform: Telegram's per-chat slot and per-bot send budget, and pauses after a 429 on both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from redis.asyncio import Redis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.api import SlackApi
from bots.slack.budgets import SlackBudgets
from bots.telegram.errors import SharedBudgetBusy
from bots.telegram.runtime import open_bot
from bots.telegram.shared_budget import SharedChatBudget
from bots.telegram.surface import CURSOR, TelegramSurface
from core.keys import RedisKeys
from core.render.surface import SurfaceBusy
from core.shared_budgets import SharedBudgets
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"
PRIVATE = 42
GROUP = -1005


@pytest.fixture
def keys(key_prefix: str) -> RedisKeys:
    return RedisKeys(prefix=key_prefix, app="testapp")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, private_min_interval=0.3) as fake:
        yield fake


@pytest.fixture
async def bots(telegram: FakeTelegram, redis: Redis, keys: RedisKeys) -> AsyncIterator[list[Bot]]:
    """Two replicas' bots: private chats one operation per 0.3 s, groups one per 0.5 s, one new message a
    second across all chats."""
    opened = []
    for _ in range(2):
        bot = open_bot(TOKEN, telegram.url)
        bot.session.middleware(
            SharedChatBudget(
                SharedBudgets(redis, keys), bot_id=bot.id, private_interval=0.3, group_interval=0.5, global_rate=1
            )
        )
        opened.append(bot)
    try:
        yield opened
    finally:
        for bot in opened:
            await bot.session.close()


def surface(bot: Bot, chat_id: int = PRIVATE) -> TelegramSurface:
    return TelegramSurface(bot, chat_id=chat_id)


async def test_an_interim_frame_is_skipped_when_another_replica_has_the_chats_slot(
    bots: list[Bot], telegram: FakeTelegram
) -> None:
    first, second = bots
    handle = await surface(first).send("the first answer", final=True)
    calls = len(telegram.calls)
    with pytest.raises(SurfaceBusy) as busy:
        await surface(second).edit(handle, "an interim frame", final=False)
    assert 0.2 < busy.value.retry_after <= 0.4  # the interval plus the margin between replicas
    assert len(telegram.calls) == calls  # nothing was sent
    await surface(second).edit(handle, "the final frame", final=True)  # a final frame waits for the slot
    assert telegram.visible_texts(PRIVATE) == ["the final frame"]
    assert telegram.rate_limited == 0


async def test_topics_of_one_group_share_its_slot(bots: list[Bot], telegram: FakeTelegram) -> None:
    first, second = bots
    await TelegramSurface(first, chat_id=GROUP, thread_id=5).send("topic five", final=True)
    with pytest.raises(SharedBudgetBusy):
        await TelegramSurface(second, chat_id=GROUP, thread_id=9).send("topic nine", final=False)
    await TelegramSurface(second, chat_id=PRIVATE).send("a private chat has its own slot", final=True)
    assert [m.message_thread_id for m in telegram.chat_messages(GROUP)] == [5]


async def test_a_retry_after_seen_by_one_replica_pauses_the_other(bots: list[Bot], telegram: FakeTelegram) -> None:
    first, second = bots
    telegram.fail_next("sendMessage", "retry_after:3", chat_id=PRIVATE)
    with pytest.raises(TelegramRetryAfter):
        await first.send_message(chat_id=PRIVATE, text="hello")
    with pytest.raises(SharedBudgetBusy) as busy:
        await surface(second).send("an interim frame", final=False)
    assert 2.5 < busy.value.retry_after <= 3.0
    assert telegram.count("sendMessage", chat_id=PRIVATE) == 1
    await second.send_chat_action(chat_id=PRIVATE, action="typing")  # chat actions do not count


async def test_the_bots_send_budget_counts_new_messages_in_every_chat(bots: list[Bot], telegram: FakeTelegram) -> None:
    first, second = bots
    handle = await surface(second, 1).send("hello 1", final=False)
    await asyncio.sleep(0.35)  # chat 1's slot is free again; the bot's one send a second is not
    await surface(first, 1).edit(handle, "edits do not count", final=False)
    with pytest.raises(SharedBudgetBusy):
        await surface(first, 2).send("hello 2", final=False)
    await surface(first, 2).send("hello 2", final=True)  # a final frame waits for the bot's budget
    assert [telegram.visible_texts(chat_id) for chat_id in (1, 2)] == [[f"edits do not count{CURSOR}"], ["hello 2"]]
    assert telegram.rate_limited == 0


# ---- Slack ----------------------------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def slack_api(fake: FakeSlack, budgets: SlackBudgets) -> SlackApi:
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    return SlackApi(client, channel="C1", thread_ts="1.0", budget=lambda method: budgets.bucket("T1", method))


async def test_slack_replicas_share_a_workspaces_method_budget(slack: FakeSlack, redis: Redis, keys: RedisKeys) -> None:
    first = slack_api(slack, SlackBudgets(shared=SharedBudgets(redis, keys)))
    second = slack_api(slack, SlackBudgets(shared=SharedBudgets(redis, keys)))
    # chat.update: 40 a minute, bursts of 10, half of them kept for final frames.
    ts = await first.post("the answer")
    for n in range(3):
        await first.update(ts, f"interim {n}")
    await second.update(ts, "interim 3")
    await second.update(ts, "interim 4")
    with pytest.raises(SurfaceBusy):
        await second.update(ts, "interim 5")  # second's own bucket has tokens; the workspace has not
    second.urgent = True
    await second.update(ts, "final")
    assert slack.visible_text("C1", ts) == "final"
    assert sum(call.method == "chat.update" for call in slack.calls) == 6


async def test_a_slack_429_pauses_the_method_for_every_replica(slack: FakeSlack, redis: Redis, keys: RedisKeys) -> None:
    first = slack_api(slack, SlackBudgets(shared=SharedBudgets(redis, keys)))
    second = slack_api(slack, SlackBudgets(shared=SharedBudgets(redis, keys)))
    ts = await first.post("the answer")
    slack.fail_next("chat.update", "ratelimited", retry_after=4)
    with pytest.raises(SlackApiError):
        await first.update(ts, "interim")
    with pytest.raises(SurfaceBusy) as busy:
        await second.update(ts, "interim")
    assert 3.5 < busy.value.retry_after <= 4.0
    await second.post("another method is not paused")
    await second.set_status("thinking…")  # best effort: setStatus has a budget of its own
    assert slack.rate_limited == 0 and sum(call.method == "chat.update" for call in slack.calls) == 1
