"""EVENT_LOOP: uvloop when it is there (it is a dependency), asyncio's own loop on request."""

from __future__ import annotations

import asyncio

import pytest

from bots.event_loop import loop_name, run
from core.errors import StartupError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_runs_on_uvloop() -> None:
    assert loop_name("auto") == "uvloop"
    assert run(_loop_module(), choice="auto").startswith("uvloop")


def test_asyncio_on_request() -> None:
    assert loop_name("asyncio") == "asyncio"
    assert run(_loop_module(), choice="asyncio").startswith("asyncio")


def test_uvloop_demanded_but_missing_is_a_clear_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert loop_name("auto") == "asyncio"
    with pytest.raises(StartupError, match="uvloop is not installed"):
        loop_name("uvloop")
