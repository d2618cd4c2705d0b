"""CountingRedis: a real Redis client that counts the pipelines it opens (round trips shared by many)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline


class CountingRedis(Redis):
    """A real client that counts the pipelines it opens."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        self.pipelines += 1
        return super().pipeline(transaction, shard_hint)
