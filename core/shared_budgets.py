"""SharedBudgets: platform rate budgets kept in Redis, so every replica together stays inside them."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

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
_Take = tuple[str, list[str | int], "asyncio.Future[int]"]  # budget key, script arguments, the answer


class SharedBudgets:
    """Atomic takes and pauses on budgets in Redis (one EVALSHA each; takes asked for while a round trip is
    out share the next one); without Redis, every take is allowed (the caller's local budget still applies)
    and `mode` says "local" until Redis answers again."""

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
        self._redis = redis
        self._cluster = isinstance(redis, RedisCluster)
        self._take = redis.register_script(TAKE)
        self._pause = redis.register_script(PAUSE)
        self.replica = uuid.uuid4().hex[:12]
        self.mode: Mode = "shared"
        self._local_until = float("-inf")
        self._waiting: list[_Take] = []  # takes asked for while the previous round trip was out
        self._sender: asyncio.Task[None] | None = None

    async def take(self, scope: str, rate: Rate, *, reserve: int = 0) -> int:
        """Spend one operation of `scope`'s budget now (0), or say how many ms to wait (nothing spent).
        `reserve` more tokens must stay in a bucket (they are kept for frames that matter more)."""
        if isinstance(rate, Interval):
            args: list[str | int] = ["i", rate.ms, rate.margin_ms, 0, self.replica]
        else:
            args = ["b", max(1, round(rate.per_minute * 1000)), max(1, rate.burst), max(0, reserve), self.replica]
        if self._is_local():
            return 0
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((self._keys.budget(scope), args, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_takes(), name="shared budget takes")
        return await answer

    async def _send_takes(self) -> None:
        """Send the waiting takes, one pipeline per round trip: under load, the takes of every chat asked
        for while a round trip was out go together in the next one instead of taking one each."""
        while self._waiting:
            batch, self._waiting = self._waiting, []
            results: list[int] | None = None
            try:
                if not self._is_local():
                    async with asyncio.timeout(self._call_timeout):
                        results = await self._take_all([(key, args) for key, args, _ in batch])
                    self._shared_again()
            except Exception as exc:  # Redis failures, and anything else: no caller may be left waiting
                self._go_local(exc)
            finally:
                for index, (_, _, answer) in enumerate(batch):
                    if not answer.done():  # its caller may have given up meanwhile
                        answer.set_result(results[index] if results is not None else 0)

    async def _take_all(self, takes: list[tuple[str, list[str | int]]]) -> list[int]:
        if len(takes) == 1:
            key, args = takes[0]
            return [int(await self._take(keys=[key], args=args) or 0)]
        if self._cluster:  # redis-py's cluster pipelines refuse EVALSHA
            answers = await asyncio.gather(*(self._take(keys=[key], args=args) for key, args in takes))
            return [int(answer or 0) for answer in answers]
        results = await self._pipeline(takes)
        if missing := [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]:
            # A new or failed-over server (or cluster node) does not know the script: those takes did not run.
            await self._redis.script_load(TAKE)
            for index, result in zip(missing, await self._pipeline([takes[i] for i in missing]), strict=True):
                results[index] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [int(result or 0) for result in results]

    async def _pipeline(self, takes: list[tuple[str, list[str | int]]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, args in takes:
                pipe.evalsha(self._take.sha, 1, key, *args)
            return await pipe.execute(raise_on_error=False)

    async def pause(self, scope: str, ms: int) -> None:
        """The platform said "retry after": no replica takes from `scope` for `ms`."""
        if ms > 0:
            await self._run(self._pause, scope, [int(ms)])

    async def _run(self, script: AsyncScript, scope: str, args: list[str | int]) -> int:
        if self._is_local():
            return 0
        try:
            async with asyncio.timeout(self._call_timeout):
                result = await script(keys=[self._keys.budget(scope)], args=args)
        except FAILURES as exc:
            self._go_local(exc)
            return 0
        self._shared_again()
        return int(result or 0)

    def _is_local(self) -> bool:
        return self.mode == "local" and self._clock() < self._local_until

    def _go_local(self, exc: BaseException) -> None:
        if self.mode == "shared":
            log.warning("rate budgets are local to this replica until Redis answers again: %s", _reason(exc))
        self.mode = "local"
        self._local_until = self._clock() + self._retry_redis

    def _shared_again(self) -> None:
        if self.mode == "local":
            log.info("rate budgets are shared through Redis again")
            self.mode = "shared"


def _reason(exc: BaseException) -> str:
    # redis-py's messages can quote the server's address and options; the type is enough here.
    return type(exc).__name__
