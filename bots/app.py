"""Composition root of `dify-bots run`: core, front doors and one aiohttp web server in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from bots.core_stack import CoreStack, open_core
from bots.telegram.handlers import TelegramContext
from bots.telegram.runtime import TelegramBot
from core.errors import Interrupted
from core.render.throttle import ThrottleRegistry
from core.settings import Settings

log = logging.getLogger(__name__)

FRONT_DOORS = ("telegram", "slack", "openai")


def configured_front_doors(settings: Settings, only: frozenset[str] = frozenset()) -> list[str]:
    doors = []
    if settings.telegram_bot_token is not None:
        doors.append("telegram")
    if settings.slack_bot_token is not None:
        doors.append("slack")
    if settings.openai_api_keys:
        doors.append("openai")
    return [door for door in doors if not only or door in only]


NOTHING_CONFIGURED = (
    "dify-bots: nothing to run. Set at least one of TELEGRAM_BOT_TOKEN (Telegram), "
    "SLACK_BOT_TOKEN (Slack) or OPENAI_API_KEYS (OpenAI-compatible API), in the environment or in .env."
)


class BotService:
    """Everything `dify-bots run` starts; usable in-process (tests) as an async context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        only: frozenset[str] = frozenset(),
        telegram_tuning: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._telegram_tuning = dict(telegram_tuning or {})  # tests: time-scaled intervals, clocks
        self.doors = configured_front_doors(settings, only)
        self.web = web.Application()
        self.web.router.add_get("/healthz", self._healthz)
        self.core: CoreStack | None = None
        self.telegram: TelegramBot | None = None
        self._stack = AsyncExitStack()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        settings = self.settings
        self.core = core = await self._stack.enter_async_context(open_core(settings))
        throttles = ThrottleRegistry()
        if "telegram" in self.doors:
            assert settings.telegram_bot_token is not None
            context = TelegramContext(
                service=core.service,
                throttles=throttles,
                private_interval=settings.telegram_private_interval,
                group_interval=settings.telegram_group_interval,
                allowed_users=settings.telegram_allowed_users,
                allowed_chats=settings.telegram_allowed_chats,
            )
            for name, value in self._telegram_tuning.items():
                setattr(context, name, value)
            secret = settings.telegram_webhook_secret
            self.telegram = await self._stack.enter_async_context(
                TelegramBot(
                    token=settings.telegram_bot_token.get_secret_value(),
                    api_base=settings.telegram_api_base,
                    store=core.store,
                    context=context,
                    webhook_url=settings.telegram_webhook_url,
                    webhook_secret=secret.get_secret_value() if secret else None,
                )
            )
            if self.telegram.webhook_url:
                self.telegram.mount_webhook(self.web)
        self._runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._stack.push_async_callback(self._runner.cleanup)
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port)
        await site.start()
        self.port = self._runner.addresses[0][1] if self._runner.addresses else settings.http_port
        log.info("listening on %s:%s (%s)", settings.http_host, self.port, ", ".join(self.doors))
        if self.telegram is not None:
            if self.telegram.webhook_url:
                await self.telegram.register_webhook()
            else:
                await self.telegram.start_polling()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()
        await self._stack.aclose()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking updates, give in-flight answers `grace` seconds, then interrupt the rest."""
        if self.telegram is not None:
            await self.telegram.stop_polling()
            active = self.telegram.context.active
            grace = self.settings.shutdown_grace if grace is None else grace
            if active:
                log.info("waiting up to %.0fs for %d answers", grace, len(active))
                await asyncio.wait(set(active.values()), timeout=grace)
                for renderer in list(active):
                    renderer.interrupt(Interrupted("shutting down"))
                if active:
                    await asyncio.wait(set(active.values()))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


async def run_service(settings: Settings, *, only: frozenset[str] = frozenset()) -> int:
    unknown = only - set(FRONT_DOORS)
    if unknown:
        print(
            f"dify-bots: unknown front door(s) in --only: {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(FRONT_DOORS)}",
            file=sys.stderr,
        )
        return 2
    if not configured_front_doors(settings, only):
        print(NOTHING_CONFIGURED, file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with BotService(settings, only=only):
        await stop.wait()
        log.info("shutting down")
    return 0
