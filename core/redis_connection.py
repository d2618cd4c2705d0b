"""Open the Redis the settings ask for: REDIS_URL when set, else the embedded one under DATA_DIR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis


@asynccontextmanager
async def open_redis(*, url: str | None, data_dir: Path) -> AsyncIterator[Redis]:
    async with AsyncExitStack() as stack:
        if url is None:
            embedded = await stack.enter_async_context(EmbeddedRedis(data_dir))
            url = embedded.url
        client: Redis = Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=10
        )
        stack.push_async_callback(client.aclose)
        yield client
