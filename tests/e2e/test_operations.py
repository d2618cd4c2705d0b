"""Running it as a service: health, readiness through a Redis outage, metrics, SIGTERM, two replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.errors import Interrupted
from core.texts import friendly_error
from tests.e2e.telegram_harness import SECRET, TOKEN, eventually, telegram_bot
from tests.fakes.dify import Answer, FakeDify
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.telegram import FakeTelegram

WEBHOOK_PATH = "/telegram/webhook"


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_health_readiness_and_metrics(redis_url: str, key_prefix: str) -> None:
    async with TcpProxy(redis_url) as proxy, telegram_bot(redis_url=proxy.url, key_prefix=key_prefix) as bot:
        base = f"http://127.0.0.1:{bot.service.port}"
        assert await get(f"{base}/healthz") == (200, '{"status": "ok"}')
        status, body = await get(f"{base}/readyz")
        assert status == 200, body

        await proxy.cut()  # Redis goes away
        status, body = await get(f"{base}/readyz")
        assert status == 503 and '"store": false' in body
        assert (await get(f"{base}/healthz"))[0] == 200  # alive, just not ready

        await proxy.restore()
        status, body = await get(f"{base}/readyz")
        assert status == 200, body

        bot.dify.script(Answer("one two three four five", delay=0.02))
        await bot.say("count")
        assert await bot.settled() == ["one two three four five"]
        _, metrics = await get(f"{base}/metrics")
        assert 'difybots_answers_total{outcome="done",platform="telegram"} 1.0' in metrics
        assert 'difybots_platform_api_calls_total{method="sendMessage",platform="telegram",result="ok"}' in metrics
        assert "difybots_first_text_seconds_count" in metrics
        assert 'difybots_answers_in_flight{platform="telegram"} 0.0' in metrics


async def test_redis_outage_during_use_gets_a_friendly_answer(redis_url: str, key_prefix: str) -> None:
    async with TcpProxy(redis_url) as proxy, telegram_bot(redis_url=proxy.url, key_prefix=key_prefix) as bot:
        await proxy.cut()
        await bot.say("hello?")
        texts = await bot.settled(timeout=30)
        assert texts == ["⚠️ The bot cannot reach its memory right now. Please try again in a moment."]
        assert bot.dify.chat_requests() == []
        await proxy.restore()
        await bot.say("again")
        assert (await bot.settled(count=2))[-1] == "echo: again"


# ---- real processes ---------------------------------------------------------------------------------


def bot_env(dify: FakeDify, telegram: FakeTelegram, redis_url: str, key_prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
    env.update(
        {
            "DIFY_API_KEY": dify.api_key,
            "DIFY_BASE_URL": dify.url,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE": telegram.url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": key_prefix,
            "HTTP_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


async def start_bot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "run",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_bot(process: asyncio.subprocess.Process) -> tuple[int, str]:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, err.decode()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDify, FakeTelegram]]:
    async with FakeDify() as dify, FakeTelegram(token=TOKEN) as telegram:
        yield dify, telegram


async def test_sigterm_mid_answer_ends_with_the_partial_text(
    fakes: tuple[FakeDify, FakeTelegram], redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    dify, telegram = fakes
    words = [f"word{i} " for i in range(200)]
    dify.script(Answer("".join(words), chunks=words, delay=0.1))
    env = bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(free_port()), SHUTDOWN_GRACE="0.5")
    process = await start_bot(env, tmp_path)
    try:
        await eventually(lambda: telegram.count("getUpdates") > 0, timeout=30)
        telegram.push_update(telegram.message_update(chat_id=42, user_id=7, text="long story"))
        await eventually(lambda: any("word3" in t for t in telegram.visible_texts(42)), timeout=30)
    finally:
        code, err = await stop_bot(process)
    assert code == 0, err
    texts = telegram.visible_texts(42)
    assert len(texts) == 1
    partial, _, line = texts[0].partition("\n\n⚠️ ")
    assert partial.startswith("word0 word1 word2 word3") and "▌" not in texts[0]
    assert line == friendly_error(Interrupted())
    assert len(dify.stops) == 1  # the Dify task was stopped too
    assert TOKEN not in err


async def test_two_processes_on_one_redis(
    fakes: tuple[FakeDify, FakeTelegram], redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    dify, telegram = fakes
    webhook = {"TELEGRAM_WEBHOOK_URL": f"https://bot.example.com{WEBHOOK_PATH}", "TELEGRAM_WEBHOOK_SECRET": SECRET}
    ports = [free_port(), free_port()]
    processes = [
        await start_bot(bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port), **webhook), tmp_path)
        for port in ports
    ]
    try:

        async def ready(port: int) -> bool:
            try:
                return (await get(f"http://127.0.0.1:{port}/readyz"))[0] == 200
            except aiohttp.ClientError:
                return False

        for port in ports:
            for _ in range(300):
                if await ready(port):
                    break
                await asyncio.sleep(0.1)

        async def deliver(port: int, update: dict[str, Any]) -> int:
            headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", json=update, headers=headers) as response,
            ):
                return response.status

        # A load balancer retry: the same update reaches both replicas.
        update = telegram.message_update(chat_id=42, user_id=7, text="only once")
        assert await asyncio.gather(deliver(ports[0], update), deliver(ports[1], update)) == [200, 200]
        await eventually(lambda: telegram.visible_texts(42) == ["echo: only once"], timeout=30)
        await asyncio.sleep(0.5)
        assert telegram.visible_texts(42) == ["echo: only once"] and len(dify.chat_requests()) == 1

        # Two messages in one chat, one to each replica: one conversation, answered in order.
        dify.script(Answer("first answer", delay=0.2), Answer("second answer"))
        first = telegram.message_update(chat_id=43, user_id=8, text="first")
        second = telegram.message_update(chat_id=43, user_id=8, text="second")
        assert await deliver(ports[0], first) == 200
        await asyncio.sleep(0.05)
        assert await deliver(ports[1], second) == 200
        # The replicas share the chat's budget: the second answer's placeholder may show for a second first.
        await eventually(lambda: telegram.visible_texts(43) == ["first answer", "second answer"], timeout=30)
        requests = [r for r in dify.chat_requests() if r["user"] == "tg-8"]
        assert [r["query"] for r in requests] == ["first", "second"]
        assert requests[0]["conversation_id"] == "" and requests[1]["conversation_id"] in dify.conversations
    finally:
        results = [await stop_bot(process) for process in processes]
    assert [code for code, _ in results] == [0, 0], results
