"""Platform faults seen from the chat: proxy 502 pages, outages, retry_after, a group upgraded to a supergroup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest

from bots.telegram.addressing import group_key
from core.render.renderer import BACKOFF_CAP
from tests.e2e.slack_harness import slack_bot
from tests.e2e.telegram_harness import SCALE, TelegramHarness, eventually, telegram_bot
from tests.fakes.dify import Answer, Delay, Events, ReplyContext, Step, Transcript
from tests.fakes.slack import mention_event
from tests.fakes.telegram import ANY_METHOD

ANSWER = " ".join(f"Step {i} of 27 is done." for i in range(1, 28))


def chunks_of(answer: str, size: int = 40) -> list[str]:
    return [answer[i : i + size] for i in range(0, len(answer), size)]


@pytest.fixture
async def bot(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as harness:
        yield harness


async def test_html_502_on_an_interim_edit_is_skipped(bot: TelegramHarness) -> None:
    bot.telegram.fail_next("editMessageText", "bad_gateway")
    bot.dify.script(Answer(ANSWER, chunks=chunks_of(ANSWER, 20), delay=0.02))
    await bot.say("go")
    assert await bot.settled() == [ANSWER]
    assert bot.telegram.count("editMessageText", status=502) == 1


async def test_html_502_on_the_first_send_is_retried(bot: TelegramHarness) -> None:
    bot.telegram.fail_next("sendMessage", "bad_gateway", count=2)
    bot.dify.script(Answer("Refunds take 30 days."))
    await bot.say("go")
    assert await bot.settled() == ["Refunds take 30 days."]
    assert bot.telegram.count("sendMessage", status=502) == 2
    assert bot.telegram.count("sendMessage", status=200) == 1  # one message, nothing doubled


async def test_answers_survive_a_bot_api_outage(bot: TelegramHarness) -> None:
    """502 pages from every method, then connection refused; both answers finish once the API is back."""
    slow = Answer(ANSWER, chunks=chunks_of(ANSWER, 20), delay=0.05)  # still streaming when the outage starts
    bot.dify.script(slow, Answer("The quick one."))
    await bot.say("long one", chat_id=42)
    await eventually(lambda: bot.telegram.count("editMessageText", chat_id=42) >= 1)
    # Received just before the outage: Dify answers it, but the outage has reached its chat already.
    bot.telegram.fail_next("sendMessage", "bad_gateway", chat_id=43, count=10_000)
    await bot.say("quick one", chat_id=43, user_id=8)
    await eventually(lambda: len(bot.dify.chat_requests()) == 2)
    bot.telegram.fail_next(ANY_METHOD, "bad_gateway", count=10_000)
    await asyncio.sleep(0.8)
    await bot.telegram.refuse_connections()
    await asyncio.sleep(1.2)
    assert bot.answers(43) == []
    assert bot.answers(42)[-1].endswith("▌")  # stuck mid-answer while the API is away
    bot.telegram.clear_faults()
    await bot.telegram.accept_connections()
    back = time.monotonic()
    assert await bot.settled(42) == [ANSWER]
    assert await bot.settled(43) == ["The quick one."]
    assert time.monotonic() - back <= BACKOFF_CAP + 1.0
    assert bot.telegram.count("sendMessage", chat_id=43, status=200) == 1
    assert bot.telegram.count("sendMessage", status=502) + bot.telegram.count("editMessageText", status=502) >= 1


async def test_five_429s_delay_the_final_frame_only_as_asked(bot: TelegramHarness) -> None:
    retry_after = 1
    bot.telegram.fail_next("editMessageText", f"retry_after:{retry_after}", count=5)
    bot.dify.script(Answer(ANSWER, chunks=chunks_of(ANSWER, 200), delay=0.01))
    await bot.say("go")
    assert await bot.settled(timeout=20) == [ANSWER]
    edits = [call for call in bot.telegram.calls if call.method == "editMessageText"]
    refused = [call.at for call in edits if call.status == 429]
    final = next(call.at for call in edits if call.ok and call.params.get("text") == ANSWER)
    assert len(refused) == 5
    # each retry goes out as soon as the window has passed: never more than retry_after + 1 s later
    tries = [*refused, final]
    gaps = [(later - earlier) / SCALE for earlier, later in pairwise(tries)]
    assert all(retry_after - 0.05 <= gap <= retry_after + 1.0 for gap in gaps), gaps


async def test_group_upgraded_to_a_supergroup_while_answering(bot: TelegramHarness) -> None:
    group, supergroup = -500, -1000500
    bot.dify.script(Answer(ANSWER, chunks=chunks_of(ANSWER, 20), delay=0.04))
    await bot.say("@test_bot explain", chat_id=group, chat_type="group")
    await eventually(lambda: bot.telegram.count("sendMessage", chat_id=group, status=200) >= 1)
    bot.telegram.migrate_chat(group, supergroup)
    assert await bot.settled(supergroup) == [ANSWER]
    assert bot.telegram.count("sendMessage", chat_id=group, status=400) <= 1
    first = bot.dify.chat_requests()[0]
    conversation = next(iter(bot.dify.conversations))
    await _conversation_moved(bot, supergroup)
    await bot.say("@test_bot and then?", chat_id=supergroup, chat_type="supergroup")
    await bot.settled(supergroup, count=2)
    second = bot.dify.chat_requests()[1]
    assert second["conversation_id"] == conversation
    assert second["user"] == first["user"] == f"tg-chat-{group}"


async def test_group_upgraded_before_the_first_send(bot: TelegramHarness) -> None:
    """The upgrade lands before Dify has even named the conversation: it still moves to the supergroup."""
    group, supergroup = -501, -1000501
    update = bot.telegram.message_update(chat_id=group, user_id=7, text="@test_bot hi", chat_type="group")
    bot.dify.script(Transcript(_silent_first), Answer("Still here."))
    assert await bot.deliver(update) == 200
    bot.telegram.migrate_chat(group, supergroup)  # service messages queued right behind the question
    assert await bot.settled(supergroup) == ["Hello there."]
    assert bot.telegram.count("sendMessage", chat_id=group) <= 1  # one refusal, then the supergroup
    assert bot.telegram.chat_messages(supergroup)[0].reply_to_message_id is None
    await _conversation_moved(bot, supergroup)
    await bot.say("@test_bot again", chat_id=supergroup, chat_type="supergroup")
    assert await bot.settled(supergroup, count=2) == ["Hello there.", "Still here."]
    first, second = bot.dify.chat_requests()
    assert first["conversation_id"] == "" and second["conversation_id"] == next(iter(bot.dify.conversations))
    assert second["user"] == f"tg-chat-{group}"


def _silent_first(ctx: ReplyContext) -> list[Step]:
    """Dify says nothing (not even the conversation id) for a moment, then answers."""
    ev = Events(ctx)
    return [Delay(0.5), ev.message("Hello"), ev.message(" there."), ev.message_end()]


async def _conversation_moved(bot: TelegramHarness, chat_id: int, timeout: float = 10.0) -> None:
    """Wait until the bot has handled Telegram's migrate service message (it runs after the answer)."""
    assert bot.service.core is not None
    store = bot.service.core.store
    deadline = time.monotonic() + timeout
    while await store.get(group_key(chat_id, bot_id=bot.telegram.bot_id)) is None:
        assert time.monotonic() < deadline, "the conversation did not move to the supergroup"
        await asyncio.sleep(0.02)


async def test_slack_502_pages_and_an_outage_end_in_the_full_answer(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming="update") as harness:
        harness.slack.fail_next("chat.postMessage", "bad_gateway")
        harness.slack.fail_next("chat.update", "bad_gateway", count=2)
        harness.dify.script(Answer(ANSWER, chunks=chunks_of(ANSWER, 20), delay=0.05))
        ts = harness.next_ts()
        await harness.event(mention_event(channel="C9", user="U1", text="<@UBOT> explain", ts=ts))
        await eventually(lambda: harness.slack.count("chat.update", ok=True) >= 1)
        await harness.slack.refuse_connections()
        await asyncio.sleep(1.5)
        await harness.slack.accept_connections()
        back = time.monotonic()
        assert await harness.thread_settled("C9", ts) == [ANSWER]
        assert time.monotonic() - back <= BACKOFF_CAP + 1.0
        assert harness.slack.count("chat.postMessage", ok=True) == 1
        assert len([c for c in harness.slack.calls if c.status == 502]) == 3
