"""Flag: a cheap asyncio.Event, and `wait_any` for several flags with one future and no helper tasks."""

from __future__ import annotations

import asyncio

__all__ = ["Flag", "wait_any"]


class Flag:
    """Like asyncio.Event, but a wait on several flags costs one future and one timer.

    The renderer waits many times per second per answer (for text, for the end, for its slot); with
    asyncio.Event that meant two helper tasks and their cancellations per wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: set[asyncio.Future[None]] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        await wait_any((self,), None)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def wait_any(flags: tuple[Flag, ...], limit: float | None) -> None:
    """Return when any of `flags` is set, or after `limit` seconds (None: no limit)."""
    if any(flag._set for flag in flags):
        return
    if limit is not None and limit <= 0:
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    for flag in flags:
        flag._waiters.add(waiter)
    timer = loop.call_later(limit, _wake, waiter) if limit is not None else None
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        for flag in flags:
            flag._waiters.discard(waiter)
