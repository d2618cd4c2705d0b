"""Composition root of `dify-bots run`: core, the registered front doors and one aiohttp web server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from bots import registry
from bots.core_stack import CoreStack, open_core
from bots.front_door import DoorServices, FrontDoor, FrontDoorPlugin, RecoveringDoor, ReportingDoor
from bots.heap import settle_after_startup
from bots.metrics import Metrics
from bots.web_errors import error_middleware
from core.answering import AnswerPipeline, AnswerReport
from core.controls.desk import ControlDesk, ControlOptions
from core.controls.feedback import FeedbackBook
from core.dify.errors import DifyServerError, DifyTransportError
from core.errors import BotError, StartupError
from core.journal import Journal, JournalEntry
from core.settings import Config, SettingsError

log = logging.getLogger(__name__)

DIFY_FRESH_FOR = 60.0  # seconds a successful Dify check counts for /readyz
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# An API client can read this error shape; chat platforms only look at the status and redeliver.
SHUTTING_DOWN = {
    "error": {
        "message": "The service is shutting down; retry shortly.",
        "type": "server_error",
        "code": "service_unavailable",
    }
}


def nothing_configured() -> str:
    switches = ", ".join(
        f"{plugin.settings.env_names()[0]} ({plugin.name})"
        for plugin in registry.plugins()
        if plugin.settings.env_names()
    )
    return f"dify-bots: nothing to run. Set at least one of {switches}, in the environment or in .env."


def configured_doors(config: Config, only: frozenset[str] = frozenset()) -> list[FrontDoorPlugin[Any]]:
    """The registered front doors whose settings enable them (limited to `only` when given)."""
    return [
        plugin
        for plugin in registry.plugins()
        if (not only or plugin.name in only)
        and plugin.name in config.sections
        and plugin.configured(config.section(plugin.name))
    ]


class BotService:
    """Everything `dify-bots run` starts; usable in-process (tests) as an async context manager."""

    def __init__(
        self,
        config: Config,
        *,
        only: frozenset[str] = frozenset(),
        tuning: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config
        self.settings = config.core
        self.plugins = configured_doors(config, only)
        self.doors: dict[str, FrontDoor] = {}
        self._tuning = dict(tuning or {})
        self.metrics = Metrics()
        self.web = web.Application(middlewares=[error_middleware, self._closing_gate])
        self.web.router.add_get("/healthz", self._healthz)
        self.web.router.add_get("/readyz", self._readyz)
        self.web.router.add_get("/metrics", self._metrics)
        self.core: CoreStack | None = None
        self._pipeline: AnswerPipeline | None = None
        self.journal: Journal | None = None
        self.closing = False
        self.started = False
        self._dify_ok_at = float("-inf")
        self._stack = AsyncExitStack()
        self.port: int | None = None

    @property
    def pipeline(self) -> AnswerPipeline:
        if self._pipeline is None:
            raise RuntimeError("the service has not started")
        return self._pipeline

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
        self.core = core = await self._stack.enter_async_context(open_core(settings))
        self.journal = journal = Journal(core.redis, keys=core.store.keys, lease=settings.journal_lease)
        await journal.start()
        self._stack.push_async_callback(journal.close)
        controls = ControlDesk(
            feedback=FeedbackBook(core.store, core.dify),
            options=ControlOptions(stop_button=settings.stop_button, feedback_buttons=settings.feedback_buttons),
        )
        await self._stack.enter_async_context(controls.relay_over(core.redis, channel=core.store.keys.stop_channel()))
        self._pipeline = pipeline = AnswerPipeline(core.service, journal=journal, controls=controls)
        pipeline.observe(self._answered)
        for plugin in self.plugins:
            services = DoorServices(
                core=core,
                pipeline=pipeline,
                record_api_call=self._api_call_recorder(plugin.name),
                tuning=self._tuning.get(plugin.name, {}),
            )
            door = plugin.create(self.config.section(plugin.name), services)
            self.doors[plugin.name] = await self._stack.enter_async_context(door)
            self.metrics.track_in_flight(plugin.name, self._in_flight_counter(plugin.name))
            door.mount(self.web)
        runner = web.AppRunner(self.web, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        self.port = runner.addresses[0][1] if runner.addresses else settings.http_port
        log.info("listening on %s:%s (%s)", settings.http_host, self.port, ", ".join(self.doors))
        for door in self.doors.values():
            await door.start()
        recovering = [name for name, door in self.doors.items() if isinstance(door, RecoveringDoor)]
        journal.start_claiming(self._recover, platforms=recovering)
        self.started = True

    async def _recover(self, entry: JournalEntry) -> None:
        door = self.doors.get(entry.chat.platform)
        if isinstance(door, RecoveringDoor):
            await door.recover(entry)

    def _api_call_recorder(self, platform: str) -> Callable[[str, str], None]:
        return lambda method, result: self.metrics.api_call(platform, method, result)

    def _in_flight_counter(self, platform: str) -> Callable[[], int]:
        return lambda: self.pipeline.in_flight(platform)

    def _answered(self, report: AnswerReport) -> None:
        self.metrics.answer_finished(report.platform, report.stats)
        if not isinstance(report.stats.error, DifyTransportError | DifyServerError):
            self._dify_ok_at = time.monotonic()  # Dify answered (even if with an error of its own)

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop taking updates, give in-flight answers `grace` seconds, then interrupt the rest."""
        if self.closing:
            return
        self.closing = True
        for door in self.doors.values():
            await door.stop_intake()
        if self.journal is not None:
            await self.journal.stop_claiming()
        if self._pipeline is not None:
            await self._pipeline.drain(self.settings.shutdown_grace if grace is None else grace)

    # ---- web routes -----------------------------------------------------------------------------

    @web.middleware
    async def _closing_gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """While shutting down, refuse new updates (platforms redeliver them to another replica)."""
        if self.closing and request.path not in OPEN_PATHS:
            return web.json_response(SHUTTING_DOWN, status=503, headers={"Retry-After": "1"})
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
        detail = self.readiness_detail()
        if self.core is not None:
            detail["budgets"] = self.core.budgets.mode  # "local": Redis is unreachable, limits are per replica
        body = {"ready": ready, "checks": checks, "detail": detail}
        return web.json_response(body, status=200 if ready else 503)

    def readiness_detail(self) -> dict[str, str]:
        """What each front door reports about itself (e.g. whether this replica is the one that polls)."""
        detail: dict[str, str] = {}
        for door in self.doors.values():
            if isinstance(door, ReportingDoor):
                detail.update(door.readiness())
        return detail

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": self.metrics.content_type})


async def run_service(config: Config, *, only: frozenset[str] = frozenset()) -> int:
    known = registry.names()
    unknown = only - set(known)
    if unknown:
        print(
            f"dify-bots: unknown front door(s) in --only: {', '.join(sorted(unknown))}; choose from {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    if not configured_doors(config, only):
        print(nothing_configured(), file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    service = BotService(config, only=only)
    try:
        await service.__aenter__()
    except SettingsError as exc:
        print(f"dify-bots: invalid settings: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"dify-bots: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"dify-bots: {cannot_listen(config, exc)}", file=sys.stderr)
        return 1
    settle_after_startup()
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await service.__aexit__(None, None, None)
    return 0


def cannot_listen(config: Config, error: OSError) -> str:
    """The one line for a web server that could not start (or another OS-level start-up failure)."""
    where = f"{config.core.http_host}:{config.core.http_port}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is already in use; stop the other program or set HTTP_PORT"
    if error.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied; choose HTTP_PORT 1024 or above"
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(error, socket.gaierror):
        return f"cannot listen on {where}: this machine has no such address; check HTTP_HOST"
    return f"could not start: {error.strerror or type(error).__name__}"
