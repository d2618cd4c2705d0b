"""The first visit to the bot's DM: a greeting with the app's opening questions, once; a press asks one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.texts import text
from tests.e2e.slack_harness import SlackHarness, slack_bot
from tests.e2e.telegram_harness import eventually
from tests.fakes.slack import StoredMessage
from tests.fakes.slack_actions import block_actions_payload, buttons, press_over_http

DM = "D100"
OPENERS = ["What can you do?", "How do refunds work?", "Where is my order?", "A fourth opener"]


@pytest.fixture
async def bot(redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming="update") as harness:
        yield harness


def opened(user: str = "U1") -> dict[str, str]:
    return {"type": "app_home_opened", "user": user, "channel": DM, "tab": "messages", "event_ts": "1800000000.1"}


def top_level(bot: SlackHarness) -> list[StoredMessage]:
    return [m for m in bot.slack.messages.values() if m.channel == DM and not m.thread_ts and not m.deleted]


async def test_the_first_visit_shows_the_openers_once_and_a_press_asks_one(bot: SlackHarness) -> None:
    bot.dify.controls.openers = OPENERS
    assert await bot.event(opened()) == 200
    await eventually(lambda: len(top_level(bot)) == 1, 5, "(a greeting in the DM)")
    [greeting] = top_level(bot)
    assert greeting.text.startswith(text("greeting"))
    asks = [button for button in buttons(greeting) if button.action_id.startswith("ask_")]
    assert [button.value for button in asks] == OPENERS[:3]
    assert await bot.event(opened()) == 200  # the next visit: no second greeting
    assert await bot.event({**opened(), "tab": "home"}) == 200
    payload = block_actions_payload(bot.slack, channel=DM, ts=greeting.ts, action_id="ask_1", user="U1")
    status, _ = await press_over_http(bot.events_url, "test-signing-secret", payload)
    assert status == 200
    replies = await bot.thread_settled(DM, greeting.ts)
    assert replies == [f"💬 {OPENERS[1]}\n\necho: {OPENERS[1]}"]
    assert len(top_level(bot)) == 1
    assert [request["query"] for request in bot.dify.chat_requests()] == [OPENERS[1]]


async def test_no_greeting_when_the_app_has_no_openers(bot: SlackHarness) -> None:
    assert await bot.event(opened()) == 200
    # The listener ran: it asked Dify for the app's opening questions.
    await eventually(lambda: any(r.path == "/v1/parameters" for r in bot.dify.requests), 5, "(parameters read)")
    await asyncio.sleep(0.2)
    assert top_level(bot) == [] and bot.dify.chat_requests() == []
