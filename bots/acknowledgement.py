"""A reaction that stays on a question while its answer runs: added in the background, removed at the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager

SETTLE_TIMEOUT = 5.0  # seconds the end of an answer waits for a reaction still being added

React = Callable[[], Coroutine[object, object, bool]]  # True when the platform took it


@asynccontextmanager
async def reacting(add: React, remove: React) -> AsyncIterator[None]:
    """Run `add` in the background while the block runs, then `remove` if the reaction was set."""
    adding = asyncio.create_task(add())
    try:
        yield
    finally:
        # Awaited rather than cancelled: a cancelled request may still land and leave the reaction behind.
        if await _settled(adding):
            await remove()


async def _settled(task: asyncio.Task[bool]) -> bool:
    """Whether `task` ended with True within SETTLE_TIMEOUT (it is cancelled when it did not end)."""
    done, _ = await asyncio.wait({task}, timeout=SETTLE_TIMEOUT)
    if not done:
        task.cancel()
        return False
    return not task.cancelled() and task.exception() is None and task.result()
