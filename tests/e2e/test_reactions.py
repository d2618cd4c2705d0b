"""The 👀 acknowledgement: groups and channel mentions get it while answered; private chats and DMs do not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import ReactionTypeEmoji

from tests.e2e.slack_harness import SlackHarness, slack_bot
from tests.e2e.telegram_harness import TelegramHarness, eventually, rendered, telegram_bot
from tests.fakes.dify import Answer
from tests.fakes.slack import dm_event, mention_event

GROUP = -100777
ANSWER = "Refunds are accepted within 30 days of delivery."
FRAMES = {"sendMessage", "editMessageText"}


def script(harness: TelegramHarness) -> None:
    harness.dify.script(Answer(ANSWER, chunks=[ANSWER[i : i + 8] for i in range(0, len(ANSWER), 8)], delay=0.01))


def reaction_calls(harness: TelegramHarness) -> list[int]:
    return [i for i, call in enumerate(harness.telegram.calls) if call.method == "setMessageReaction"]


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as h:
        yield h


async def test_group_question_gets_eyes_while_answered(harness: TelegramHarness) -> None:
    script(harness)
    update = await harness.say("@test_bot refund window?", chat_id=GROUP, chat_type="supergroup")
    assert await harness.settled(GROUP) == [rendered(ANSWER)]
    question = update["message"]["message_id"]
    await eventually(lambda: len(harness.telegram.reactions.history) == 2, message="reaction added and removed")
    assert harness.telegram.reactions.history == [(GROUP, question, ["👀"]), (GROUP, question, [])]
    assert harness.telegram.reactions.current == {}
    calls = harness.telegram.calls
    added, removed = reaction_calls(harness)
    frames = [i for i, call in enumerate(calls) if call.method in FRAMES and call.ok]
    assert added < frames[-1] < removed  # 👀 before the final frame, gone after it
    assert all(calls[i].ok for i in (added, removed))


async def test_private_chat_keeps_typing_only(harness: TelegramHarness) -> None:
    script(harness)
    await harness.say("refund window?")
    assert await harness.settled() == [rendered(ANSWER)]
    assert reaction_calls(harness) == []
    assert any(call.method == "sendChatAction" for call in harness.telegram.calls)


async def test_ack_reaction_off(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, ack_reaction="off") as h:
        script(h)
        await h.say("@test_bot refund window?", chat_id=GROUP, chat_type="supergroup")
        assert await h.settled(GROUP) == [rendered(ANSWER)]
        assert reaction_calls(h) == []


async def test_restricted_chat_answers_and_stops_trying(harness: TelegramHarness) -> None:
    harness.telegram.reactions.restricted.add(GROUP)
    script(harness)
    await harness.say("@test_bot refund window?", chat_id=GROUP, chat_type="supergroup")
    assert await harness.settled(GROUP) == [rendered(ANSWER)]
    script(harness)
    await harness.say("@test_bot and sale items?", chat_id=GROUP, chat_type="supergroup")
    assert await harness.settled(GROUP, count=2) == [rendered(ANSWER), rendered(ANSWER)]
    calls = [harness.telegram.calls[i] for i in reaction_calls(harness)]
    assert [(call.status, call.error) for call in calls] == [(400, "Bad Request: REACTION_INVALID")]
    assert harness.telegram.reactions.current == {}


async def test_fake_refuses_emoji_outside_the_list_and_unknown_messages(harness: TelegramHarness) -> None:
    update = await harness.say("@test_bot hi", chat_id=GROUP, chat_type="supergroup")
    await harness.settled(GROUP)
    bot = harness.telegram_door.bot
    with pytest.raises(TelegramBadRequest, match="REACTION_INVALID"):
        await bot.set_message_reaction(GROUP, update["message"]["message_id"], [ReactionTypeEmoji(emoji="✅")])
    with pytest.raises(TelegramBadRequest, match="message to react not found"):
        await bot.set_message_reaction(GROUP, 99999, [ReactionTypeEmoji(emoji="👀")])


SLACK_FRAMES = {"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"}


@pytest.fixture(params=["native", "update"])
async def slack(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming=request.param) as h:
        yield h


def slack_reactions(harness: SlackHarness) -> list[int]:
    return [i for i, call in enumerate(harness.slack.calls) if call.method.startswith("reactions.")]


async def test_slack_mention_gets_eyes_while_answered(slack: SlackHarness) -> None:
    slack.dify.script(Answer(ANSWER, chunks=[ANSWER[i : i + 8] for i in range(0, len(ANSWER), 8)], delay=0.01))
    ts = slack.next_ts()
    await slack.event(mention_event(channel="C100", user="U1", text="<@UBOT> refund window?", ts=ts))
    assert await slack.thread_settled("C100", ts) == [ANSWER]
    await eventually(lambda: len(slack_reactions(slack)) == 2, message="reaction added and removed")
    calls = slack.slack.calls
    added, removed = slack_reactions(slack)
    assert [(calls[i].method, calls[i].args.get("name"), calls[i].args.get("timestamp")) for i in (added, removed)] == [
        ("reactions.add", "eyes", ts),
        ("reactions.remove", "eyes", ts),
    ]
    assert calls[added].ok and calls[removed].ok
    frames = [i for i, call in enumerate(calls) if call.method in SLACK_FRAMES and call.ok]
    assert added < frames[-1] < removed
    assert slack.slack.reactions.get(("C100", ts), []) == []


async def test_slack_dm_gets_no_reaction(slack: SlackHarness) -> None:
    ts = slack.next_ts()
    await slack.event(dm_event(channel="D1", user="U1", text="hello there", ts=ts))
    assert await slack.thread_settled("D1", ts) == ["echo: hello there"]
    assert slack_reactions(slack) == []
