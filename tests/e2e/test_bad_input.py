"""Bad input at the doors: malformed webhook bodies get 400 (or the ack), one log line, no traceback, no 500."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bots.slack.runtime import SlackBot
from bots.telegram.runtime import TelegramBot
from core.errors import BotError
from core.texts import friendly_error
from tests.e2e.slack_harness import BOT_TOKEN, SIGNING_SECRET, SlackHarness, slack_bot
from tests.e2e.telegram_harness import SECRET, TOKEN, TelegramHarness, eventually, rendered, telegram_bot
from tests.fakes.dify import Answer
from tests.fakes.slack import event_body, mention_event, slash_command_body

CHANNEL = "C100"
ANSWER = "Refunds are accepted within **30 days** of delivery."


def warnings_and_worse(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


def assert_clean(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No traceback and none of the secrets anywhere in what was logged."""
    assert "Traceback" not in caplog.text
    assert not any(record.exc_info or record.exc_text for record in caplog.records)
    for secret in secrets:
        assert secret not in caplog.text


# ---- Telegram -----------------------------------------------------------------------------------


@pytest.fixture
async def webhook_bot(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=True) as harness:
        yield harness


async def post_webhook(bot: TelegramHarness, body: bytes, *, secret: str = SECRET) -> tuple[int, str]:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{bot.web_url}/telegram/webhook", data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def still_answers(bot: TelegramHarness, *, count: int = 1) -> None:
    bot.dify.script(Answer(ANSWER))
    await bot.say("refund window?")
    assert (await bot.settled(count=count))[-1] == rendered(ANSWER)


async def test_truncated_json_on_the_webhook_is_400_and_one_clean_line(
    webhook_bot: TelegramHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    status, body = await post_webhook(webhook_bot, b'{"update_id": 1, "message": {"message_id": 1, "te')
    assert status == 400 and json.loads(body)["ok"] is False
    [line] = warnings_and_worse(caplog)
    assert line.name == "bots.telegram.webhook" and line.levelno == logging.WARNING
    assert "JSONDecodeError" in line.getMessage() and '"te' not in line.getMessage()
    assert_clean(caplog, TOKEN, SECRET)
    await still_answers(webhook_bot)
    assert len(webhook_bot.dify.chat_requests()) == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"hello": "world"}',
        b"[1, 2]",
        b'"update"',
        b'{"update_id": "one"}',
        b'{"update_id": 5, "message": {"text": 3}}',
    ],
    ids=["no-update-id", "array", "string", "bad-update-id", "bad-message"],
)
async def test_json_that_is_not_an_update_is_400(
    webhook_bot: TelegramHarness, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    status, _ = await post_webhook(webhook_bot, body)
    assert status == 400
    [line] = warnings_and_worse(caplog)
    assert line.name == "bots.telegram.webhook" and "not an Update" in line.getMessage()
    assert "world" not in caplog.text  # the body is not echoed into the log
    assert_clean(caplog, TOKEN, SECRET)
    await still_answers(webhook_bot)


async def test_secret_is_checked_before_the_body(webhook_bot: TelegramHarness) -> None:
    assert (await post_webhook(webhook_bot, b'{"update_id": 1, "mess', secret="wrong-secret"))[0] == 401
    assert (await post_webhook(webhook_bot, b"\xff\xfe\x00", secret="wrong-secret"))[0] == 401
    assert (await post_webhook(webhook_bot, b"\xff\xfe\x00"))[0] == 400


@pytest.mark.parametrize("webhook", [False, True], ids=["polling", "webhook"])
async def test_failing_update_is_one_line_and_the_bot_goes_on(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, webhook: bool
) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=webhook) as bot:
        door = bot.service.doors["telegram"]
        assert isinstance(door, TelegramBot)
        store = door.store
        real_first_delivery = store.first_delivery
        failures = [BotError(f"GET https://api.telegram.org/bot{TOKEN}/getUpdates failed")]

        async def first_delivery(platform: str, delivery_id: str, **kwargs: Any) -> bool:
            if failures:
                raise failures.pop()
            result: bool = await real_first_delivery(platform, delivery_id, **kwargs)
            return result

        monkeypatch.setattr(store, "first_delivery", first_delivery)
        caplog.set_level(logging.INFO)
        caplog.clear()
        await bot.say("this one fails")

        def logged() -> bool:
            return any(record.name == "bots.telegram.errors" for record in caplog.records)

        await eventually(logged, message="(no line from the error handler)")
        [line] = warnings_and_worse(caplog)
        assert line.name == "bots.telegram.errors" and line.levelno == logging.WARNING
        assert "BotError" in line.getMessage() and "[redacted]" in line.getMessage()
        assert_clean(caplog, TOKEN, SECRET)
        await still_answers(bot)


# ---- Slack --------------------------------------------------------------------------------------


@pytest.fixture
async def slack(redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, streaming="update") as harness:
        yield harness


