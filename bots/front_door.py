"""The FrontDoor plug-in seam: what a platform declares (settings, checks) and what it runs (start/stop, routes)."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

from aiohttp import web

from bots.core_stack import CoreStack
from core.answering import AnswerPipeline
from core.journal import JournalEntry
from core.settings import Settings, SettingsSection

Check = Callable[[], Awaitable[str]]
"""One `dify-bots check` line: returns what was found, raises (any error) when it fails."""

ApiCallRecorder = Callable[[str, str], None]
"""Counts one platform API call: (method, result), result being ok, rate_limited or error."""

SectionT = TypeVar("SectionT", bound=SettingsSection)


@dataclass(frozen=True, slots=True)
class DoorServices:
    """What the composition root hands every front door it starts."""

    core: CoreStack
    pipeline: AnswerPipeline
    record_api_call: ApiCallRecorder = lambda method, result: None
    tuning: Mapping[str, Any] = field(default_factory=dict)  # test and benchmark knobs (intervals, delays)

    @property
    def settings(self) -> Settings:
        return self.core.settings


class FrontDoor(Protocol):
    """A running front door. `async with` logs in; `start()` begins taking updates once the web server listens."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def mount(self, app: web.Application) -> None:
        """Add this door's routes (webhooks, events, API) to the one web server."""
        ...

    async def start(self) -> None:
        """Begin taking updates: register a webhook, start polling or open a socket."""
        ...

    async def stop_intake(self) -> None:
        """Take no new updates (shutdown); answers in flight go on."""
        ...


@runtime_checkable
class RecoveringDoor(Protocol):
    """Optional part of a `FrontDoor`: finishes an answer a dead replica left in the journal.

    `recover(entry)`: when Dify never started (`entry.started` is False), answer the question in
    `entry.origin` again through the pipeline, as a reply to the original message; otherwise end the
    half-written message(s) with their text so far plus the "interrupted, please send again" line and
    stop the Dify task. Doors without it leave their orphans to replicas that have it."""

    async def recover(self, entry: JournalEntry) -> None: ...


@runtime_checkable
class ReportingDoor(Protocol):
    """Optional part of a `FrontDoor`: facts for `/readyz` detail, such as this replica's role.

    `readiness()` returns short `name: state` pairs (e.g. `{"telegram": "standby"}`); they inform
    operators and never make the replica unready."""

    def readiness(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class FrontDoorPlugin(Generic[SectionT]):
    """A platform as the registry lists it. The module defining it imports no platform library (cheap start-up).

    `configured(section)`: whether the section enables the door (e.g. its token is set).
    `create(section, services)`: the running door; imports the platform library; may raise SettingsError.
    `warnings(section)`: signs of a half-done configuration for `dify-bots check`.
    `checks(section, settings)`: what `dify-bots check` verifies (token accepted, mode).
    """

    name: str
    settings: type[SectionT]
    configured: Callable[[SectionT], bool]
    create: Callable[[SectionT, DoorServices], FrontDoor]
    warnings: Callable[[SectionT], list[str]] = lambda section: []
    checks: Callable[[SectionT, Settings], list[tuple[str, Check]]] = lambda section, settings: []


def lazy_factory(*targets: str) -> Callable[[Any, DoorServices], FrontDoor]:
    """A plug-in's `create` that imports `module:callable` only when the door starts (cheap start-up).
    With several targets, the ones before the last are called first without arguments (preparing imports)."""
    *preparations, target = targets

    def create(section: Any, services: DoorServices) -> FrontDoor:
        for preparation in preparations:
            _load(preparation)()
        factory: Callable[[Any, DoorServices], FrontDoor] = _load(target)
        return factory(section, services)

    return create


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
