"""Composition root of `dify-bots run`: core, front doors and one aiohttp web server in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from bots.core_stack import CoreStack, open_core
from bots.metrics import Metrics
from core.dify.errors import DifyServerError, DifyTransportError
from core.errors import BotError, Interrupted
from core.render.renderer import RenderStats, StreamRenderer
from core.render.throttle import ThrottleRegistry
from core.settings import Settings, SettingsError

log = logging.getLogger(__name__)

FRONT_DOORS = ("telegram", "slack", "openai")
DIFY_FRESH_FOR = 60.0  # seconds a successful Dify check counts for /readyz
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

NOTHING_CONFIGURED = (
    "dify-bots: nothing to run. Set at least one of TELEGRAM_BOT_TOKEN (Telegram), "
    "SLACK_BOT_TOKEN (Slack) or OPENAI_API_KEYS (OpenAI-compatible API), in the environment or in .env."
)


def configured_front_doors(settings: Settings, only: frozenset[str] = frozenset()) -> list[str]:
    doors = []
    if settings.telegram_bot_token is not None:
        doors.append("telegram")
    if settings.slack_bot_token is not None:
        doors.append("slack")
    if settings.openai_api_keys:
        doors.append("openai")
    return [door for door in doors if not only or door in only]


class BotService:
    """Everything `dify-bots run` starts; usable in-process (tests) as an async context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        only: frozenset[str] = frozenset(),
        telegram_tuning: Mapping[str, Any] | None = None,
        slack_tuning: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.doors = configured_front_doors(settings, only)
        self._tuning = {"telegram": dict(telegram_tuning or {}), "slack": dict(slack_tuning or {})}
        self.metrics = Metrics()
        self.web = web.Application(middlewares=[self._closing_gate])
        self.web.router.add_get("/healthz", self._healthz)
        self.web.router.add_get("/readyz", self._readyz)
        self.web.router.add_get("/metrics", self._metrics)
        self.core: CoreStack | None = None
        self.telegram: Any = None
        self.slack: Any = None
        self.closing = False
        self.started = False
        self._dify_ok_at = float("-inf")
        self._stack = AsyncExitStack()
        self.port: int | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()
        await self._stack.aclose()

    async def _start(self) -> None:
        settings = self.settings
        if "slack" in self.doors and settings.slack_app_token is None and settings.slack_signing_secret is None:
            raise SettingsError(
                "SLACK_SIGNING_SECRET is not set; expected the Slack app's signing secret (HTTP mode), "
                "or set SLACK_APP_TOKEN for Socket Mode"
            )
        self.core = core = await self._stack.enter_async_context(open_core(settings))
        if "telegram" in self.doors:
            await self._start_telegram(core)
        if "slack" in self.doors:
            await self._start_slack(core)
        if "openai" in self.doors:
            from bots.openai_api import OpenAIApi

            OpenAIApi(
                service=core.service,
                keys=[key.get_secret_value() for key in settings.openai_api_keys],
                model=settings.openai_model_name,
                system_input=settings.openai_system_input,
            ).register(self.web)
        runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        self.port = runner.addresses[0][1] if runner.addresses else settings.http_port
        log.info("listening on %s:%s (%s)", settings.http_host, self.port, ", ".join(self.doors))
        if self.telegram is not None:
            if self.telegram.webhook_url:
                await self.telegram.register_webhook()
            else:
                await self.telegram.start_polling()
        if self.slack is not None and self.slack.app_token:
            await self.slack.start_socket_mode()
        self.started = True

    async def _start_telegram(self, core: CoreStack) -> None:
        from bots.telegram.handlers import TelegramContext
        from bots.telegram.runtime import TelegramBot

        settings = self.settings
        assert settings.telegram_bot_token is not None
        context = TelegramContext(
            service=core.service,
            throttles=ThrottleRegistry(),
            private_interval=settings.telegram_private_interval,
            group_interval=settings.telegram_group_interval,
            allowed_users=settings.telegram_allowed_users,
            allowed_chats=settings.telegram_allowed_chats,
            on_answer=self._answered("telegram"),
        )
        for name, value in self._tuning["telegram"].items():
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
                on_api_call=lambda method, result: self.metrics.api_call("telegram", method, result),
            )
        )
        self.metrics.track_in_flight("telegram", lambda: len(context.active))
        if self.telegram.webhook_url:
            self.telegram.mount_webhook(self.web)

    async def _start_slack(self, core: CoreStack) -> None:
        from bots.slack.handlers import SlackContext
        from bots.slack.runtime import SlackBot

        settings = self.settings
        assert settings.slack_bot_token is not None
        context = SlackContext(
            service=core.service,
            store=core.store,
            streaming=settings.slack_streaming,
            update_interval=settings.slack_update_interval,
            allowed_channels=settings.slack_allowed_channels,
            allowed_users=settings.slack_allowed_users,
            on_answer=self._answered("slack"),
        )
        for name, value in self._tuning["slack"].items():
            setattr(context, name, value)
        secret, app_token = settings.slack_signing_secret, settings.slack_app_token
        self.slack = await self._stack.enter_async_context(
            SlackBot(
                token=settings.slack_bot_token.get_secret_value(),
                api_base=settings.slack_api_base,
                context=context,
                signing_secret=secret.get_secret_value() if secret else None,
                app_token=app_token.get_secret_value() if app_token else None,
                on_api_call=lambda method, result: self.metrics.api_call("slack", method, result),
            )
        )
        self.metrics.track_in_flight("slack", lambda: len(context.active))
        if not self.slack.app_token:
            self.slack.mount(self.web)

    def _answered(self, platform: str) -> Callable[[RenderStats], Awaitable[None]]:
        async def record(stats: RenderStats) -> None:
            self.metrics.answer_finished(platform, stats)
            if not isinstance(stats.error, DifyTransportError | DifyServerError):
                self._dify_ok_at = time.monotonic()  # Dify answered (even if with an error of its own)

        return record

    def _active(self) -> dict[StreamRenderer, asyncio.Task[Any]]:
        active: dict[StreamRenderer, asyncio.Task[Any]] = {}
        for door in (self.telegram, self.slack):
            if door is not None:
                active.update(door.context.active)
        return active

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking updates, give in-flight answers `grace` seconds, then interrupt the rest."""
        if self.closing:
            return
        self.closing = True
        if self.telegram is not None:
            await self.telegram.stop_polling()
        if self.slack is not None:
            await self.slack.stop()
        grace = self.settings.shutdown_grace if grace is None else grace
        active = self._active()
        if active:
            log.info("waiting up to %.0fs for %d answers", grace, len(active))
            await asyncio.wait(set(active.values()), timeout=grace)
        active = self._active()
        for renderer in active:
            renderer.interrupt(Interrupted("shutting down"))
        if active:
            await asyncio.wait(set(active.values()), timeout=30)

    # ---- web routes -----------------------------------------------------------------------------

    @web.middleware
    async def _closing_gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """While shutting down, refuse new updates (Telegram and Slack retry them elsewhere)."""
        if self.closing and request.path not in OPEN_PATHS:
            return web.json_response({"error": "shutting down"}, status=503)
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = {"adapters": self.started and not self.closing, "store": False, "dify": False}
        if self.core is not None:
            try:
                await asyncio.wait_for(self.core.store.ping(), timeout=2)
                checks["store"] = True
            except (BotError, TimeoutError):
                pass
            if time.monotonic() - self._dify_ok_at < DIFY_FRESH_FOR:
                checks["dify"] = True
            else:
                try:
                    await asyncio.wait_for(self.core.dify.info(), timeout=5)
                    self._dify_ok_at = time.monotonic()
                    checks["dify"] = True
                except (BotError, TimeoutError):
                    pass
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": self.metrics.content_type})


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
    try:
        async with BotService(settings, only=only):
            await stop.wait()
            log.info("shutting down")
    except SettingsError as exc:
        print(f"dify-bots: invalid settings: {exc}", file=sys.stderr)
        return 2
    return 0
