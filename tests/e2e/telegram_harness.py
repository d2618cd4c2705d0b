"""A running dify-bots (Telegram front door) wired to the fake Dify and fake Telegram, in time-scaled mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from bots.app import BotService
from bots.config import load
from bots.telegram.markdown import render_markdown
from tests.fakes.dify import FakeDify
from tests.fakes.telegram import FakeTelegram

# Telegram's rules run on a clock 20x faster than real time, and the bot's intervals shrink to match:
# 60 Telegram seconds of group traffic take 3 real seconds.
SCALE = 20.0
TOKEN = "123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"
SECRET = "webhook-secret_123"


def scaled_clock() -> float:
    return time.monotonic() * SCALE


def rendered(markdown: str) -> str:
    """What Telegram shows for a Markdown answer."""
    return render_markdown(markdown).text.strip()


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0, message: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s {message}")
        await asyncio.sleep(0.02)


@dataclass
class TelegramHarness:
    dify: FakeDify
    telegram: FakeTelegram
    service: BotService
    webhook: bool

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    async def deliver(self, update: dict[str, Any], *, secret: str | None = SECRET) -> int:
        """Hand an update to the bot the way the configured transport would; returns the HTTP status."""
        if not self.webhook:
            self.telegram.push_update(update)
            return 200
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.web_url}/telegram/webhook", json=update, headers=headers) as response,
        ):
            return response.status

    async def say(self, text: str, *, chat_id: int = 42, user_id: int = 7, **kwargs: Any) -> dict[str, Any]:
        update = self.telegram.message_update(chat_id=chat_id, user_id=user_id, text=text, **kwargs)
        assert await self.deliver(update) == 200
        return update

    def answers(self, chat_id: int = 42) -> list[str]:
        return self.telegram.visible_texts(chat_id)

    def idle(self) -> bool:
        return self.service.pipeline.in_flight() == 0

    async def settled(self, chat_id: int = 42, *, count: int = 1, timeout: float = 15.0) -> list[str]:
        """Wait until `count` bot messages exist in the chat, the last one final, and nothing is streaming."""

        def done() -> bool:
            texts = self.answers(chat_id)
            return len(texts) >= count and not texts[-1].endswith("▌") and self.idle()

        await eventually(done, timeout, f"(chat {chat_id}: {self.answers(chat_id)})")
        await asyncio.sleep(0.05)
        return self.answers(chat_id)


@asynccontextmanager
async def telegram_bot(
    *,
    redis_url: str,
    key_prefix: str,
    webhook: bool = False,
    rate_limits: bool = True,
    retry_after: int = 1,
    status_delay: float = 0.5,
    dify_mode: str = "chat",
    **settings: Any,
) -> AsyncIterator[TelegramHarness]:
    async with (
        FakeDify(mode=dify_mode) as dify,
        FakeTelegram(token=TOKEN, clock=scaled_clock, rate_limits=rate_limits, retry_after=retry_after) as telegram,
    ):
        values: dict[str, Any] = {
            "dify_api_key": dify.api_key,
            "dify_base_url": dify.url,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "telegram_bot_token": TOKEN,
            "telegram_api_base": telegram.url,
            "http_host": "127.0.0.1",
            "http_port": 0,
            "shutdown_grace": 2.0,
        }
        if webhook:
            values.update(
                telegram_webhook_url="https://bot.example.com/telegram/webhook",
                telegram_webhook_secret=SECRET,
            )
        values.update(settings)
        tuning = {
            "private_interval": 1.0 / SCALE,
            "group_interval": 3.0 / SCALE,
            "status_delay": status_delay,
        }
        async with BotService(load(None, **values), tuning={"telegram": tuning}) as service:
            yield TelegramHarness(dify=dify, telegram=telegram, service=service, webhook=webhook)
