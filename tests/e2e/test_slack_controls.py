"""Slack controls end to end: Stop, 👍/👎 and suggested questions, pressed over HTTP and Socket Mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core.texts import text
from tests.e2e.slack_harness import SIGNING_SECRET, SlackHarness, slack_bot
from tests.e2e.telegram_harness import eventually
from tests.fakes.dify import Answer
from tests.fakes.slack import StoredMessage, mention_event, slash_command_body
from tests.fakes.slack_actions import (
    Side,
    block_actions_payload,
    buttons,
    press_over_http,
    press_over_socket,
)

CHANNEL = "C100"
SLOW = "Refunds are accepted within thirty days of delivery, no questions asked. " * 8
QUESTIONS = ["How do refunds work?", "What does shipping cost?", "Can I change my order?"]


def words(answer: str) -> list[str]:
    return [word + " " for word in answer.split()]


def slow_answer() -> Answer:
    """About six seconds of streaming: long enough to be stopped half way."""
    return Answer(SLOW, chunks=words(SLOW), delay=0.06)


@pytest.fixture
async def update_bot(redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming="update") as harness:
        yield harness


@pytest.fixture
async def native_bot(redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming="native") as harness:
        yield harness


def answer_message(bot: SlackHarness, root: str) -> StoredMessage:
    replies = bot.slack.thread(CHANNEL, root)
    assert replies, f"no reply in thread {root}"
    return replies[-1]


def action_ids(message: StoredMessage) -> list[str]:
    return [button.action_id for button in buttons(message)]


async def ask(bot: SlackHarness, question: str, *, user: str = "U1") -> str:
    root = bot.next_ts()
    assert await bot.event(mention_event(channel=CHANNEL, user=user, text=f"<@UBOT> {question}", ts=root)) == 200
    return root


async def press(
    bot: SlackHarness, message: StoredMessage, action_id: str, *, user: str = "U1", side: Side | None = None
) -> int:
    payload = block_actions_payload(
        bot.slack, channel=message.channel, ts=message.ts, action_id=action_id, user=user, side=side
    )
    if bot.socket is not None:
        envelope = await press_over_socket(bot.socket, payload)
        assert envelope.response is None
        return 200
    status, _ = await press_over_http(bot.events_url, SIGNING_SECRET, payload)
    return status


async def slash(bot: SlackHarness, command: str, *, user: str = "U1") -> dict[str, Any]:
    body = slash_command_body(command=command, channel_id=CHANNEL, user_id=user, response_url=bot.slack.response_url())
    status, answer = await bot.post(body, "application/x-www-form-urlencoded")
    assert status == 200
    return dict(json.loads(answer)) if answer.startswith("{") else {"text": answer}


async def stop_button_shown(bot: SlackHarness, root: str) -> StoredMessage:
    await eventually(
        lambda: bool(bot.slack.thread(CHANNEL, root)) and "stop" in action_ids(answer_message(bot, root)),
        5,
        "(a Stop button under the streaming answer)",
    )
    return answer_message(bot, root)


async def stopped_answer(bot: SlackHarness, root: str) -> StoredMessage:
    """Wait for the stopped answer's final frame; check it shows a beginning of the answer and no buttons."""
    await bot.thread_settled(CHANNEL, root)
    message = answer_message(bot, root)
    body, _, note = message.text.rpartition("\n\n")
    assert note == text("stopped"), message.text
    assert body and SLOW.startswith(body) and len(body) < len(SLOW.strip())
    assert buttons(message) == []
    return message


def _feedbacks_reach(bot: SlackHarness, count: int) -> Callable[[], bool]:
    return lambda: len(bot.dify.controls.feedbacks) == count


async def no_change_after(bot: SlackHarness, message: StoredMessage) -> None:
    seen = list(message.history)
    await asyncio.sleep(0.3)
    assert message.history == seen


# ---------------------------------------------------------------------- Stop (chat.update mode)


async def test_stop_button_stops_the_stream_within_a_second(update_bot: SlackHarness) -> None:
    bot = update_bot
    bot.dify.script(slow_answer())
    root = await ask(bot, "refund window?")
    message = await stop_button_shown(bot, root)
    [stop] = [block for block in message.blocks if block.get("type") == "actions"]
    assert stop["elements"][0]["text"]["text"] == text("stop_button")
    assert message.blocks[0]["type"] == "markdown"  # the text goes in a markdown block beside the button
    assert await press(bot, message, "stop") == 200
    await eventually(lambda: len(bot.dify.stops) == 1, 1.0, "(Dify told to stop within a second)")
    await stopped_answer(bot, root)
    assert bot.slack.ephemerals == []  # the message itself says it stopped
    await no_change_after(bot, message)


