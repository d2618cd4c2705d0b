"""Message filters aiogram awaits on the event loop instead of running them in a worker thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.types import Message
from aiogram.utils.magic_filter import MagicFilter

Check = Callable[[Message], Awaitable[Any]]


def on_loop(condition: MagicFilter | Callable[[Message], Any]) -> Check:
    """`condition` as a coroutine: aiogram hands every plain (non-async) filter, magic ones included, to
    `asyncio.to_thread`, a thread hop per update and filter for a check that takes a microsecond."""
    check = condition.resolve if isinstance(condition, MagicFilter) else condition

    async def on_loop_check(message: Message) -> Any:
        return check(message)

    return on_loop_check
