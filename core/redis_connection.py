"""Open the Redis the settings ask for: REDIS_URL (a server, Sentinel or Cluster), else the embedded one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import RedisClusterException, RedisError

from core.embedded_redis import EmbeddedRedis
from core.errors import StartupError
from core.redis_clients import MAX_CONNECTIONS, cluster_client, sentinel_client, server_client
from core.redis_urls import ClusterUrl, RedisUrlError, SentinelUrl, ServerUrl, describe_url, parse_redis_url

__all__ = ["MAX_CONNECTIONS", "describe_url", "open_redis"]


@asynccontextmanager
async def open_redis(*, url: str | None, data_dir: Path) -> AsyncIterator[Redis]:
    """A connected client; StartupError (one readable sentence) when Redis cannot be reached at all.

    For a Cluster the client is a RedisCluster: it has the same commands, scripts and pipelines
    (every multi-key command and script keeps to one hash tag), so callers use it as a Redis."""
    async with AsyncExitStack() as stack:
        if url is None:
            embedded = await stack.enter_async_context(EmbeddedRedis(data_dir))
            client = server_client(embedded.url)
            stack.push_async_callback(client.aclose)
            yield client
            return
        try:
            target = parse_redis_url(url)
        except RedisUrlError as exc:
            raise StartupError(f"REDIS_URL {exc}") from None
        try:
            client = _client(target, stack)
        except (ValueError, RedisError, RedisClusterException):  # redis-py's text may quote the URL's options
            raise StartupError(
                f"REDIS_URL {describe_url(url)} has options redis-py does not accept; check its query and database"
            ) from None
        try:
            await client.ping()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StartupError(
                f"cannot reach Redis at REDIS_URL {describe_url(url)} ({_reason(exc)}); "
                "check that Redis is running and REDIS_URL is right"
            ) from None
        yield client


def _client(target: ServerUrl | SentinelUrl | ClusterUrl, stack: AsyncExitStack) -> Redis:
    if isinstance(target, SentinelUrl):
        client, sentinel = sentinel_client(target)
        stack.push_async_callback(sentinel.aclose)
        stack.push_async_callback(client.aclose)
        return client
    if isinstance(target, ClusterUrl):
        cluster = cluster_client(target)
        stack.push_async_callback(cluster.aclose)
        return cast(Redis, cluster)
    client = server_client(target.url)
    stack.push_async_callback(client.aclose)
    return client


def _reason(error: BaseException) -> str:
    text = str(error).lower()
    if isinstance(error, MasterNotFoundError):  # its text lists what each Sentinel failed with
        if "connectionerror" in text or "timeouterror" in text or "refused" in text:
            return "no Sentinel answered"
        return "the Sentinels know no master by that service name"
    if "refused" in text or "error 111 " in text or isinstance(error.__context__, ConnectionRefusedError):
        return "connection refused"
    if "timeout" in text or "timed out" in text:
        return "no answer in time"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "unknown host"
    if "auth" in text or "password" in text:
        return "the password was refused"
    return type(error).__name__.removesuffix("Error").lower() + " error"
