"""A running dify-bots (Slack front door, HTTP mode) wired to the fake Dify and the fake Slack Web API."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bots.app import BotService
from bots.config import load
from tests.e2e.telegram_harness import eventually
from tests.fakes.dify import FakeDify
from tests.fakes.slack import FakeSlack, event_body, signed_headers, slash_command_body
from tests.fakes.slack_files import SharedFile
from tests.fakes.slack_socket import FakeSocketMode

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"


@dataclass
class SlackHarness:
    dify: FakeDify
    slack: FakeSlack
    service: BotService
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    socket: FakeSocketMode | None = None  # set in Socket Mode: events and commands arrive as envelopes

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}/slack/events"

    def next_ts(self) -> str:
        return f"1800000000.{next(self._ts):06d}"

    async def post(
        self, body: bytes, content_type: str, *, secret: str = SIGNING_SECRET, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        all_headers = signed_headers(secret, body, content_type)
        all_headers.update(headers or {})
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.events_url, data=body, headers=all_headers) as response,
        ):
            return response.status, await response.text()

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry: int | None = None,
        secret: str = SIGNING_SECRET,
    ) -> int:
        if self.socket is not None:
            return await self._socket_event(event, event_id=event_id, retry=retry)
        body = event_body(event=event, event_id=event_id)
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        status, _ = await self.post(body, "application/json", secret=secret, headers=headers)
        return status

    async def command(self, *, channel: str, user: str = "U1") -> tuple[int, dict[str, Any]]:
        body = slash_command_body(
            command="/reset", channel_id=channel, user_id=user, response_url=self.slack.response_url()
        )
        if self.socket is not None:
            form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
            envelope = await self.socket.deliver("slash_commands", form, accepts_response_payload=True)
            await self.socket.acknowledged(envelope)
            return 200, envelope.response or {}
        status, text = await self.post(body, "application/x-www-form-urlencoded")
        return status, json.loads(text) if text.startswith("{") else {"text": text}

    async def _socket_event(self, event: dict[str, Any], *, event_id: str | None, retry: int | None) -> int:
        """Socket Mode: deliver the event_callback as an envelope; 200 once it is acknowledged in time."""
        assert self.socket is not None
        payload = json.loads(event_body(event=event, event_id=event_id))
        envelope = await self.socket.deliver(
            "events_api", payload, retry_attempt=retry or 0, retry_reason="timeout" if retry else ""
        )
        await self.socket.acknowledged(envelope)
        return 200

    def idle(self) -> bool:
        return self.service.pipeline.in_flight() == 0

    async def thread_settled(self, channel: str, thread_ts: str, *, count: int = 1, timeout: float = 15.0) -> list[str]:
        def done() -> bool:
            replies = self.slack.thread(channel, thread_ts)
            return (
                len(replies) >= count
                and self.idle()
                and not replies[-1].text.endswith("▌")
                and not any(self.slack.stream_active(channel, m.ts) for m in replies)
            )

        await eventually(
            done, timeout, f"(thread {thread_ts}: {[m.text for m in self.slack.thread(channel, thread_ts)]})"
        )
        await asyncio.sleep(0.05)
        return [m.text for m in self.slack.thread(channel, thread_ts)]

    async def files_settled(
        self, channel: str, thread_ts: str, *, count: int = 1, timeout: float = 15.0
    ) -> list[SharedFile]:
        """The files shared into the thread once `count` are there and no answer is running."""

        def done() -> bool:
            return len(self.slack.files.in_thread(channel, thread_ts)) >= count and self.idle()

        await eventually(done, timeout, f"(files shared into thread {thread_ts})")
        return self.slack.files.in_thread(channel, thread_ts)


@asynccontextmanager
async def slack_bot(
    *,
    redis_url: str,
    key_prefix: str,
    streaming: str = "auto",
    native_streaming: bool = True,
    clock: Callable[[], float] = time.monotonic,
    rate_limits: dict[str, int] | None = None,
    socket_mode: bool = False,
    dify_options: dict[str, Any] | None = None,
    slack_options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[SlackHarness]:
    """`dify_options` / `slack_options` go to the FakeDify / FakeSlack constructors (file settings, scopes)."""
    async with (
        FakeDify(**(dify_options or {})) as dify,
        FakeSlack(
            bot_token=BOT_TOKEN,
            native_streaming=native_streaming,
            clock=clock,
            rate_limits=rate_limits,
            **(slack_options or {}),
        ) as slack,
        _socket_mode_server(socket_mode) as socket,
    ):
        values: dict[str, Any] = {
            "dify_api_key": dify.api_key,
            "dify_base_url": dify.url,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_base": slack.api_url,
            "slack_streaming": streaming,
            "http_host": "127.0.0.1",
            "http_port": 0,
            "shutdown_grace": 2.0,
        }
        if socket is not None:
            # Socket Mode takes the app-level token and needs no signing secret.
            socket.attach(slack)
            values["slack_app_token"] = socket.app_token
            del values["slack_signing_secret"]
        values.update(settings)
        tuning = {"update_interval": 0.05, "status_delay": 0.3}
        async with BotService(load(None, **values), tuning={"slack": tuning}) as service:
            yield SlackHarness(dify=dify, slack=slack, service=service, socket=socket)
            if socket is not None:
                await socket.verify()


@asynccontextmanager
async def _socket_mode_server(enabled: bool) -> AsyncIterator[FakeSocketMode | None]:
    if not enabled:
        yield None
        return
    async with FakeSocketMode() as socket:
        yield socket
