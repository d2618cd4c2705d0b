"""Albums: the parts of one media group, which may reach different replicas, become one question."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import StoreUnavailable
from core.keys import RedisKeys

log = logging.getLogger(__name__)

MAX_PARTS = 10  # Telegram albums hold 2-10 items
Sleep = Callable[[float], Awaitable[None]]


class AlbumCollector:
    """Collects a media group's parts in Redis; the replica that stores the first part answers for all of them.

    Each part is RPUSHed to `album(chat, group)`; `SET album_owner NX` elects the answering replica. The owner
    waits until no part has arrived for `quiet` seconds (or the album is full), then takes every part."""

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        quiet: float = 0.5,
        max_wait: float = 10.0,
        ttl: float = 120.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.quiet = quiet
        self.max_wait = max_wait
        self._ttl_ms = int(ttl * 1000)
        self._sleep = sleep

    async def add(self, chat_id: int, group_id: str, part: dict[str, Any]) -> bool:
        """Store one part; True when this call is the first of its album (its caller answers the album)."""
        parts = self._keys.album(chat_id, group_id)
        owner = self._keys.album_owner(chat_id, group_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(parts, json.dumps(part))
                pipe.pexpire(parts, self._ttl_ms)
                pipe.set(owner, "1", nx=True, px=self._ttl_ms)
                _, _, elected = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        return bool(elected)

    async def collect(self, chat_id: int, group_id: str) -> list[dict[str, Any]]:
        """Wait for the album to be quiet, then return its parts in the order they were sent."""
        parts = self._keys.album(chat_id, group_id)
        try:
            seen = int(await self._redis.llen(parts))
            waited = 0.0
            while seen < MAX_PARTS and waited < self.max_wait:
                await self._sleep(self.quiet)
                waited += self.quiet
                count = int(await self._redis.llen(parts))
                if count == seen:
                    break
                seen = count
            raw = await self._redis.lrange(parts, 0, -1)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        found: dict[int, dict[str, Any]] = {}
        for item in raw:
            try:
                part = json.loads(item)
            except ValueError:
                log.warning("dropping an unreadable album part of chat %s", chat_id)
                continue
            found.setdefault(int(part.get("message_id", 0)), part)  # a part delivered twice counts once
        return [found[key] for key in sorted(found)]
