"""One Telegram poller across replicas: a Redis lease elects the replica that calls getUpdates; the others stand by."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Role = Literal["poller", "standby"]

# SET NX PX, or extend it if the token is already ours (a replica that stood down during a Redis blip).
TAKE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# Compare-and-PEXPIRE and compare-and-DEL: only the holder's token may extend or drop the lease.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

LEASE_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """How long a lease lives, how often the holder renews it and how often a standby asks for it (seconds).

    A poller that cannot renew stops polling `margin` seconds before its lease may run out. A dead
    poller's lease runs out after `ttl`; a standby notices within `retry_every`, so that hand-off
    takes at most `ttl + retry_every + take_timeout`.
    """

    ttl: float = 5.0
    renew_every: float = 1.5
    retry_every: float = 1.0
    margin: float = 0.5
    take_timeout: float = 2.0


class PollerLease:
    """A Redis lease (a key set only if absent, holding a random token, with a TTL) and this process's view of
    how long it surely holds it."""

    def __init__(self, redis: Any, key: str, *, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self.key = key
        self.token = secrets.token_hex(16)
        self._ttl_ms = max(1, round(ttl * 1000))
        self._ttl = ttl
        self._clock = clock
        self._until = float("-inf")

    def remaining(self) -> float:
        """Seconds the lease is surely still ours (counted from before the last successful take or renew)."""
        return self._until - self._clock()

    async def take(self) -> bool:
        """Take the lease if nobody holds it."""
        asked_at = self._clock()
        taken = await self._redis.eval(TAKE_SCRIPT, 1, self.key, self.token, self._ttl_ms)
        if taken:
            self._until = asked_at + self._ttl
        return bool(taken)

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (it ran out and another replica took it)."""
        asked_at = self._clock()
        kept = await self._redis.eval(RENEW_SCRIPT, 1, self.key, self.token, self._ttl_ms)
        self._until = asked_at + self._ttl if kept else float("-inf")
        return bool(kept)

    async def release(self) -> None:
        """Give the lease back so a standby can take it at once (only if it is still ours)."""
        self._until = float("-inf")
        await self._redis.eval(RELEASE_SCRIPT, 1, self.key, self.token)


class PollerElection:
    """Runs `lead()` when this replica takes the lease and `step_down()` as soon as it may no longer hold it.

    `alive()` tells whether what `lead()` started still runs; when it does not, the lease is handed back.
    """

    def __init__(
        self,
        lease: PollerLease,
        *,
        lead: Callable[[], Awaitable[None]],
        step_down: Callable[[], Awaitable[None]],
        alive: Callable[[], bool] = lambda: True,
        timing: LeaseTiming = LeaseTiming(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._lease = lease
        self._lead = lead
        self._step_down = step_down
        self._alive = alive
        self._timing = timing
        self._sleep = sleep
        self._leading = False
        self._task: asyncio.Task[None] | None = None
        self._unreachable = False

    @property
    def role(self) -> Role:
        return "poller" if self._leading else "standby"

    async def start(self) -> None:
        """Ask once now (a lone replica polls right away), then keep renewing or asking in the background."""
        await self.step()
        self._task = asyncio.create_task(self._watch(), name="telegram poller lease")

    async def stop(self) -> None:
        """Stop watching; the poller stops polling and gives the lease back, so a standby takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._leading:
            await self._resign(release=True)

    async def _watch(self) -> None:
        while True:
            await self._sleep(self._pause())
            await self.step()

    def _pause(self) -> float:
        timing = self._timing
        if not self._leading:
            return timing.retry_every
        # Never sleep past the point where polling must stop if the lease could not be renewed.
        return max(0.0, min(timing.renew_every, self._lease.remaining() - timing.margin))

    async def step(self) -> None:
        """One renewal (poller) or one attempt to take the lease (standby)."""
        if self._leading:
            await self._renew()
        else:
            await self._try_to_lead()

    async def _renew(self) -> None:
        timing = self._timing
        if not self._alive():
            log.warning("polling Telegram stopped on its own; giving the lease back")
            await self._resign(release=True)
            return
        try:
            # Wait for Redis only as long as the lease surely lasts.
            budget = self._lease.remaining() - timing.margin
            if budget <= 0:
                raise TimeoutError("the lease could not be renewed in time")
            kept = await asyncio.wait_for(self._lease.renew(), budget)
        except LEASE_ERRORS as exc:
            if self._lease.remaining() > timing.margin:  # it still runs on the server: try again soon
                log.warning("could not renew the Telegram poller lease, trying again: %r", exc)
                return
            log.warning("could not renew the Telegram poller lease; standing by: %r", exc)
            await self._resign(release=True)
            return
        if not kept:
            log.warning("the Telegram poller lease was taken by another replica; standing by")
            await self._resign(release=False)

    async def _try_to_lead(self) -> None:
        try:
            taken = await asyncio.wait_for(self._lease.take(), self._timing.take_timeout)
        except LEASE_ERRORS as exc:
            if not self._unreachable:
                log.warning("cannot reach Redis for the Telegram poller lease; standing by: %r", exc)
            self._unreachable = True
            return
        self._unreachable = False
        if not taken:
            return
        self._leading = True
        log.info("this replica now polls Telegram")
        try:
            await self._lead()
        except Exception:
            log.exception("could not start polling Telegram; giving the lease back")
            await self._resign(release=True)

    async def _resign(self, *, release: bool) -> None:
        self._leading = False
        try:
            await self._step_down()
        except Exception:
            log.exception("could not stop polling Telegram cleanly")
        if release:
            with contextlib.suppress(*LEASE_ERRORS):
                await asyncio.wait_for(self._lease.release(), self._timing.take_timeout)
