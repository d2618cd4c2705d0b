"""Open the Redis the settings ask for: REDIS_URL when set, else the embedded one under DATA_DIR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from redis.asyncio import BlockingConnectionPool, Redis

from core.embedded_redis import EmbeddedRedis

MAX_CONNECTIONS = 200


@asynccontextmanager
async def open_redis(*, url: str | None, data_dir: Path) -> AsyncIterator[Redis]:
    async with AsyncExitStack() as stack:
        if url is None:
            embedded = await stack.enter_async_context(EmbeddedRedis(data_dir))
            url = embedded.url
        # A blocking pool: a burst of answers waits a moment for a connection instead of failing with
        # "Too many connections" (redis-py's default pool raises once 100 are in use).
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            max_connections=MAX_CONNECTIONS,
            timeout=10,
        )
        client: Redis = Redis.from_pool(pool)  # closing the client closes the pool too
        stack.push_async_callback(client.aclose)
        yield client
