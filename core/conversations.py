"""ConversationStore: chat → Dify conversation in Redis, per-conversation locks, delivery de-duplication."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import ConversationBusy, StoreUnavailable
from core.keys import RedisKeys

log = logging.getLogger(__name__)

T = TypeVar("T")

# Refresh the lease only if we still own it; delete only if we still own it.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


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


async def _guard(operation: Awaitable[T]) -> T:
    try:
        return await operation
    except (RedisError, OSError) as exc:
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.keys = RedisKeys(prefix=prefix, app=app)
        self._ttl = ttl
        self._lease = lock_lease
        self._clock = clock
        self._local: dict[str, _LocalQueue] = {}

    @property
    def redis(self) -> Redis:
        return self._redis

    def key(self, chat: ChatKey) -> str:
        return self.keys.conversation(chat)

    async def ping(self) -> None:
        await _guard(self._redis.ping())

    async def get(self, chat: ChatKey) -> Conversation | None:
        """The stored conversation, sliding its TTL."""
        key = self.key(chat)
        raw = await _guard(self._redis.getex(key, ex=self._ttl) if self._ttl else self._redis.get(key))
        if raw is None:
            return None
        conversation = _decode(raw)
        if conversation is None:
            log.warning("dropping unreadable conversation record at %s", key)
            await _guard(self._redis.delete(key))
        return conversation

    async def save(self, chat: ChatKey, conversation: Conversation) -> None:
        value = json.dumps({"conversation_id": conversation.conversation_id, "user": conversation.user})
        await _guard(self._redis.set(self.key(chat), value, ex=self._ttl or None))

    async def reset(self, chat: ChatKey) -> Conversation | None:
        """Forget the chat's conversation; returns what was stored."""
        key = self.key(chat)
        raw = await _guard(self._redis.getdel(key))
        return None if raw is None else _decode(raw)

    async def first_delivery(self, platform: str, delivery_id: str, *, ttl: int = 3600) -> bool:
        """True the first time a platform delivery id is seen (across processes), False for repeats."""
        key = self.keys.delivery(platform, delivery_id)
        return bool(await _guard(self._redis.set(key, "1", nx=True, ex=ttl)))

    async def generation(self, name: str) -> int:
        raw = await _guard(self._redis.get(self.keys.generation(name)))
        return int(raw) if raw is not None else 0

    async def bump_generation(self, name: str) -> int:
        """Start every conversation under `name` over (e.g. every thread of a Slack channel)."""
        return int(await _guard(self._redis.incr(self.keys.generation(name))))

    async def set_flag(self, name: str, *, ttl: int | None = None) -> None:
        """Remember a small fact (e.g. "this DM thread was started by a mention") for the conversation TTL."""
        expiry = ttl if ttl is not None else (self._ttl or None)
        await _guard(self._redis.set(self.keys.flag(name), "1", ex=expiry))

    async def has_flag(self, name: str) -> bool:
        return bool(await _guard(self._redis.exists(self.keys.flag(name))))

    def lock(self, chat: ChatKey, *, wait: float) -> ConversationLock:
        """One answer at a time per conversation: FIFO within a process, exclusive across processes."""
        key = self.keys.lock(chat)
        local = self._local.get(key)
        if local is None:
            local = self._local[key] = _LocalQueue()
        return ConversationLock(self, key=key, local=local, wait=wait)

    def _drop_local(self, key: str, local: _LocalQueue) -> None:
        if local.users == 0 and self._local.get(key) is local:
            del self._local[key]


class _LocalQueue:
    """An asyncio.Lock (FIFO) plus a count of its users, so idle keys can be forgotten."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ConversationLock:
    """`async with store.lock(chat, wait=...)`: raises ConversationBusy after `wait` seconds."""

    def __init__(self, store: ConversationStore, *, key: str, local: _LocalQueue, wait: float) -> None:
        self._store = store
        self._key = key
        self._local = local
        self._wait = wait
        self._token = secrets.token_hex(16)
        self._renewer: asyncio.Task[None] | None = None
        local.users += 1  # counted from creation, so the queue exists before the first await

    async def __aenter__(self) -> ConversationLock:
        deadline = self._store._clock() + self._wait
        try:
            await asyncio.wait_for(self._local.lock.acquire(), timeout=max(self._wait, 0.001))
        except TimeoutError:
            self._leave()
            raise ConversationBusy("another answer in this chat is still running") from None
        try:
            await self._acquire_remote(deadline)
        except BaseException:
            self._local.lock.release()
            self._leave()
            raise
        self._renewer = asyncio.create_task(self._renew(), name=f"renew {self._key}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        try:
            await _guard(self._store.redis.eval(_RELEASE, 1, self._key, self._token))
        except StoreUnavailable:
            log.warning("could not release %s; it expires by itself", self._key)
        finally:
            self._local.lock.release()
            self._leave()

    def _leave(self) -> None:
        self._local.users -= 1
        self._store._drop_local(self._key, self._local)

    async def _acquire_remote(self, deadline: float) -> None:
        lease_ms = int(self._store._lease * 1000)
        pause = 0.01
        while True:
            acquired: Any = await _guard(self._store.redis.set(self._key, self._token, nx=True, px=lease_ms))
            if acquired:
                return
            if self._store._clock() >= deadline:
                raise ConversationBusy("another answer in this chat is still running")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def _renew(self) -> None:
        lease_ms = int(self._store._lease * 1000)
        while True:
            await asyncio.sleep(self._store._lease / 3)
            try:
                owned = await _guard(self._store.redis.eval(_RENEW, 1, self._key, self._token, lease_ms))
            except StoreUnavailable:
                log.warning("could not renew %s", self._key)
                continue
            if not owned:
                log.warning("lost %s while answering", self._key)
                return
