"""Open the Redis the settings ask for: REDIS_URL when set, else the embedded one under DATA_DIR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from core.embedded_redis import EmbeddedRedis
from core.errors import StartupError

MAX_CONNECTIONS = 200


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@asynccontextmanager
async def open_redis(*, url: str | None, data_dir: Path) -> AsyncIterator[Redis]:
    """A connected client; StartupError (one readable sentence) when Redis cannot be reached at all."""
    async with AsyncExitStack() as stack:
        configured = url
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
        if configured is not None:
            try:
                await client.ping()
            except (RedisError, OSError) as exc:
                raise StartupError(
                    f"cannot reach Redis at REDIS_URL {describe_url(configured)} ({_reason(exc)}); "
                    "check that Redis is running and REDIS_URL is right"
                ) from None
        yield client


def _reason(error: BaseException) -> str:
    text = str(error).lower()
    if "refused" in text or "error 111 " in text or isinstance(error.__context__, ConnectionRefusedError):
        return "connection refused"
    if "timeout" in text or "timed out" in text:
        return "no answer in time"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "unknown host"
    if "auth" in text or "password" in text:
        return "the password was refused"
    return type(error).__name__.removesuffix("Error").lower() + " error"