async def test_someone_else_cannot_stop_the_answer(update_bot: SlackHarness) -> None:
    bot = update_bot
    bot.dify.script(Answer(SLOW, chunks=words(SLOW), delay=0.01))
    root = await ask(bot, "refund window?", user="U1")
    message = await stop_button_shown(bot, root)
    assert await press(bot, message, "stop", user="U2") == 200
    await eventually(lambda: len(bot.slack.ephemerals) == 1, 5, "(a private notice for U2)")
    [notice] = bot.slack.ephemerals
    assert notice["user"] == "U2" and notice["channel"] == CHANNEL and notice["thread_ts"] == root
    assert notice["text"] == text("stop_not_yours")
    replies = await bot.thread_settled(CHANNEL, root)
    assert replies == [SLOW.strip()] and bot.dify.stops == []
    assert "stop" not in action_ids(answer_message(bot, root))


async def test_stop_pressed_after_the_answer_ended(update_bot: SlackHarness) -> None:
    bot = update_bot
    bot.dify.script(Answer(SLOW, chunks=words(SLOW), delay=0.02))
    root = await ask(bot, "refund window?")
    message = await stop_button_shown(bot, root)
    payload = block_actions_payload(bot.slack, channel=CHANNEL, ts=message.ts, action_id="stop", user="U1")
    await bot.thread_settled(CHANNEL, root)
    status, _ = await press_over_http(bot.events_url, SIGNING_SECRET, payload)  # an old copy of the message
    assert status == 200
    await eventually(lambda: len(bot.slack.ephemerals) == 1, 5, "(the 'already ended' notice)")
    assert bot.slack.ephemerals[0]["text"] == "This answer has already ended."
    assert bot.dify.stops == []


async def test_press_with_a_bad_signature_is_refused_and_nothing_happens(update_bot: SlackHarness) -> None:
    bot = update_bot
    bot.dify.script(Answer(SLOW, chunks=words(SLOW), delay=0.01))
    root = await ask(bot, "refund window?")
    message = await stop_button_shown(bot, root)
    payload = block_actions_payload(bot.slack, channel=CHANNEL, ts=message.ts, action_id="stop", user="U1")
    status, _ = await press_over_http(bot.events_url, "not-the-secret", payload)
    assert status == 401
    assert await bot.thread_settled(CHANNEL, root) == [SLOW.strip()]
    assert bot.dify.stops == [] and bot.slack.ephemerals == []


# ---------------------------------------------------------------------- Stop (native streams)


async def test_mention_stop_in_the_thread_stops_a_native_stream(native_bot: SlackHarness) -> None:
    bot = native_bot
    bot.dify.script(slow_answer())
    root = await ask(bot, "refund window?")
    await eventually(lambda: bot.slack.count("chat.appendStream") >= 2, 5, "(the stream is under way)")
    message = answer_message(bot, root)
    assert message.streaming and buttons(message) == []  # a stream carries no Stop button
    stop = mention_event(channel=CHANNEL, user="U2", text="<@UBOT> stop", ts=bot.next_ts(), thread_ts=root)
    assert await bot.event(stop) == 200
    await eventually(lambda: len(bot.slack.ephemerals) == 1, 5, "(U2 told it is not theirs)")
    assert bot.slack.ephemerals[0]["text"] == text("stop_not_yours") and bot.dify.stops == []
    stop = mention_event(channel=CHANNEL, user="U1", text="<@UBOT> stop", ts=bot.next_ts(), thread_ts=root)
    assert await bot.event(stop) == 200
    await eventually(lambda: len(bot.dify.stops) == 1, 1.0, "(Dify told to stop within a second)")
    await stopped_answer(bot, root)
    assert len(bot.dify.chat_requests()) == 1  # "stop" was not asked as a question
    await no_change_after(bot, message)


async def test_stop_slash_command_stops_the_users_answer(native_bot: SlackHarness) -> None:
    bot = native_bot
    assert await slash(bot, "/stop") == {"text": text("stop_nothing")}
    bot.dify.script(slow_answer())
    root = await ask(bot, "refund window?")
    await eventually(lambda: bot.slack.count("chat.appendStream") >= 2, 5, "(the stream is under way)")
    assert await slash(bot, "/stop", user="U2") == {"text": text("stop_not_yours")}
    assert await slash(bot, "/stop") == {"text": text("stop_done")}
    await eventually(lambda: len(bot.dify.stops) == 1, 1.0, "(Dify told to stop within a second)")
    await stopped_answer(bot, root)


# ---------------------------------------------------------------------- feedback


