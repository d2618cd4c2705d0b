"""ConversationStore: chat → Dify conversation in Redis, per-conversation locks, delivery de-duplication."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from core.errors import ConversationBusy, StoreUnavailable
from core.keys import RedisKeys

log = logging.getLogger(__name__)

T = TypeVar("T")

# Refresh the lease only if we still own it; delete only if we still own it.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_LEAVE = "redis.call('zrem', KEYS[1], ARGV[1]) redis.call('zrem', KEYS[2], ARGV[1]) return 0"
# KEYS: lock, queue, alive; ARGV: ticket, order ('' = now), ticket ttl ms, lease ms. Drops tickets
# whose owners stopped asking, places or refreshes ours, and takes the lock when ours is lowest.
_ENTER = """
local t = redis.call('time')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('zrangebyscore', KEYS[3], '-inf', now_ms)
for _, member in ipairs(dead) do
  redis.call('zrem', KEYS[2], member)
  redis.call('zrem', KEYS[3], member)
end
if not redis.call('zscore', KEYS[2], ARGV[1]) then
  local score = ARGV[2]
  if score == '' then
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local last = redis.call('zrange', KEYS[2], -1, -1, 'WITHSCORES')[2]
    if last and tonumber(last) >= now then now = tonumber(last) + 0.000001 end
    score = string.format('%.6f', now)
  end
  redis.call('zadd', KEYS[2], score, ARGV[1])
end
local ttl = tonumber(ARGV[3])
redis.call('zadd', KEYS[3], now_ms + ttl, ARGV[1])
redis.call('pexpire', KEYS[2], ttl)
redis.call('pexpire', KEYS[3], ttl)
if redis.call('zrange', KEYS[2], 0, 0)[1] == ARGV[1]
   and redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[4]) then
  redis.call('zrem', KEYS[2], ARGV[1])
  redis.call('zrem', KEYS[3], ARGV[1])
  return 1
end
return 0
"""
MIN_POLL = 0.01  # seconds between a waiting ticket's first tries; doubles up to MAX_POLL
MAX_POLL = 0.1

# Called (in the caller's context) once a new lock has its place in line: a front door that keeps
# its own arrival order can let the next update go from there.
on_queued: ContextVar[Callable[[], None] | None] = ContextVar("on_queued", default=None)


@dataclass(frozen=True, slots=True)
class ChatKey:
    """Where a conversation lives. `user` is the Dify user a *new* conversation is created with."""

    platform: str
    scope: str
    user: str


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    user: str


def app_fingerprint(*, base_url: str, api_key: str) -> str:
    """A short, non-reversible id of the Dify app, so a new key or app never reuses foreign ids."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()[:12]


def _decode(raw: str | bytes) -> Conversation | None:
    try:
        data = json.loads(raw)
        return Conversation(conversation_id=str(data["conversation_id"]), user=str(data["user"]))
    except (ValueError, KeyError, TypeError):
        return None


async def guard_store(operation: Awaitable[T]) -> T:
    try:
        return await operation
    except (RedisError, RedisClusterException, OSError) as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


