"""Slack end to end: signed events over HTTP into the real bolt app → fake Dify → the thread on the fake Slack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.dify.errors import DifyProviderError
from core.texts import friendly_error, text
from tests.e2e.slack_harness import SlackHarness, slack_bot
from tests.e2e.telegram_harness import eventually
from tests.fakes.dify import Answer, StreamError
from tests.fakes.slack import dm_event, mention_event

CHANNEL = "C100"


def chunks_of(answer: str, size: int = 40) -> list[str]:
    return [answer[i : i + size] for i in range(0, len(answer), size)]


@pytest.fixture(params=["native", "update"])
async def bot(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming=request.param) as harness:
        yield harness


async def test_channel_mention_gets_a_threaded_streamed_answer(bot: SlackHarness) -> None:
    answer = "Refunds are accepted within **30 days** of delivery. " * 5
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 15), delay=0.02))
    ts = bot.next_ts()
    assert await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> refund window?", ts=ts)) == 200
    replies = await bot.thread_settled(CHANNEL, ts)
    assert replies == [answer.strip()]
    request = bot.dify.chat_requests()[0]
    assert request["query"] == "refund window?" and request["user"] == f"slack-T1-{CHANNEL}"


async def test_dm_is_answered(bot: SlackHarness) -> None:
    ts = bot.next_ts()
    assert await bot.event(dm_event(channel="D1", user="U1", text="hello there", ts=ts)) == 200
    assert await bot.thread_settled("D1", ts) == ["echo: hello there"]
    assert bot.dify.chat_requests()[0]["user"] == "slack-T1-U1"


async def test_follow_up_in_the_thread_keeps_context(bot: SlackHarness) -> None:
    root = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> first", ts=root))
    await bot.thread_settled(CHANNEL, root)
    await bot.event(mention_event(channel=CHANNEL, user="U2", text="<@UBOT> second", ts=bot.next_ts(), thread_ts=root))
    replies = await bot.thread_settled(CHANNEL, root, count=2)
    assert replies == ["echo: first", "echo: second"]
    first, second = bot.dify.chat_requests()
    assert first["conversation_id"] == "" and list(bot.dify.conversations) == [second["conversation_id"]]
    assert first["user"] == second["user"]
    other = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> new thread", ts=other))
    await bot.thread_settled(CHANNEL, other)
    assert bot.dify.chat_requests()[2]["conversation_id"] == ""  # another thread, another conversation


async def test_reset_command_starts_the_channel_over(bot: SlackHarness) -> None:
    root = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> one", ts=root))
    await bot.thread_settled(CHANNEL, root)
    status, body = await bot.command(channel=CHANNEL)
    assert status == 200 and body.get("text") == text("reset_done")
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> two", ts=bot.next_ts(), thread_ts=root))
    await bot.thread_settled(CHANNEL, root, count=2)
    assert [r["conversation_id"] for r in bot.dify.chat_requests()] == ["", ""]


async def test_reset_typed_in_a_thread_clears_that_thread(bot: SlackHarness) -> None:
    root = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> one", ts=root))
    await bot.thread_settled(CHANNEL, root)
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> reset", ts=bot.next_ts(), thread_ts=root))
    assert (await bot.thread_settled(CHANNEL, root, count=2))[-1] == text("reset_done")
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> two", ts=bot.next_ts(), thread_ts=root))
    await bot.thread_settled(CHANNEL, root, count=3)
    assert [r["conversation_id"] for r in bot.dify.chat_requests()] == ["", ""]


async def test_bad_signature_is_rejected_and_nothing_reaches_dify(bot: SlackHarness) -> None:
    status = await bot.event(
        mention_event(channel=CHANNEL, user="U1", text="<@UBOT> hi", ts=bot.next_ts()), secret="wrong-secret"
    )
    assert status == 401
    await asyncio.sleep(0.2)
    assert bot.dify.chat_requests() == []


async def test_retried_delivery_is_answered_once(bot: SlackHarness) -> None:
    ts = bot.next_ts()
    event = mention_event(channel=CHANNEL, user="U1", text="<@UBOT> once", ts=ts)
    assert await bot.event(event, event_id="Ev42") == 200
    assert await bot.event(event, event_id="Ev42", retry=1) == 200
    await bot.thread_settled(CHANNEL, ts)
    await asyncio.sleep(0.2)
    assert len(bot.dify.chat_requests()) == 1
    assert len(bot.slack.thread(CHANNEL, ts)) == 1


async def test_own_messages_and_subtypes_are_acknowledged_and_ignored(bot: SlackHarness) -> None:
    for event in (
        {**dm_event(channel="D1", user="UBOT", text="my own", ts=bot.next_ts()), "bot_id": "B1"},
        {**dm_event(channel="D1", user="U9", text="other bot", ts=bot.next_ts()), "bot_id": "B9"},
        {**dm_event(channel="D1", user="U1", text="edited", ts=bot.next_ts()), "subtype": "message_changed"},
    ):
        assert await bot.event(event) == 200
    await asyncio.sleep(0.3)
    assert bot.dify.chat_requests() == []


async def test_dify_error_is_shown_as_friendly_text(bot: SlackHarness) -> None:
    bot.dify.script(StreamError("completion_request_error", "[openai] boom", after_text="The answer is"))
    ts = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> go", ts=ts))
    replies = await bot.thread_settled(CHANNEL, ts)
    assert replies == ["The answer is\n\n⚠️ " + friendly_error(DifyProviderError())]


async def test_long_answer_is_split_across_replies(bot: SlackHarness) -> None:
    answer = "\n\n".join(f"Paragraph {i}: " + " ".join(f"word{j}" for j in range(50)) for i in range(60))
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 2000), delay=0.01))
    ts = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> everything", ts=ts))
    replies = await bot.thread_settled(CHANNEL, ts, count=2, timeout=30)
    assert len(replies) >= 2
    assert "".join(replies).replace("\n", "").replace(" ", "") == answer.replace("\n", "").replace(" ", "")


async def test_allow_lists(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, slack_allowed_users="U1") as harness:
        await harness.event(mention_event(channel=CHANNEL, user="U2", text="<@UBOT> hi", ts=harness.next_ts()))
        await eventually(lambda: len(harness.slack.ephemerals) == 1)
        assert harness.slack.ephemerals[0]["text"] == text("not_allowed")
        assert harness.dify.chat_requests() == []


async def test_native_refused_falls_back_to_updates(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, native_streaming=False) as harness:
        answer = "Streaming without the native feature still works. " * 3
        harness.dify.script(Answer(answer, chunks=chunks_of(answer, 10), delay=0.02), Answer("second"))
        ts = harness.next_ts()
        await harness.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> go", ts=ts))
        assert await harness.thread_settled(CHANNEL, ts) == [answer.strip()]
        assert harness.slack.count("chat.update") >= 1
        starts = harness.slack.count("chat.startStream")
        ts2 = harness.next_ts()
        await harness.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> again", ts=ts2))
        assert await harness.thread_settled(CHANNEL, ts2) == ["second"]
        assert harness.slack.count("chat.startStream") == starts  # remembered: this workspace has no streaming


async def test_stream_expiry_mid_answer_finishes_correctly(redis_url: str, key_prefix: str) -> None:
    now = [1000.0]
    async with slack_bot(
        redis_url=redis_url, key_prefix=key_prefix, streaming="native", clock=lambda: now[0]
    ) as harness:
        answer = " ".join(f"part{i}" for i in range(120))
        harness.dify.script(Answer(answer, chunks=chunks_of(answer, 20), delay=0.03))
        ts = harness.next_ts()
        await harness.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> go", ts=ts))
        await eventually(lambda: harness.slack.count("chat.appendStream") >= 2)
        now[0] += 400  # the stream is older than Slack keeps streams open
        replies = await harness.thread_settled(CHANNEL, ts)
        assert "".join(replies).replace(" ", "") == answer.replace(" ", "")


async def test_injected_429s_lose_no_text(bot: SlackHarness) -> None:
    answer = " ".join(f"w{i}" for i in range(100))
    method = "chat.appendStream" if bot.service.config.section("slack").streaming == "native" else "chat.update"
    bot.slack.fail_next(method, "ratelimited", count=2, retry_after=1)
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 10), delay=0.02))
    ts = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> go", ts=ts))
    assert await bot.thread_settled(CHANNEL, ts, timeout=20) == [answer]
