"""SharedBudgets: platform rate budgets kept in Redis, so every replica together stays inside them."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError

from core.keys import RedisKeys

__all__ = ["Bucket", "Interval", "Rate", "SharedBudgets"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Mode = Literal["shared", "local"]

RETRY_REDIS = 5.0  # seconds a replica that lost Redis keeps to its local budgets before asking again
CALL_TIMEOUT = 1.0  # seconds a take may wait for Redis before the platform call goes ahead without it

# Both scripts read the server's clock (every replica then shares one) and answer whole milliseconds:
# Redis truncates Lua floats in replies. One hash per budget: `p` paused until, `a` last take, `b` tokens
# left (in 1/60,000,000 of a token, so a rate of per_minute tokens refills per_minute*1000 units per ms),
# `o` the replica that took last.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

TAKE = (
    _NOW
    + """
local key = KEYS[1]
local state = redis.call('HMGET', key, 'p', 'a', 'b', 'o')
local paused = tonumber(state[1]) or 0
if paused > now then
  return paused - now
end
local last = tonumber(state[2])
if last and last > now then
  last = now  -- another server's clock after a failover: wait one slot at most
end
if ARGV[1] == 'i' then
  local interval = tonumber(ARGV[2])
  local margin = tonumber(ARGV[3])
  if last then
    local gap = interval
    if state[4] ~= ARGV[5] then
      gap = gap + margin
    end
    if now < last + gap then
      return last + gap - now
    end
  end
  redis.call('HSET', key, 'a', now, 'o', ARGV[5])
  redis.call('PEXPIRE', key, interval + margin + 1000)
  return 0
end
local unit = 60000000
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3]) * unit
local need = math.min(capacity, (1 + tonumber(ARGV[4])) * unit)
local level = tonumber(state[3])
if level == nil or last == nil then
  level = capacity
else
  level = math.min(capacity, level + (now - last) * rate)
end
if level < need then
  return math.ceil((need - level) / rate)
end
level = level - unit
redis.call('HSET', key, 'b', level, 'a', now, 'o', ARGV[5])
redis.call('PEXPIRE', key, math.ceil((capacity - level) / rate) + 1000)
return 0
"""
)

PAUSE = (
    _NOW
    + """
local key = KEYS[1]
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', key, 'p')) or 0
if now + ms > current then
  redis.call('HSET', key, 'p', now + ms)
end
if redis.call('PTTL', key) < ms then
  redis.call('PEXPIRE', key, ms + 1000)
end
return 0
"""
)

FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Interval:
    """One operation per `ms` (a Telegram chat). A take right after another replica's waits `margin_ms`
    more: the platform counts arrivals, and the two calls travel on different connections."""

    ms: int
    margin_ms: int = 0


@dataclass(frozen=True, slots=True)
class Bucket:
    """`per_minute` operations with bursts up to `burst` (a Slack workspace's method)."""

    per_minute: float
    burst: int


Rate = Interval | Bucket


class SharedBudgets:
    """Atomic takes and pauses on budgets in Redis (one EVALSHA each); without Redis, every take is allowed
    (the caller's local budget still applies) and `mode` says "local" until Redis answers again."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        clock: Clock = time.monotonic,
        retry_redis: float = RETRY_REDIS,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._retry_redis = retry_redis
        self._call_timeout = call_timeout
        self._take = redis.register_script(TAKE)
        self._pause = redis.register_script(PAUSE)
        self.replica = uuid.uuid4().hex[:12]
        self.mode: Mode = "shared"
        self._local_until = float("-inf")

    async def take(self, scope: str, rate: Rate, *, reserve: int = 0) -> int:
        """Spend one operation of `scope`'s budget now (0), or say how many ms to wait (nothing spent).
        `reserve` more tokens must stay in a bucket (they are kept for frames that matter more)."""
        if isinstance(rate, Interval):
            args: list[str | int] = ["i", rate.ms, rate.margin_ms, 0, self.replica]
        else:
            args = ["b", max(1, round(rate.per_minute * 1000)), max(1, rate.burst), max(0, reserve), self.replica]
        return await self._run(self._take, scope, args)

    async def pause(self, scope: str, ms: int) -> None:
        """The platform said "retry after": no replica takes from `scope` for `ms`."""
        if ms > 0:
            await self._run(self._pause, scope, [int(ms)])

    async def _run(self, script: AsyncScript, scope: str, args: list[str | int]) -> int:
        if self.mode == "local" and self._clock() < self._local_until:
            return 0
        try:
            async with asyncio.timeout(self._call_timeout):
                result = await script(keys=[self._keys.budget(scope)], args=args)
        except FAILURES as exc:
            if self.mode == "shared":
                log.warning("rate budgets are local to this replica until Redis answers again: %s", _reason(exc))
            self.mode = "local"
            self._local_until = self._clock() + self._retry_redis
            return 0
        if self.mode == "local":
            log.info("rate budgets are shared through Redis again")
            self.mode = "shared"
        return int(result or 0)


def _reason(exc: BaseException) -> str:
    # redis-py's messages can quote the server's address and options; the type is enough here.
    return type(exc).__name__