class ConversationStore:
    """All conversation state, shared by every process that uses the same Redis and prefix."""

    def __init__(
        self,
        redis: Redis,
        *,
        app: str,
        ttl: int,
        prefix: str = "difybots",
        lock_lease: float = 30.0,
        ticket_ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.keys = RedisKeys(prefix=prefix, app=app)
        self._ttl = ttl
        self._lease = lock_lease
        self._ticket_ttl = ticket_ttl
        self._clock = clock
        self._local: dict[str, _LocalQueue] = {}
        # Sent by digest (EVALSHA), loaded again by redis-py when a restarted server has forgotten them.
        self._renew_script = redis.register_script(_RENEW)
        self._release_script = redis.register_script(_RELEASE)
        self._leave_script = redis.register_script(_LEAVE)
        self._enter_script = redis.register_script(_ENTER)

    @property
    def redis(self) -> Redis:
        return self._redis

    def key(self, chat: ChatKey) -> str:
        return self.keys.conversation(chat)

    async def ping(self) -> None:
        await guard_store(self._redis.ping())

    async def get(self, chat: ChatKey) -> Conversation | None:
        """The stored conversation, sliding its TTL."""
        key = self.key(chat)
        raw = await guard_store(self._redis.getex(key, ex=self._ttl) if self._ttl else self._redis.get(key))
        if raw is None:
            return None
        conversation = _decode(raw)
        if conversation is None:
            log.warning("dropping unreadable conversation record at %s", key)
            await guard_store(self._redis.delete(key))
        return conversation

    async def save(self, chat: ChatKey, conversation: Conversation) -> None:
        value = json.dumps({"conversation_id": conversation.conversation_id, "user": conversation.user})
        await guard_store(self._redis.set(self.key(chat), value, ex=self._ttl or None))

    async def reset(self, chat: ChatKey) -> Conversation | None:
        """Forget the chat's conversation; returns what was stored."""
        key = self.key(chat)
        raw = await guard_store(self._redis.getdel(key))
        return None if raw is None else _decode(raw)

    async def move(self, old: ChatKey, new: ChatKey) -> bool:
        """Carry the conversation of `old` over to `new` (a group that became a supergroup), keeping its
        Dify user and TTL; a conversation `new` already has is kept. True when one was moved."""
        source, target = self.key(old), self.key(new)
        raw = await guard_store(self._redis.get(source))
        if raw is None:
            return False
        moved = await guard_store(self._redis.set(target, raw, nx=True, ex=self._ttl or None))
        await guard_store(self._redis.delete(source))
        return bool(moved)

    async def first_delivery(self, platform: str, delivery_id: str, *, ttl: int = 3600) -> bool:
        """True the first time a platform delivery id is seen (across processes), False for repeats."""
        key = self.keys.delivery(platform, delivery_id)
        return bool(await guard_store(self._redis.set(key, "1", nx=True, ex=ttl)))

    async def generation(self, name: str) -> int:
        raw = await guard_store(self._redis.get(self.keys.generation(name)))
        return int(raw) if raw is not None else 0

    async def bump_generation(self, name: str) -> int:
        """Start every conversation under `name` over (e.g. every thread of a Slack channel)."""
        return int(await guard_store(self._redis.incr(self.keys.generation(name))))

    async def set_flag(self, name: str, *, ttl: int | None = None) -> None:
        """Remember a small fact (e.g. "this DM thread was started by a mention") for the conversation TTL."""
        expiry = ttl if ttl is not None else (self._ttl or None)
        await guard_store(self._redis.set(self.keys.flag(name), "1", ex=expiry))

    async def has_flag(self, name: str) -> bool:
        return bool(await guard_store(self._redis.exists(self.keys.flag(name))))

    def lock(self, chat: ChatKey, *, wait: float, order: float | None = None) -> ConversationLock:
        """One answer at a time per conversation, in `order` (the platform's number) across processes.

        The place in this process's line is taken now, before any await; then `on_queued` is called.
        """
        key = self.keys.lock(chat)
        local = self._local.get(key)
        if local is None:
            local = self._local[key] = _LocalQueue()
        return ConversationLock(self, chat=chat, local=local, wait=wait, order=order)

    def _drop_local(self, key: str, local: _LocalQueue) -> None:
        if not local.waiting and self._local.get(key) is local:
            del self._local[key]


class _LocalQueue:
    """This process's waiters for one conversation, FIFO; a place is taken synchronously."""

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> asyncio.Future[None]:
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.waiting:
            place.set_result(None)
        self.waiting.append(place)
        return place

    def leave(self, place: asyncio.Future[None]) -> None:
        was_head = bool(self.waiting) and self.waiting[0] is place
        with contextlib.suppress(ValueError):
            self.waiting.remove(place)
        if was_head and self.waiting and not self.waiting[0].done():
            self.waiting[0].set_result(None)


class ConversationLock:
    """`async with store.lock(chat, wait=...)`, or `acquire(until=...)` / `release()` to show a wait.

    In this process waiters line up FIFO; the head holds a ticket in Redis scored by `order`, and the
    lock goes to the lowest live ticket, so replicas answer a conversation in the order it was sent.
    """

    def __init__(
        self, store: ConversationStore, *, chat: ChatKey, local: _LocalQueue, wait: float, order: float | None
    ) -> None:
        self._store = store
        self._key = store.keys.lock(chat)
        self._queue = store.keys.queue(chat)
        self._alive = store.keys.queue_alive(chat)
        self._local = local
        self._order = "" if order is None else str(order)
        self._token = secrets.token_hex(16)
        self._deadline = store._clock() + wait
        self._place = local.take()
        self._pause = MIN_POLL
        self._ticket = False  # a ticket of ours may be waiting in Redis
        self._released = False
        self.held = False
        self._renewer: asyncio.Task[None] | None = None
        hook = on_queued.get()
        if hook is not None:
            hook()

    async def __aenter__(self) -> ConversationLock:
        await self.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()

    async def acquire(self, *, until: float | None = None) -> bool:
        """Wait for this answer's turn: False if `until` (clock) comes first, ConversationBusy past the wait."""
        if self.held:
            return True
        try:
            if not await self._wait_local(until):
                return False
            while not await self._enter():
                if not await self._pause_until(until):
                    return False
        except BaseException:
            await self.release()
            raise
        self.held = True
        self._renewer = asyncio.create_task(self._renew(), name=f"renew {self._key}")
        return True

    async def release(self) -> None:
        """Give the turn to the next ticket (or withdraw ours); safe to call more than once."""
        if self._released:
            return
        self._released = True
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        try:
            if self.held:
                await guard_store(self._store._release_script(keys=[self._key], args=[self._token]))
            elif self._ticket:
                await guard_store(self._store._leave_script(keys=[self._queue, self._alive], args=[self._token]))
        except StoreUnavailable:
            log.warning("could not release %s; it expires by itself", self._key)
        finally:
            self.held = False
            self._local.leave(self._place)
            self._store._drop_local(self._key, self._local)

    def _limit(self, until: float | None) -> tuple[float, bool]:
        """Seconds left to wait now, and whether running out of them means the wait limit."""
        if until is None or self._deadline <= until:
            return self._deadline - self._store._clock(), True
        return until - self._store._clock(), False

    async def _wait_local(self, until: float | None) -> bool:
        if self._place.done():
            return True
        left, final = self._limit(until)
        try:
            await asyncio.wait_for(asyncio.shield(self._place), timeout=max(left, 0.0))
        except TimeoutError:
            if final:
                raise ConversationBusy("another answer in this chat is still running") from None
            return False
        return True

    async def _pause_until(self, until: float | None) -> bool:
        left, final = self._limit(until)
        if left <= 0:
            if final:
                raise ConversationBusy("another answer in this chat is still running")
            return False
        await asyncio.sleep(min(self._pause, left))
        self._pause = min(self._pause * 2, MAX_POLL)
        return True

    async def _enter(self) -> bool:
        """Place or refresh our ticket and take the lock if it is our turn: one round trip."""
        store = self._store
        self._ticket = True
        granted: Any = await guard_store(
            store._enter_script(
                keys=[self._key, self._queue, self._alive],
                args=[self._token, self._order, int(store._ticket_ttl * 1000), int(store._lease * 1000)],
            )
        )
        self._ticket = not granted
        return bool(granted)

    async def _renew(self) -> None:
        lease_ms = int(self._store._lease * 1000)
        # A cancellation swallowed inside redis-py's wait_for (Python 3.11) must not keep release() waiting.
        while not self._released:
            await asyncio.sleep(self._store._lease / 3)
            try:
                owned = await guard_store(self._store._renew_script(keys=[self._key], args=[self._token, lease_ms]))
            except StoreUnavailable:
                log.warning("could not renew %s", self._key)
                continue
            if not owned:
                log.warning("lost %s while answering", self._key)
                return