@pytest.mark.parametrize("streaming", ["update", "native"])
async def test_feedback_like_dislike_and_clearing(redis_url: str, key_prefix: str, streaming: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming=streaming) as bot:
        root = await ask(bot, "refund window?")
        assert await bot.thread_settled(CHANNEL, root) == ["echo: refund window?"]
        message = answer_message(bot, root)
        assert action_ids(message) == ["feedback:positive", "feedback:negative"]
        if streaming == "native":  # the buttons came with the end of the stream
            [stop_stream] = [call for call in bot.slack.calls if call.method == "chat.stopStream"]
            assert stop_stream.args["blocks"][0]["type"] == "context_actions"
        sides: list[Side] = ["positive", "negative", "negative"]
        for count, side in enumerate(sides, start=1):
            assert await press(bot, message, "feedback", side=side) == 200
            await eventually(_feedbacks_reach(bot, count), 5, f"(feedback call {count})")
        user = f"slack-T1-{CHANNEL}"
        assert [(call.rating, call.user) for call in bot.dify.controls.feedbacks] == [
            ("like", user),
            ("dislike", user),
            (None, user),
        ]
        await eventually(lambda: len(bot.slack.ephemerals) == 1, 5, "(the 'removed' notice)")
        assert [notice["text"] for notice in bot.slack.ephemerals] == [text("feedback_cleared")]


# ---------------------------------------------------------------------- suggested questions


@pytest.mark.parametrize("streaming", ["update", "native"])
async def test_suggested_question_is_answered_in_the_same_thread(
    redis_url: str, key_prefix: str, streaming: str
) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming=streaming) as bot:
        bot.dify.controls.follow_ups_enabled = True
        bot.dify.controls.follow_ups = [*QUESTIONS, "A fourth one?"]
        root = await ask(bot, "refund window?")
        await eventually(
            lambda: bool(bot.slack.thread(CHANNEL, root)) and "ask_0" in action_ids(answer_message(bot, root)),
            5,
            "(suggested questions under the answer)",
        )
        message = answer_message(bot, root)
        assert action_ids(message) == ["feedback:positive", "feedback:negative", "ask_0", "ask_1", "ask_2"]
        labels = [b.text["text"] for b in buttons(message) if b.action_id.startswith("ask_")]
        assert labels == QUESTIONS
        assert await press(bot, message, "ask_1", user="U2") == 200
        replies = await bot.thread_settled(CHANNEL, root, count=2)
        assert replies[0] == "echo: refund window?"
        assert replies[1] == f"💬 {QUESTIONS[1]}\n\necho: {QUESTIONS[1]}"
        # the pressed message keeps its text and 👍/👎, its questions are gone
        assert message.text == "echo: refund window?"
        assert action_ids(message) == ["feedback:positive", "feedback:negative"]
        first, second = bot.dify.chat_requests()
        assert second["query"] == QUESTIONS[1]
        assert second["conversation_id"] == next(iter(bot.dify.conversations)) and first["user"] == second["user"]
        assert all(call.thread_ts == root for call in [*bot.slack.thread(CHANNEL, root)])


async def test_long_suggestion_is_cut_on_the_button_and_asked_in_full(update_bot: SlackHarness) -> None:
    bot = update_bot
    long_question = "Could you explain in detail " + "how the refund policy applies " * 5 + "to gift cards?"
    bot.dify.controls.follow_ups_enabled = True
    bot.dify.controls.follow_ups = [long_question]
    root = await ask(bot, "refunds?")
    await eventually(
        lambda: bool(bot.slack.thread(CHANNEL, root)) and "ask_0" in action_ids(answer_message(bot, root)), 5
    )
    [button] = [b for b in buttons(answer_message(bot, root)) if b.action_id == "ask_0"]
    assert len(button.text["text"]) <= 75 and button.text["text"].endswith("…")
    assert button.value == long_question
    await press(bot, answer_message(bot, root), "ask_0")
    await bot.thread_settled(CHANNEL, root, count=2)
    assert bot.dify.chat_requests()[1]["query"] == long_question


# ---------------------------------------------------------------------- Socket Mode


async def test_stop_pressed_over_socket_mode(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming="update", socket_mode=True) as bot:
        bot.dify.script(slow_answer())
        root = await ask(bot, "refund window?")
        message = await stop_button_shown(bot, root)
        assert await press(bot, message, "stop") == 200  # the interactive envelope was acknowledged in time
        await eventually(lambda: len(bot.dify.stops) == 1, 1.0, "(Dify told to stop within a second)")
        await stopped_answer(bot, root)
        assert bot.socket is not None and [e.type for e in bot.socket.envelopes] == ["events_api", "interactive"]
