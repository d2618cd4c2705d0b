"""The fake Slack Web API, driven by the real slack_sdk AsyncWebClient over a socket."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.say.async_say import AsyncSay
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack import (
    FakeSlack,
    dm_event,
    event_body,
    mention_event,
    signed_headers,
    slash_command_body,
)

TOKEN = "xoxb-test-token"
SECRET = "signing-secret"
ROOT_TS = "1690000000.000100"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _no_proxy_or_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(clock=clock) as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url)


async def api_error(call: Awaitable[Any]) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# ---------------------------------------------------------------------- auth and plumbing


async def test_auth_test_answers_identity_and_scopes(fake: FakeSlack, client: AsyncWebClient) -> None:
    resp = await client.auth_test()

    assert resp["team_id"] == "T1"
    assert resp["user_id"] == "UBOT"
    assert resp["bot_id"] == "B1"
    assert resp.headers["x-oauth-scopes"] == "app_mentions:read,chat:write,im:history,commands,files:read,files:write"
    assert resp.headers["Content-Type"].startswith("application/json")
    assert fake.count("auth.test") == 1


async def test_wrong_token_is_invalid_auth(fake: FakeSlack) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url)

    err = await api_error(bad.chat_postMessage(channel="C1", text="hi"))

    assert err.response["error"] == "invalid_auth"
    assert err.response.status_code == 200
    assert fake.messages == {}


async def test_token_form_param_and_query_are_accepted(fake: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        form = {"token": TOKEN, "channel": "C1", "text": "from a form"}
        async with session.post(f"{fake.api_url}chat.postMessage?thread_ts={ROOT_TS}", data=form) as resp:
            body = await resp.json()
        async with session.get(f"{fake.api_url}auth.test", params={"token": TOKEN}) as resp:
            assert (await resp.json())["ok"] is True

    assert body["ok"] is True
    assert fake.visible_text("C1", body["ts"]) == "from a form"
    assert fake.thread("C1", ROOT_TS)[0].ts == body["ts"]
    assert "token" not in fake.calls[0].args


async def test_unknown_method_and_socket_mode_open(fake: FakeSlack, client: AsyncWebClient) -> None:
    assert (await api_error(client.api_call("chat.nonsense"))).response["error"] == "unknown_method"
    assert (await api_error(client.apps_connections_open(app_token=TOKEN))).response["error"] == "not_allowed"


# ---------------------------------------------------------------------- chat.postMessage / chat.update


async def test_post_message_variants_and_thread(fake: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel="C1", thread_ts=ROOT_TS, text="plain")
    second = await client.chat_postMessage(channel="C1", thread_ts=ROOT_TS, markdown_text="**md**")
    third = await client.chat_postMessage(
        channel="C1",
        thread_ts=ROOT_TS,
        text="fallback",
        blocks=[{"type": "markdown", "text": "# from blocks"}],
    )
    await client.chat_postMessage(channel="C1", text="top level")

    assert first["ts"] == "1700000000.000001"
    assert first["message"]["thread_ts"] == ROOT_TS
    assert first["message"]["bot_id"] == "B1"
    assert [m.text for m in fake.thread("C1", ROOT_TS)] == ["plain", "**md**", "# from blocks"]
    assert fake.visible_text("C1", third["ts"]) == "# from blocks"
    assert fake.messages[("C1", second["ts"])].streaming is False


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "", "text": "x"}, "channel_not_found"),
        ({"channel": "C1", "text": ""}, "no_text"),
        ({"channel": "C1", "text": "x", "markdown_text": "y"}, "invalid_arguments"),
        ({"channel": "C1", "text": "x" * 4001}, "msg_too_long"),
        ({"channel": "C1", "markdown_text": "x" * 12001}, "msg_too_long"),
        (
            {"channel": "C1", "text": "x", "blocks": [{"type": "markdown", "text": "y" * 12001}]},
            "msg_too_long",
        ),
    ],
)
async def test_post_message_validation(
    fake: FakeSlack, client: AsyncWebClient, kwargs: dict[str, Any], error: str
) -> None:
    err = await api_error(client.api_call("chat.postMessage", json=kwargs))

    assert err.response["error"] == error
    assert fake.messages == {}
    assert fake.calls[-1].ok is False
    assert fake.calls[-1].error == error


async def test_length_limits_at_the_boundary_are_accepted(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="C1", text="x" * 4000)
    await client.chat_postMessage(channel="C1", markdown_text="y" * 12000)

    assert fake.count("chat.postMessage", ok=True) == 2


async def test_update_counts_and_history(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", thread_ts=ROOT_TS, text="thinking…")
    await client.chat_update(channel="C1", ts=posted["ts"], markdown_text="partial")
    resp = await client.chat_update(channel="C1", ts=posted["ts"], markdown_text="final answer")

    assert resp["ts"] == posted["ts"]
    msg = fake.messages[("C1", posted["ts"])]
    assert msg.updates == 2
    assert msg.history == ["thinking…", "partial", "final answer"]
    assert fake.visible_text("C1", posted["ts"]) == "final answer"


async def test_update_validation(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="x")

    missing = await api_error(client.chat_update(channel="C1", ts="1.2", text="y"))
    wrong_channel = await api_error(client.chat_update(channel="C2", ts=posted["ts"], text="y"))
    too_long = await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="y" * 4001))
    mixed = await api_error(
        client.api_call("chat.update", json={"channel": "C1", "ts": posted["ts"], "text": "a", "markdown_text": "b"})
    )

    assert missing.response["error"] == "message_not_found"
    assert wrong_channel.response["error"] == "message_not_found"
    assert too_long.response["error"] == "msg_too_long"
    assert mixed.response["error"] == "invalid_arguments"
    assert fake.messages[("C1", posted["ts"])].updates == 0


async def test_delete_hides_message(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", thread_ts=ROOT_TS, text="placeholder")
    await client.chat_delete(channel="C1", ts=posted["ts"])

    assert fake.thread("C1", ROOT_TS) == []
    assert fake.visible_text("C1", posted["ts"]) == ""
    err = await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="x"))
    assert err.response["error"] == "message_not_found"


# ---------------------------------------------------------------------- native streaming via chat_stream


async def test_chat_stream_happy_path_in_channel(fake: FakeSlack, client: AsyncWebClient) -> None:
    streamer = await client.chat_stream(
        channel="C1",
        thread_ts=ROOT_TS,
        recipient_team_id="T1",
        recipient_user_id="U1",
        buffer_size=10,
    )
    assert fake.calls == []
    assert streamer.ts is None

    assert await streamer.append(markdown_text="Hello") is None  # buffered
    assert fake.calls == []
    started = await streamer.append(markdown_text=", world!")  # 13 chars >= 10 → startStream
    assert started is not None
    assert streamer.ts == started["ts"]
    await streamer.append(markdown_text=" More text.")  # appendStream
    await streamer.append(markdown_text=" tail")  # buffered
    feedback = {
        "type": "feedback_buttons",
        "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "good"},
        "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": "bad"},
    }
    await streamer.stop(blocks=[{"type": "context_actions", "elements": [feedback]}])

    assert [c.method for c in fake.calls] == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    start_args = fake.calls[0].args
    assert start_args["chunks"] == [{"type": "markdown_text", "text": "Hello, world!"}]
    assert start_args["recipient_user_id"] == "U1"
    assert start_args["recipient_team_id"] == "T1"
    assert "markdown_text" not in start_args
    assert fake.calls[2].args["chunks"] == [{"type": "markdown_text", "text": " tail"}]

    assert streamer.ts is not None
    msg = fake.messages[("C1", streamer.ts)]
    assert msg.streaming and msg.stopped
    assert msg.thread_ts == ROOT_TS
    assert msg.stream_started_at == 1000.0
    assert msg.text == "Hello, world! More text. tail"
    assert msg.history == ["Hello, world!", "Hello, world! More text.", "Hello, world! More text. tail"]
    assert msg.blocks == [{"type": "context_actions", "elements": [feedback]}]
    assert fake.thread("C1", ROOT_TS) == [msg]
    with pytest.raises(SlackRequestError):
        await streamer.append(markdown_text="late")


async def test_stop_without_appends_starts_then_stops(fake: FakeSlack, client: AsyncWebClient) -> None:
    streamer = await client.chat_stream(channel="D1", thread_ts=ROOT_TS)

    await streamer.stop(markdown_text="short answer")

    assert [c.method for c in fake.calls] == ["chat.startStream", "chat.stopStream"]
    assert "chunks" not in fake.calls[0].args
    assert fake.visible_text("D1", str(streamer.ts)) == "short answer"


async def test_dm_needs_no_recipient_but_channel_does(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_startStream(channel="D1", thread_ts=ROOT_TS, markdown_text="hi")

    no_user = await api_error(client.chat_startStream(channel="C1", thread_ts=ROOT_TS, markdown_text="hi"))
    no_team = await api_error(
        client.chat_startStream(channel="C1", thread_ts=ROOT_TS, recipient_user_id="U1", markdown_text="hi")
    )
    no_thread = await api_error(client.api_call("chat.startStream", json={"channel": "D1", "markdown_text": "x"}))

    assert no_user.response["error"] == "missing_recipient_user_id"
    assert no_team.response["error"] == "missing_recipient_team_id"
    assert no_thread.response["error"] == "invalid_arguments"
    assert len(fake.messages) == 1


async def test_streaming_feature_disabled(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.native_streaming = False
    streamer = await client.chat_stream(channel="D1", thread_ts=ROOT_TS, buffer_size=1)

    err = await api_error(streamer.append(markdown_text="hello"))

    assert err.response["error"] == "feature_not_enabled"
    assert streamer.ts is None
    assert fake.messages == {}


async def test_chunks_other_than_markdown_are_accepted_and_ignored(fake: FakeSlack, client: AsyncWebClient) -> None:
    task = {"type": "task_update", "id": "t1", "title": "Searching", "status": "in_progress"}
    started = await client.chat_startStream(
        channel="D1", thread_ts=ROOT_TS, chunks=[task, {"type": "markdown_text", "text": "a"}]
    )
    await client.chat_appendStream(channel="D1", ts=started["ts"], chunks=[{"type": "markdown_text", "text": "b"}])
    await client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text="c")
    bad = await api_error(client.chat_appendStream(channel="D1", ts=started["ts"], chunks=[{"type": "bogus"}]))

    assert fake.visible_text("D1", started["ts"]) == "abc"
    assert bad.response["error"] == "invalid_chunks"


async def test_append_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    started = await client.chat_startStream(channel="D1", thread_ts=ROOT_TS, markdown_text="x")
    posted = await client.chat_postMessage(channel="D1", text="not a stream")

    unknown = await api_error(client.chat_appendStream(channel="D1", ts="1.1", markdown_text="y"))
    too_long = await api_error(client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text="y" * 12001))
    not_stream = await api_error(client.chat_appendStream(channel="D1", ts=posted["ts"], markdown_text="y"))
    await client.chat_stopStream(channel="D1", ts=started["ts"])
    after_stop = await api_error(client.chat_appendStream(channel="D1", ts=started["ts"], markdown_text="y"))

    assert unknown.response["error"] == "message_not_found"
    assert too_long.response["error"] == "msg_too_long"
    assert not_stream.response["error"] == "message_not_in_streaming_state"
    assert after_stop.response["error"] == "message_not_in_streaming_state"
    assert fake.visible_text("D1", started["ts"]) == "x"


async def test_update_conflicts_mid_stream_but_works_after_stop(fake: FakeSlack, client: AsyncWebClient) -> None:
    started = await client.chat_startStream(channel="D1", thread_ts=ROOT_TS, markdown_text="x")

    err = await api_error(client.chat_update(channel="D1", ts=started["ts"], markdown_text="edit"))
    assert err.response["error"] == "streaming_state_conflict"
    assert fake.stream_active("D1", started["ts"])

    await client.chat_stopStream(channel="D1", ts=started["ts"])
    await client.chat_update(channel="D1", ts=started["ts"], markdown_text="edit")

    assert fake.visible_text("D1", started["ts"]) == "edit"
    assert fake.messages[("D1", started["ts"])].updates == 1


async def test_expired_stream_is_recovered_with_chat_update(
    fake: FakeSlack, client: AsyncWebClient, clock: FakeClock
) -> None:
    streamer = await client.chat_stream(
        channel="C1", thread_ts=ROOT_TS, recipient_team_id="T1", recipient_user_id="U1", buffer_size=1
    )
    await streamer.append(markdown_text="part one")
    clock.advance(299)
    await streamer.append(markdown_text=", part two")  # still alive: appends do not extend the life
    clock.advance(2)

    append_err = await api_error(streamer.append(markdown_text=", part three"))
    stop_err = await api_error(streamer.stop())
    assert append_err.response["error"] == "message_not_in_streaming_state"
    assert stop_err.response["error"] == "message_not_in_streaming_state"
    assert streamer.ts is not None
    assert not fake.stream_active("C1", streamer.ts)
    msg = fake.messages[("C1", streamer.ts)]
    assert not msg.stopped
    assert msg.text == "part one, part two"

    await client.chat_update(channel="C1", ts=streamer.ts, markdown_text="part one, part two, part three")

    assert fake.visible_text("C1", streamer.ts) == "part one, part two, part three"


# ---------------------------------------------------------------------- rate limits and injected faults


async def test_per_method_rate_limit_answers_429(clock: FakeClock) -> None:
    async with FakeSlack(clock=clock, rate_limits={"chat.update": 3}, retry_after=5) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        posted = await client.chat_postMessage(channel="C1", text="0")
        for n in range(1, 4):
            clock.advance(10)
            await client.chat_update(channel="C1", ts=posted["ts"], text=str(n))

        err = await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="4"))

        assert err.response.status_code == 429
        assert err.response.headers["Retry-After"] == "5"
        assert err.response["error"] == "ratelimited"
        assert fake.rate_limited == 1
        assert fake.visible_text("C1", posted["ts"]) == "3"
        assert fake.calls[-1].status == 429

        clock.advance(39)  # t=1069: the first update (t=1010) is still inside the 60 s window
        await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="4"))
        clock.advance(1)  # t=1070: it has left the window
        await client.chat_update(channel="C1", ts=posted["ts"], text="4")
        assert fake.visible_text("C1", posted["ts"]) == "4"
        assert fake.rate_limited == 2
        assert fake.count("chat.update") == 6
        assert fake.count("chat.update", ok=False) == 2


async def test_default_rate_limit_for_chat_update_is_50(fake: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="0")
    for n in range(50):
        await client.chat_update(channel="C1", ts=posted["ts"], text=str(n))

    err = await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="over"))

    assert err.response.status_code == 429
    assert fake.rate_limited == 1


async def test_fail_next_injects_one_shot_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=7)
    fake.fail_next("chat.postMessage", "msg_too_long", count=2)

    limited = await api_error(client.chat_postMessage(channel="C1", text="a"))
    first = await api_error(client.chat_postMessage(channel="C1", text="b"))
    second = await api_error(client.chat_postMessage(channel="C1", text="c"))
    ok = await client.chat_postMessage(channel="C1", text="d")

    assert limited.response.status_code == 429
    assert limited.response.headers["Retry-After"] == "7"
    assert (first.response.status_code, first.response["error"]) == (200, "msg_too_long")
    assert second.response["error"] == "msg_too_long"
    assert fake.rate_limited == 0
    assert [m.text for m in fake.messages.values()] == ["d"]
    assert ok["ok"] is True


# ---------------------------------------------------------------------- status, ephemeral, reactions, sink


async def test_status_ephemeral_and_reactions(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts=ROOT_TS, status="is thinking…")
    ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    await client.reactions_add(channel="C1", timestamp=ROOT_TS, name="eyes")
    twice = await api_error(client.reactions_add(channel="C1", timestamp=ROOT_TS, name="eyes"))
    await client.reactions_remove(channel="C1", timestamp=ROOT_TS, name="eyes")

    assert fake.statuses == [{"channel_id": "C1", "thread_ts": ROOT_TS, "status": "is thinking…"}]
    assert ephemeral["message_ts"]
    assert fake.ephemerals == [{"channel": "C1", "user": "U1", "text": "only you"}]
    assert twice.response["error"] == "already_reacted"
    assert fake.reactions[("C1", ROOT_TS)] == []


async def test_response_url_sink_records_json_and_form(fake: FakeSlack) -> None:
    url = fake.response_url()
    assert url == f"{fake.url}/response/1"
    assert fake.response_url() != url

    webhook = await AsyncWebhookClient(url).send(text="Conversation reset", response_type="ephemeral")
    async with aiohttp.ClientSession() as session, session.post(url, data={"text": "form"}) as resp:
        assert await resp.text() == "ok"

    assert webhook.status_code == 200
    assert webhook.body == "ok"
    assert fake.responses == [{"text": "Conversation reset", "response_type": "ephemeral"}, {"text": "form"}]


# ---------------------------------------------------------------------- signing helpers


def test_signed_headers_verify_with_slack_sdk() -> None:
    body = event_body(event=mention_event(channel="C1", user="U1", text="<@UBOT> hi", ts=ROOT_TS))
    headers = signed_headers(SECRET, body, "application/json")
    ts = headers["X-Slack-Request-Timestamp"]

    assert headers["Content-Type"] == "application/json"
    assert SignatureVerifier(SECRET).is_valid(body, ts, headers["X-Slack-Signature"])
    assert not SignatureVerifier("other-secret").is_valid(body, ts, headers["X-Slack-Signature"])
    assert not SignatureVerifier(SECRET).is_valid(body + b" ", ts, headers["X-Slack-Signature"])
    stale = signed_headers(SECRET, body, "application/json", timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(SECRET).is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])


def test_payload_builders() -> None:
    envelope = json.loads(event_body(event=dm_event(channel="D1", user="U1", text="hi", ts="1.2"), event_id="Ev1"))
    assert envelope["type"] == "event_callback"
    assert envelope["event_id"] == "Ev1"
    assert envelope["authorizations"] == [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}]
    assert envelope["event"]["channel_type"] == "im"
    assert "thread_ts" not in envelope["event"]
    assert mention_event(channel="C1", user="U1", text="x", ts="1.3", thread_ts="1.2")["thread_ts"] == "1.2"
    assert json.loads(event_body(event={}))["event_id"] != json.loads(event_body(event={}))["event_id"]

    form = dict(
        urllib.parse.parse_qsl(
            slash_command_body(
                command="/reset", channel_id="C1", user_id="U1", response_url="http://x/response/1"
            ).decode()
        )
    )
    assert form["command"] == "/reset"
    assert form["team_id"] == "T1"
    assert form["response_url"] == "http://x/response/1"
    assert "thread_ts" not in form


# ---------------------------------------------------------------------- against a bolt HTTP endpoint


@pytest.fixture
async def bolt_url(fake: FakeSlack) -> AsyncIterator[tuple[str, AsyncApp]]:
    app = AsyncApp(client=AsyncWebClient(token=TOKEN, base_url=fake.api_url), signing_secret=SECRET)
    runner = web.AppRunner(app.web_app(path="/slack/events"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/slack/events", app
    finally:
        await runner.cleanup()


async def wait_for(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_signed_event_reaches_bolt_listener(fake: FakeSlack, bolt_url: tuple[str, AsyncApp]) -> None:
    url, app = bolt_url

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: AsyncSay) -> None:
        await say(text="pong", thread_ts=event["ts"])

    body = event_body(event=mention_event(channel="C1", user="U1", text="<@UBOT> ping", ts=ROOT_TS))
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=signed_headers(SECRET, body, "application/json")) as resp:
            assert resp.status == 200
        bad = signed_headers("wrong", body, "application/json")
        async with session.post(url, data=body, headers=bad) as resp:
            assert resp.status == 401

    await wait_for(lambda: bool(fake.thread("C1", ROOT_TS)))
    assert fake.count("auth.test") == 1
    assert [m.text for m in fake.thread("C1", ROOT_TS)] == ["pong"]


async def test_signed_slash_command_reaches_bolt(fake: FakeSlack, bolt_url: tuple[str, AsyncApp]) -> None:
    url, app = bolt_url

    @app.command("/reset")
    async def on_reset(ack: AsyncAck, respond: AsyncRespond) -> None:
        await ack()
        await respond(text="Conversation reset")

    response_url = fake.response_url()
    body = slash_command_body(command="/reset", channel_id="C1", user_id="U1", response_url=response_url)
    headers = signed_headers(SECRET, body, "application/x-www-form-urlencoded")
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200

    await wait_for(lambda: bool(fake.responses))
    assert fake.responses[0]["text"] == "Conversation reset"
