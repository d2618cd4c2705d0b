"""The front doors dify-bots knows: one line each, plus any registered at run time (tests, extensions)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bots.front_door import FrontDoorPlugin

BUILT_IN = (
    "bots.telegram.plugin",
    "bots.slack.plugin",
    "bots.openai_api.plugin",
)

_registered: dict[str, FrontDoorPlugin[Any]] = {}


def plugins() -> list[FrontDoorPlugin[Any]]:
    """Every known front door, built-in ones first, in a stable order."""
    found: dict[str, FrontDoorPlugin[Any]] = {}
    for module in BUILT_IN:
        plugin: FrontDoorPlugin[Any] = importlib.import_module(module).PLUGIN
        found[plugin.name] = plugin
    found.update(_registered)
    return list(found.values())


def names() -> list[str]:
    return [plugin.name for plugin in plugins()]


def register(plugin: FrontDoorPlugin[Any]) -> None:
    _registered[plugin.name] = plugin


def unregister(name: str) -> None:
    _registered.pop(name, None)


@contextmanager
def registered(plugin: FrontDoorPlugin[Any]) -> Iterator[FrontDoorPlugin[Any]]:
    """Register `plugin` for the duration of the block."""
    register(plugin)
    try:
        yield plugin
    finally:
        unregister(plugin.name)
