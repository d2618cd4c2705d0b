"""Several replicas on one Redis answering at once stay inside the platform's budgets together: Slack's
per-workspace chat.update tier and a Telegram forum group's per-chat limit, with no 429 and exact answers;
/readyz says when a replica has fallen back to its own budgets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bots.app import BotService
from bots.config import load
from core.shared_budgets import Interval
from tests.component.test_shared_budgets import RedisProcess
from tests.e2e.telegram_harness import SCALE, SECRET, TOKEN, eventually, rendered, scaled_clock
from tests.fakes.dify import Answer, FakeDify, ReplyContext
from tests.fakes.slack import FakeSlack, event_body, mention_event, signed_headers
from tests.fakes.telegram import FakeTelegram

SLACK_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret"
CHANNEL = "C300"
THREADS = 12
# The fake's chat.update tier (per sliding minute), lowered from 50 so that the replicas' own buckets alone
# (bursts of 10 each, 30 together) overrun it: without the shared bucket this test sees over 100 x 429.
# The shared bucket (burst 10, then 40 a minute) cannot pass 25 in the first 22 s; the answers here need
# about 15 updates in about 15 s.
UPDATE_TIER = 25


def long_answer(query: str) -> Answer:
    """About 2 s of streaming: plenty of interim frames wanting the workspace's chat.update budget."""
    text = " ".join(f"{query} part {n} of the answer." for n in range(1, 21))
    chunks = [text[i : i + 25] for i in range(0, len(text), 25)]
    return Answer(text, chunks=chunks, delay=0.08)


def long_reply(ctx: ReplyContext) -> Answer:
    return long_answer(ctx.query)


@asynccontextmanager
async def replicas(count: int, values: dict[str, Any], tuning: dict[str, Any]) -> AsyncIterator[list[BotService]]:
    """`count` complete services (each its own web server, door and budgets) on the same Redis and fakes."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(BotService(load(None, **values), tuning=tuning)) for _ in range(count)]


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status


async def readiness_detail(service: BotService) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{service.port}/readyz") as response,
    ):
        detail: dict[str, str] = (await response.json())["detail"]
        return detail


def idle(services: list[BotService]) -> Callable[[], bool]:
    return lambda: all(service.pipeline.in_flight() == 0 for service in services)


async def test_three_replicas_stay_inside_the_workspace_update_tier(redis_url: str, key_prefix: str) -> None:
    async with (
        FakeDify() as dify,
        FakeSlack(bot_token=SLACK_TOKEN, native_streaming=False, rate_limits={"chat.update": UPDATE_TIER}) as slack,
    ):
        dify.default_reply = long_reply
        values = {
            "dify_api_key": dify.api_key,
            "dify_base_url": dify.url,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "slack_bot_token": SLACK_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_base": slack.api_url,
            "slack_streaming": "update",
            "http_host": "127.0.0.1",
            "http_port": 0,
            "shutdown_grace": 2.0,
        }
        # Each answer may edit every 50 ms: only the workspace's budget holds the replicas back.
        tuning = {"slack": {"update_interval": 0.05, "status_delay": 0.3}}
        async with replicas(3, values, tuning) as services:
            roots = [f"1800000000.{n:06d}" for n in range(1, THREADS + 1)]
            statuses = await asyncio.gather(
                *(
                    post(
                        f"http://127.0.0.1:{services[n % 3].port}/slack/events",
                        body := event_body(
                            event=mention_event(channel=CHANNEL, user="U1", text=f"<@UBOT> question {n}", ts=ts)
                        ),
                        signed_headers(SIGNING_SECRET, body, "application/json"),
                    )
                    for n, ts in enumerate(roots)
                )
            )
            assert statuses == [200] * THREADS

            def answered() -> bool:
                return (
                    all(
                        [m.text for m in slack.thread(CHANNEL, ts)] == [long_answer(f"question {n}").text]
                        for n, ts in enumerate(roots)
                    )
                    and idle(services)()
                )

            await eventually(answered, 40.0, "(every thread's final answer)")
            details = [await readiness_detail(service) for service in services]

    updates = [call for call in slack.calls if call.method == "chat.update"]
    assert slack.rate_limited == 0 and all(call.status == 200 for call in updates)
    assert THREADS <= len(updates) <= UPDATE_TIER  # every answer got its final edit, all within the tier
    assert len(dify.chat_requests()) == THREADS
    assert all(detail.get("budgets") == "shared" for detail in details)


async def test_two_replicas_share_a_forum_groups_limit(redis_url: str, key_prefix: str) -> None:
    group = -1003
    topics = [5, 9, 13, 17]
    async with (
        FakeDify() as dify,
        FakeTelegram(token=TOKEN, clock=scaled_clock, retry_after=1) as telegram,
    ):
        dify.default_reply = long_reply
        values = {
            "dify_api_key": dify.api_key,
            "dify_base_url": dify.url,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "telegram_bot_token": TOKEN,
            "telegram_api_base": telegram.url,
            "telegram_webhook_url": "https://bot.example.com/telegram/webhook",
            "telegram_webhook_secret": SECRET,
            "http_host": "127.0.0.1",
            "http_port": 0,
            "shutdown_grace": 2.0,
        }
        # Telegram's clock runs 20x faster in the fake, and the bot's intervals shrink to match: the
        # group's 20 per minute are 20 per 3 real seconds, which the two replicas' streams would overrun.
        tuning = {"telegram": {"private_interval": 1.0 / SCALE, "group_interval": 3.0 / SCALE, "status_delay": 0.5}}
        async with replicas(2, values, tuning) as services:
            updates = [
                telegram.message_update(
                    chat_id=group,
                    user_id=7,
                    text=f"@test_bot question {topic}",
                    chat_type="supergroup",
                    message_thread_id=topic,
                    is_topic_message=True,
                )
                for topic in topics
            ]
            headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
            statuses = await asyncio.gather(
                *(
                    post(
                        f"http://127.0.0.1:{services[n % 2].port}/telegram/webhook",
                        json.dumps(update).encode(),
                        headers,
                    )
                    for n, update in enumerate(updates)
                )
            )
            assert statuses == [200] * len(topics)

            def answered() -> bool:
                texts = {m.message_thread_id: m.text for m in telegram.chat_messages(group)}
                return texts == {t: rendered(long_answer(f"question {t}").text) for t in topics} and idle(services)()

            await eventually(answered, 40.0, "(every topic's final answer)")

    assert telegram.rate_limited == 0
    assert telegram.count("editMessageText", chat_id=group) > len(topics)  # interim frames were shown too
    assert len(dify.chat_requests()) == len(topics)


async def test_readyz_says_when_budgets_fall_back_to_local(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)
    await server.start()
    try:
        async with FakeDify() as dify:
            config = load(
                None,
                dify_api_key=dify.api_key,
                dify_base_url=dify.url,
                redis_url=server.url,
                openai_api_keys="sk-test-key-1",
                http_host="127.0.0.1",
                http_port=0,
            )
            async with BotService(config, only=frozenset({"openai"})) as service:
                assert (await readiness_detail(service))["budgets"] == "shared"
                server.stop()
                assert service.core is not None
                assert await service.core.budgets.take("telegram:1:chat:42", Interval(ms=1000)) == 0  # allowed
                assert (await readiness_detail(service))["budgets"] == "local"
    finally:
        server.stop()
