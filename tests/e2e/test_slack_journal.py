"""Slack: answers a dead replica left in the journal are finished by the running one (native stream or not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict

from redis.asyncio import Redis
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.addressing import SlackMessage
from core.answer import ReplyEvent, TaskStarted, TextDelta
from core.conversations import ChatKey
from core.journal import Journal
from core.texts import text
from tests.e2e.slack_harness import BOT_TOKEN, SlackHarness, slack_bot
from tests.e2e.telegram_harness import eventually

CHANNEL = "C100"
NOTE = "⚠️ " + text("interrupted_resend")


def orphan_of(bot: SlackHarness, redis: Redis) -> Journal:
    """A replica that wrote to the journal and died: it never took (or lost) its lease."""
    return Journal(redis, keys=bot.service.pipeline.service.store.keys, owner="dead-replica")


def asked(bot: SlackHarness, query: str) -> tuple[SlackMessage, ChatKey]:
    ts = bot.next_ts()
    message = SlackMessage(
        team="T1", channel=CHANNEL, user="U1", text=f"<@UBOT> {query}", ts=ts, thread_ts=None, is_dm=False
    )
    key = ChatKey(platform="slack", scope=f"slack:T1:{CHANNEL}:g0:{ts}", user=f"slack-T1-{CHANNEL}")
    return message, key


async def test_a_half_streamed_answer_is_ended_and_its_task_stopped(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, journal_lease=0.5) as bot:
        redis: Redis = bot.service.pipeline.service.store.redis
        message, key = asked(bot, "long story")
        client = AsyncWebClient(token=BOT_TOKEN, base_url=bot.slack.api_url)
        started = await client.chat_startStream(
            channel=CHANNEL,
            thread_ts=message.ts,
            recipient_user_id="U1",
            recipient_team_id="T1",
            markdown_text="The refund window is",
        )
        ts = str(started["ts"])
        assert bot.slack.stream_active(CHANNEL, ts)
        writer = orphan_of(bot, redis).open(chat=key, origin={"message": asdict(message), "query": "long story"})
        await writer.begin()

        async def replies() -> AsyncIterator[ReplyEvent]:
            yield TaskStarted(task_id="task-1")
            yield TextDelta(text="The refund window is")

        assert len([event async for event in writer.watch(replies(), lambda: "slack-T1-C100")]) == 2
        writer.frame(0, ts, "The refund window is", False)

        await eventually(lambda: bot.slack.visible_text(CHANNEL, ts).endswith(NOTE), timeout=15)
        assert bot.slack.visible_text(CHANNEL, ts) == "The refund window is\n\n" + NOTE
        assert not bot.slack.stream_active(CHANNEL, ts)
        await eventually(lambda: bot.dify.stops == ["task-1"])
        assert bot.dify.chat_requests() == []
        await asyncio.sleep(0.3)
        assert [key async for key in redis.scan_iter(match=f"{key_prefix}:journal:*")] == []


async def test_a_question_dify_never_saw_is_answered_again_in_its_thread(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, journal_lease=0.5) as bot:
        redis: Redis = bot.service.pipeline.service.store.redis
        message, key = asked(bot, "refund window?")
        await (
            orphan_of(bot, redis).open(chat=key, origin={"message": asdict(message), "query": "refund window?"}).begin()
        )
        texts = await bot.thread_settled(CHANNEL, message.ts, timeout=15)
        assert texts == ["echo: refund window?"]
        [request] = bot.dify.chat_requests()
        assert request["query"] == "refund window?" and request["user"] == "slack-T1-C100"
