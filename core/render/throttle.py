"""Per-chat operation budget shared by every send and edit, with rate-limit pauses; clock injectable."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


BUSY_POLL = 0.02


class Throttle:
    """One operation at a time, `interval` seconds apart counted from when the previous one *finished*
    (the platform measures arrivals, so counting from the start would let network jitter through),
    and none before a rate-limit pause has passed."""

    def __init__(self, interval: float, *, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next_at = float("-inf")
        self._paused_until = float("-inf")
        self._busy = False

    def delay(self) -> float:
        """Seconds until the next operation may start (0 when it may start now)."""
        if self._busy:
            return BUSY_POLL
        return max(0.0, max(self._next_at, self._paused_until) - self._clock())

    def try_take(self) -> bool:
        """Start an operation now if the budget allows; call release() when it has finished."""
        if self.delay() > 0:
            return False
        self._busy = True
        return True

    async def take(self, sleep: Sleep = asyncio.sleep) -> None:
        """Wait until an operation may start, then start it (for frames that must not be skipped)."""
        while not self.try_take():
            await sleep(self.delay())

    def release(self) -> None:
        """The operation finished (successfully or not): the next may start `interval` from now."""
        self._busy = False
        self._next_at = self._clock() + self.interval

    def pause(self, seconds: float) -> None:
        """The platform said 'retry after': nothing goes out before then."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)


class ThrottleRegistry:
    """One Throttle per chat, created on first use; the least recently used ones are forgotten."""

    def __init__(self, *, clock: Clock = time.monotonic, max_size: int = 10_000) -> None:
        self._clock = clock
        self._max = max_size
        self._items: OrderedDict[Hashable, Throttle] = OrderedDict()

    def get(self, key: Hashable, interval: float) -> Throttle:
        throttle = self._items.get(key)
        if throttle is None:
            throttle = self._items[key] = Throttle(interval, clock=self._clock)
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return throttle


class Budget(Protocol):
    """What the renderer needs from a throttle: may an operation start now, and when."""

    def delay(self) -> float: ...

    def try_take(self) -> bool: ...

    async def take(self, sleep: Sleep = asyncio.sleep) -> None: ...

    def release(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


class TokenBucket:
    """A shared allowance of `per_minute` operations with bursts up to `burst` (e.g. one Slack workspace's
    chat.update tier, shared by every reply being edited there)."""

    def __init__(self, *, per_minute: float, burst: int, clock: Clock = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()
        self._paused_until = float("-inf")

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def delay(self) -> float:
        self._refill()
        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
        return max(wait, self._paused_until - self._clock(), 0.0)

    @property
    def burst(self) -> int:
        return int(self._burst)

    def try_take(self, *, reserve: int = 0) -> bool:
        """Spend a token now if one is free while `reserve` more stay (kept for frames that matter more)."""
        if self.delay() > 0 or self._tokens < 1 + reserve:
            return False
        self._tokens -= 1
        return True

    async def take(self, sleep: Sleep = asyncio.sleep) -> None:
        while not self.try_take():
            await sleep(self.delay())

    def release(self) -> None:
        """Tokens are spent when taken; nothing to give back."""

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)
