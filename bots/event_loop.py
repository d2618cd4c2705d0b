"""The event loop `dify-bots run` and `check` use: uvloop where it is installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from core.errors import StartupError

__all__ = ["loop_name", "run"]

T = TypeVar("T")


def loop_name(choice: str) -> str:
    """The loop `choice` (EVENT_LOOP: auto, uvloop or asyncio) stands for on this machine."""
    if choice == "asyncio":
        return "asyncio"
    if importlib.util.find_spec("uvloop") is not None:
        return "uvloop"
    if choice == "uvloop":
        raise StartupError("EVENT_LOOP is uvloop, but uvloop is not installed (pip install uvloop)")
    return "asyncio"


def run(main: Coroutine[Any, Any, T], *, choice: str) -> T:
    """Run `main` to completion on the chosen loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop_name(choice) == "uvloop":
        # uvloop runs the loop's own machinery (sockets, timers, callbacks) in C: every streamed chunk and
        # every Bot API call wakes the loop, so this is a large part of the CPU an answer costs.
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