def envelope(**fields: Any) -> bytes:
    return json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1", "event_id": "EvBAD", **fields}).encode()


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# (body, content type, the status it gets, the logger of its one line); 400: no Slack payload, 200: ignored.
MALFORMED: dict[str, tuple[bytes, str, int, str]] = {
    "binary-body": (b"\xff\xfe\x00\x81{\x9c", JSON, 400, "bots.slack.runtime"),
    "broken-json": (b'{"type": "event_callback", "event": {"type": "app_men', JSON, 400, "bots.slack.runtime"),
    "json-array": (b'[{"type": "event_callback"}]', JSON, 400, "bots.slack.runtime"),
    "broken-form-payload": (
        b"payload=" + urllib.parse.quote('{"type": "block_act').encode(),
        FORM,
        400,
        "bots.slack.runtime",
    ),
    "event-is-a-string": (envelope(type="event_callback", event="app_mention"), JSON, 200, "bots.slack.runtime"),
    "event-callback-without-event": (envelope(type="event_callback"), JSON, 200, "bots.slack.runtime"),
    "event-without-type": (envelope(type="event_callback", event={"text": "hi"}), JSON, 200, "bots.slack.runtime"),
    "mention-with-list-channel": (
        event_body(
            event={"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1.1", "channel": [CHANNEL]}
        ),
        JSON,
        200,
        "bots.slack.handlers",
    ),
    "unknown-type": (envelope(type="no_such_type"), JSON, 200, "bots.slack.failures"),
    "block-actions-without-actions": (
        b"payload=" + urllib.parse.quote(json.dumps({"type": "block_actions", "team": {"id": "T1"}})).encode(),
        FORM,
        200,
        "bots.slack.failures",
    ),
}


async def mention_is_answered(bot: SlackHarness) -> None:
    bot.dify.script(Answer(ANSWER))
    ts = bot.next_ts()
    assert await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> refund window?", ts=ts)) == 200
    assert await bot.thread_settled(CHANNEL, ts) == [ANSWER]


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_signed_request_gets_its_status_and_one_line(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    body, content_type, expected, logger = MALFORMED[case]
    caplog.set_level(logging.INFO)
    caplog.clear()
    status, _ = await slack.post(body, content_type)
    assert status == expected
    lines = [record for record in caplog.records if record.name.startswith(("bots.", "slack_bolt"))]
    assert [record.name for record in lines] == [logger]
    assert_clean(caplog, SIGNING_SECRET, BOT_TOKEN)
    assert slack.dify.chat_requests() == [] and slack.slack.messages == {}
    await mention_is_answered(slack)


def signed_at(timestamp: str, body: bytes) -> dict[str, str]:
    """Signature headers made with the right secret for this (possibly bad) timestamp."""
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


GOOD_EVENT = event_body(event=mention_event(channel=CHANNEL, user="U1", text="<@UBOT> hi", ts="1.1"))


@pytest.mark.parametrize(
    ("body", "content_type", "headers"),
    [
        (b"\xff\xfe\x00\x81{", JSON, {}),
        (envelope(type="event_callback", event="app_mention"), JSON, {}),
        (b"payload=%7Bbroken", FORM, {}),
        (GOOD_EVENT, JSON, {}),
        (GOOD_EVENT, JSON, signed_at("not-a-number", GOOD_EVENT)),
        (GOOD_EVENT, JSON, signed_at("1000000000", GOOD_EVENT)),
        (GOOD_EVENT, JSON, {"X-Slack-Signature": "v0=é"}),
    ],
    ids=["binary", "event-string", "broken-payload", "good-body", "timestamp-not-a-number", "stale", "non-ascii"],
)
async def test_wrongly_signed_request_is_401(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    caplog.set_level(logging.INFO)
    secret = SIGNING_SECRET if headers else "not-the-signing-secret"
    status, _ = await slack.post(body, content_type, secret=secret, headers=headers)
    assert status == 401
    assert_clean(caplog, SIGNING_SECRET, BOT_TOKEN)
    await asyncio.sleep(0.2)
    assert slack.dify.chat_requests() == [] and slack.slack.messages == {}


async def test_failing_listener_is_one_line_and_no_500(slack: SlackHarness, caplog: pytest.LogCaptureFixture) -> None:
    door = slack.service.doors["slack"]
    assert isinstance(door, SlackBot)
    app = door.app

    async def boom(ack: Callable[..., Awaitable[None]]) -> None:
        raise BotError("the listener broke")

    app.command("/boom")(boom)
    caplog.set_level(logging.INFO)
    caplog.clear()
    body = slash_command_body(
        command="/boom", channel_id=CHANNEL, user_id="U1", response_url=slack.slack.response_url()
    )
    status, text = await slack.post(body, FORM)
    assert (status, text) == (200, friendly_error(BotError("the listener broke")))
    [line] = warnings_and_worse(caplog)
    assert line.name == "bots.slack.failures" and "the listener broke" in line.getMessage()
    assert_clean(caplog, SIGNING_SECRET, BOT_TOKEN)
    await mention_is_answered(slack)
