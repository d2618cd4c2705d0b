"""Slack over Socket Mode: the real bolt AsyncSocketModeHandler against a strict fake Socket Mode server.

The scenarios of test_slack.py (mention, DM, /reset, a redelivery) arrive as envelopes instead of signed HTTP
requests; the harness's `event` / `command` return 200 once the envelope is acknowledged within Slack's window,
and every test ends with the fake's verdict on the client (no missing, late, repeated or malformed ack)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core.errors import StartupError
from core.texts import text
from tests.e2e.slack_harness import SlackHarness, slack_bot
from tests.e2e.telegram_harness import eventually
from tests.fakes.dify import Answer
from tests.fakes.slack import FakeSlack, dm_event, mention_event
from tests.fakes.slack_socket import Envelope, FakeSocketMode

CHANNEL = "C100"

Fakes = tuple[FakeSlack, FakeSocketMode, list[float]]  # the Web API, the Socket Mode server, their clock


def chunks_of(answer: str, size: int) -> list[str]:
    return [answer[i : i + size] for i in range(0, len(answer), size)]


def socket_of(harness: SlackHarness) -> FakeSocketMode:
    assert harness.socket is not None
    return harness.socket


@pytest.fixture
async def bot(redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, socket_mode=True) as harness:
        yield harness


# ---------------------------------------------------------------------- the scenarios, over Socket Mode


@pytest.mark.parametrize("streaming", ["native", "update"])
async def test_mention_is_answered_in_the_thread(redis_url: str, key_prefix: str, streaming: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, socket_mode=True, streaming=streaming) as harness:
        answer = "Refunds are accepted within **30 days** of delivery. " * 4
        harness.dify.script(Answer(answer, chunks=chunks_of(answer, 15), delay=0.02))
        ts = harness.next_ts()
        event = mention_event(channel=CHANNEL, user="U1", text="<@UBOT> refund window?", ts=ts)
        assert await harness.event(event) == 200
        assert await harness.thread_settled(CHANNEL, ts) == [answer.strip()]
        request = harness.dify.chat_requests()[0]
        assert request["query"] == "refund window?" and request["user"] == f"slack-T1-{CHANNEL}"
        assert harness.slack.count("apps.connections.open") == 1
        [envelope] = socket_of(harness).envelopes
        assert envelope.type == "events_api" and envelope.response is None  # an event's ack carries nothing


async def test_dm_is_answered(bot: SlackHarness) -> None:
    ts = bot.next_ts()
    assert await bot.event(dm_event(channel="D1", user="U1", text="hello there", ts=ts)) == 200
    assert await bot.thread_settled("D1", ts) == ["echo: hello there"]
    assert bot.dify.chat_requests()[0]["user"] == "slack-T1-U1"


async def test_reset_slash_command_answers_in_the_ack_and_starts_over(bot: SlackHarness) -> None:
    root = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> one", ts=root))
    await bot.thread_settled(CHANNEL, root)
    status, body = await bot.command(channel=CHANNEL)
    assert status == 200 and body == {"text": text("reset_done")}  # what Slack shows the user who typed it
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> two", ts=bot.next_ts(), thread_ts=root))
    assert await bot.thread_settled(CHANNEL, root, count=2) == ["echo: one", "echo: two"]
    assert [r["conversation_id"] for r in bot.dify.chat_requests()] == ["", ""]


async def test_redelivered_envelope_is_answered_once(bot: SlackHarness) -> None:
    socket = socket_of(bot)
    ts = bot.next_ts()
    assert (
        await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> once", ts=ts), event_id="Ev42") == 200
    )
    first = socket.envelopes[-1]
    again = await socket.acknowledged(await socket.redeliver(first))
    assert again.envelope_id != first.envelope_id and again.retry_attempt == 1 and again.retry_reason == "timeout"
    assert await bot.thread_settled(CHANNEL, ts) == ["echo: once"]
    await asyncio.sleep(0.2)
    assert len(bot.dify.chat_requests()) == 1
    assert len(bot.slack.thread(CHANNEL, ts)) == 1


async def test_redelivery_while_the_first_is_still_answering_is_answered_once(bot: SlackHarness) -> None:
    socket = socket_of(bot)
    answer = " ".join(f"w{i}" for i in range(40))
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 8), delay=0.03))
    ts = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> slow", ts=ts), event_id="Ev43")
    await eventually(lambda: len(bot.dify.chat_requests()) == 1)
    await socket.acknowledged(await socket.redeliver(socket.envelopes[-1], reason="timeout"))
    assert await bot.thread_settled(CHANNEL, ts) == [answer]
    assert len(bot.dify.chat_requests()) == 1


@pytest.mark.parametrize("reason", ["refresh_requested", "link_disabled", "warning"])
async def test_disconnect_is_followed_by_a_new_connection_and_messages_still_answered(
    bot: SlackHarness, reason: str
) -> None:
    socket = socket_of(bot)
    old = await socket.connected()
    await socket.disconnect(reason)
    new = await socket.connected(count=2)
    assert new.number == old.number + 1
    assert bot.slack.count("apps.connections.open", ok=True) == 2  # a fresh URL, not the used one
    await eventually(lambda: old.closed, 5.0, "(the old connection stays open)")
    ts = bot.next_ts()
    assert await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> still there?", ts=ts)) == 200
    assert await bot.thread_settled(CHANNEL, ts) == ["echo: still there?"]
    envelope = socket.envelopes[-1]
    assert envelope.connection == envelope.acked_on == new.number


async def test_a_connection_closed_without_notice_is_replaced(bot: SlackHarness) -> None:
    socket = socket_of(bot)
    old = await socket.close_current()
    new = await socket.connected(count=2)
    assert old.closed and new.number == old.number + 1
    ts = bot.next_ts()
    assert await bot.event(dm_event(channel="D1", user="U1", text="back?", ts=ts)) == 200
    assert await bot.thread_settled("D1", ts) == ["echo: back?"]


async def test_refresh_during_an_answer_loses_neither_the_answer_nor_the_next_message(bot: SlackHarness) -> None:
    socket = socket_of(bot)
    answer = " ".join(f"part{i}" for i in range(60))
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 12), delay=0.03), Answer("second answer"))
    first = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> long one", ts=first))
    await eventually(lambda: len(bot.slack.thread(CHANNEL, first)) == 1)
    await socket.disconnect("refresh_requested")
    await socket.connected(count=2)
    second = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U2", text="<@UBOT> next", ts=second))
    assert await bot.thread_settled(CHANNEL, first) == [answer]
    assert await bot.thread_settled(CHANNEL, second) == ["second answer"]


async def test_interactive_envelope_without_a_listener_is_still_acknowledged(bot: SlackHarness) -> None:
    socket = socket_of(bot)
    payload = {
        "type": "block_actions",
        "team": {"id": "T1", "domain": "test"},
        "user": {"id": "U1", "team_id": "T1"},
        "api_app_id": "A1",
        "trigger_id": "1.1.abc",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL},
        "actions": [{"type": "button", "action_id": "no-such-action", "block_id": "b1", "action_ts": "1.2"}],
    }
    envelope = await socket.acknowledged(await socket.deliver("interactive", payload))
    assert envelope.response is None
    await asyncio.sleep(0.1)
    assert bot.dify.chat_requests() == []


async def test_shutdown_closes_the_connection_and_finishes_the_running_answer(bot: SlackHarness) -> None:
    socket = socket_of(bot)
    connection = await socket.connected()
    answer = " ".join(f"w{i}" for i in range(40))
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 10), delay=0.05))
    ts = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> long", ts=ts))
    await eventually(lambda: len(bot.slack.thread(CHANNEL, ts)) == 1)
    shutdown = asyncio.create_task(bot.service.shutdown())
    await eventually(lambda: connection.closed, 5.0, "(the bot kept its Socket Mode connection open)")
    assert not bot.idle()  # no new envelopes, while the answer already running goes on
    await shutdown
    assert [m.text for m in bot.slack.thread(CHANNEL, ts)] == [answer]
    assert socket.open_connections() == []
    assert bot.slack.count("apps.connections.open") == 1  # closing is not followed by a reconnect


async def test_a_refused_app_token_stops_startup_without_showing_it(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "xapp-1-A1-1-not-the-right-one"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StartupError) as raised:
        async with (
            asyncio.timeout(10),  # a client left to retry a refused token would never finish starting
            slack_bot(redis_url=redis_url, key_prefix=key_prefix, socket_mode=True, slack_app_token=wrong),
        ):
            pass
    message = str(raised.value)
    assert "SLACK_APP_TOKEN" in message and "invalid_auth" in message and wrong not in message
    assert wrong not in caplog.text


async def test_app_token_stays_out_of_the_logs(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, socket_mode=True) as harness:
        socket = socket_of(harness)
        await socket.disconnect("refresh_requested")
        ts = harness.next_ts()
        await harness.event(dm_event(channel="D1", user="U1", text="hi", ts=ts))
        await harness.thread_settled("D1", ts)
    assert "Socket Mode" in caplog.text  # the logs were captured at all
    assert socket.app_token not in caplog.text and "ticket=" not in caplog.text


# ---------------------------------------------------------------------- the fake itself is strict


@pytest.fixture
async def fake() -> AsyncIterator[Fakes]:
    now = [100.0]
    async with FakeSlack() as slack, FakeSocketMode(clock=lambda: now[0], close_after_disconnect=0.05) as socket:
        socket.attach(slack)
        yield slack, socket, now


async def open_url(slack: FakeSlack, token: str) -> str:
    client = AsyncWebClient(base_url=slack.api_url)
    response = await client.apps_connections_open(app_token=token)
    return str(response["url"])


async def test_fake_opens_connections_only_for_the_app_token(fake: Fakes) -> None:
    slack, socket, _ = fake
    for token in ("xoxb-test-token", "xapp-1-other"):
        with pytest.raises(SlackApiError) as raised:
            await open_url(slack, token)
        assert raised.value.response["error"] == "invalid_auth"
    async with aiohttp.ClientSession() as session:  # Slack takes the app token only in the Authorization header
        async with session.post(f"{slack.api_url}apps.connections.open", data={"token": socket.app_token}) as response:
            assert (await response.json())["error"] == "not_authed"
    assert (await open_url(slack, socket.app_token)).startswith(f"{socket.url}/link/?ticket=")
    assert socket.refused == 3 and socket.opened == 1


async def test_fake_says_hello_and_takes_each_url_once(fake: Fakes) -> None:
    slack, socket, _ = fake
    url = await open_url(slack, socket.app_token)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=2)
            assert hello["type"] == "hello" and hello["connection_info"] == {"app_id": "A1"}
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)
    assert socket.problems() == ["a connection attempt with a URL not issued by apps.connections.open (or reused)"]


async def test_fake_records_missing_late_repeated_and_malformed_acks(
    fake: Fakes,
) -> None:
    slack, socket, now = fake
    async with aiohttp.ClientSession() as session, session.ws_connect(await open_url(slack, socket.app_token)) as ws:
        await ws.receive_json(timeout=2)  # hello
        missing = await socket.deliver("events_api", {"type": "event_callback", "event_id": "Ev1"})
        late = await socket.deliver("events_api", {"type": "event_callback", "event_id": "Ev2"})
        answered = await socket.deliver("slash_commands", {"command": "/reset"}, accepts_response_payload=True)
        for _ in range(3):
            await ws.receive_json(timeout=2)
        await ws.send_json({"envelope_id": answered.envelope_id, "payload": {"text": "done"}})
        await ws.send_json({"envelope_id": answered.envelope_id})
        await ws.send_str("not json")
        await ws.send_json({"envelope_id": "nope"})
        await asyncio.wait_for(answered.done.wait(), 2)
        now[0] += 3.5
        await ws.send_json({"envelope_id": late.envelope_id, "payload": {"text": "ignored"}})
        await socket.acknowledged(late)
    problems = socket.problems()
    assert answered.response == {"text": "done"}
    assert len(problems) == 6, problems
    assert "acknowledged twice" in problems[0]
    assert "not JSON" in problems[1] and "unknown envelope" in problems[2]
    assert "acknowledged late" in problems[3] and "accepts no response payload" in problems[4]
    assert missing.envelope_id in problems[5] and "not acknowledged within 3s" in problems[5]


async def test_fake_closes_a_connection_it_asked_to_refresh(fake: Fakes) -> None:
    slack, socket, _ = fake
    async with aiohttp.ClientSession() as session, session.ws_connect(await open_url(slack, socket.app_token)) as ws:
        await ws.receive_json(timeout=2)
        await socket.disconnect("refresh_requested")
        assert (await ws.receive_json(timeout=2))["reason"] == "refresh_requested"
        assert (await ws.receive(timeout=2)).type == aiohttp.WSMsgType.CLOSE
        with pytest.raises(AssertionError, match="expected connection #1"):
            await socket.deliver("events_api", {"type": "event_callback"}, timeout=0.1)


def test_envelope_wire_shape() -> None:
    envelope = Envelope(
        envelope_id="e1",
        type="events_api",
        payload={"a": 1},
        accepts_response_payload=False,
        retry_attempt=2,
        retry_reason="timeout",
        connection=1,
        sent_at=0.0,
    )
    assert envelope.wire() == {
        "envelope_id": "e1",
        "type": "events_api",
        "payload": {"a": 1},
        "accepts_response_payload": False,
        "retry_attempt": 2,
        "retry_reason": "timeout",
    }
