"""Build the client for each kind of REDIS_URL, with retries and a burst that waits for a connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.redis_pool import QuickBlockingPool
from core.redis_urls import ClusterUrl, SentinelUrl

MAX_CONNECTIONS = 50  # a burst of answers shares them: each new connection costs a handshake
POOL_TIMEOUT = 10.0  # seconds a command waits for a free connection before failing
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 10.0
# A command that meets a dropped connection (a restart, a failover) reconnects and runs again, backing off
# up to ~3.5 s in all. If the first try did land, repeating it is harmless here (SET, HSET, SADD, scripts
# keyed by a token) or errs on the safe side (a budget take counts twice; a SET NX finds its own key taken;
# an INCR starts a conversation generation over once more).
RETRIES = 6
RETRY_BASE = 0.05
RETRY_CAP = 1.0

T = TypeVar("T")


def retry_policy() -> Retry:
    """Backoff with jitter on ConnectionError (MasterNotFoundError included) and TimeoutError."""
    return Retry(
        ExponentialWithJitterBackoff(base=RETRY_BASE, cap=RETRY_CAP),
        RETRIES,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _driver_info() -> dict[str, Any]:
    """The client name and version sent with CLIENT SETINFO, resolved once.

    redis-py 7 and later otherwise read their version from the package metadata for every new connection
    (milliseconds each, paid again for every connection a burst adds to the pool); 6 resolves it at import."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return {}
    return {"driver_info": DriverInfo()}


_DRIVER_INFO = _driver_info()


def _connection_options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": retry_policy(),
        **_DRIVER_INFO,
    }


def server_client(url: str, *, max_connections: int = MAX_CONNECTIONS) -> Redis:
    """One server: a blocking pool, so a burst waits for a connection instead of "Too many connections"."""
    pool = QuickBlockingPool.from_url(
        url, max_connections=max_connections, timeout=POOL_TIMEOUT, **_connection_options()
    )
    return Redis.from_pool(pool)  # closing the client closes the pool too


class BlockingSentinelPool(SentinelConnectionPool, QuickBlockingPool):
    """Sentinel's master discovery with BlockingConnectionPool's waiting (redis-py's Sentinel pool raises).

    The MRO puts SentinelConnectionPool's address handling first and QuickBlockingPool's
    get_connection/release (which SentinelConnectionPool does not override) after it."""


def sentinel_client(target: SentinelUrl, *, max_connections: int = MAX_CONNECTIONS) -> tuple[Redis, Sentinel]:
    """The master of `target.service`, following failovers; close both the client and the Sentinel."""
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "decode_responses": True,
        # One try per Sentinel: discovery moves on to the next one, and the master connection retries.
        "retry": Retry(NoBackoff(), 0),
    }
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
        sentinel_options["username"] = target.sentinel_username
    if target.ssl:
        sentinel_options["ssl"] = True
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client = sentinel.master_for(
        target.service,
        connection_pool_class=BlockingSentinelPool,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT,
        **_connection_options(),
    )
    return client, sentinel


_inside: ContextVar[bool] = ContextVar("redis_cluster_bounded", default=False)


class BoundedRedisCluster(RedisCluster):
    """A RedisCluster whose commands and pipelines wait for one of `max_connections` turns.

    redis-py's cluster nodes raise MaxConnectionsError once their pool is full; a command or pipeline
    uses at most one connection per node, so bounding them bounds every node's pool."""

    def __init__(self, *, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._turns = asyncio.Semaphore(max_connections)

    async def bounded(self, run: Callable[[], Awaitable[T]]) -> T:
        if _inside.get():  # a pipeline retrying a redirected command: it already holds a turn
            return await run()
        try:
            async with asyncio.timeout(POOL_TIMEOUT):
                await self._turns.acquire()
        except TimeoutError:
            raise RedisConnectionError("No connection available.") from None  # what a full blocking pool says
        token = _inside.set(True)
        try:
            return await run()
        finally:
            _inside.reset(token)
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        run = super().execute_command
        return await self.bounded(lambda: run(*args, **kwargs))

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py with its own message
        # redis-py's own pipeline() builds ClusterPipeline the same way; its stubs call the class abstract.
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        run = super().execute
        client = cast("BoundedRedisCluster", self.cluster_client)
        return await client.bounded(lambda: run(raise_on_error, allow_redirections))


def cluster_client(target: ClusterUrl, *, max_connections: int = MAX_CONNECTIONS) -> BoundedRedisCluster:
    """A cluster client that starts from the URL's nodes and discovers the rest."""
    return BoundedRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.ssl,
        max_connections=max_connections,
        **_connection_options(),
    )
