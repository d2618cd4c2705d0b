"""QuickBlockingPool on a real Redis: idle connections come and go on the short path, a burst past the cap
queues for released ones (handed over first come first served, or a clear error after the pool timeout),
and a connection the server dropped is made anew before it is used."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis_clients import server_client
from core.redis_pool import QuickBlockingPool, QuickSend


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = server_client(redis_url, max_connections=3)
    try:
        yield redis
    finally:
        await redis.aclose()


def pool_of(redis: Redis) -> QuickBlockingPool:
    pool = redis.connection_pool
    assert isinstance(pool, QuickBlockingPool)
    return pool


async def test_one_caller_after_another_reuses_one_connection(client: Redis, key_prefix: str) -> None:
    pool = pool_of(client)
    for n in range(20):
        await client.set(f"{key_prefix}:k", n)
    assert await client.get(f"{key_prefix}:k") == "19"
    assert len(pool._available_connections) == 1 and not pool._in_use_connections
    assert not pool._condition.locked()  # the short path never took the pool's lock


async def test_a_burst_past_the_cap_waits_for_released_connections(client: Redis, key_prefix: str) -> None:
    pool = pool_of(client)
    results = await asyncio.wait_for(asyncio.gather(*(client.incr(f"{key_prefix}:n") for _ in range(200))), 10)
    assert sorted(results) == list(range(1, 201))
    assert len(pool._available_connections) == 3 and not pool._in_use_connections and pool.waiting == 0
    assert not pool._condition.locked()  # the burst queued without redis-py's condition


async def test_a_release_hands_the_connection_to_the_first_waiting_caller(client: Redis) -> None:
    pool = pool_of(client)
    held = [await pool.get_connection() for _ in range(3)]
    first = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done() and pool.waiting == 2
    released = held.pop()
    await pool.release(released)
    handed = await asyncio.wait_for(first, 1)  # not the pool's 10 s timeout
    assert handed is released and not second.done()
    await pool.release(held.pop())
    held.append(await asyncio.wait_for(second, 1))
    for connection in (*held, handed):
        await pool.release(connection)
    assert pool.waiting == 0 and len(pool._available_connections) == 3 and not pool._in_use_connections


async def test_a_caller_past_the_cap_gets_a_clear_error_after_the_pool_timeout(redis_url: str) -> None:
    redis = server_client(redis_url, max_connections=1)
    pool = pool_of(redis)
    pool.timeout = 0.05
    try:
        held = await pool.get_connection()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await pool.get_connection()
        await pool.release(held)  # the timed-out caller is skipped: the connection goes back to the pool
        assert pool._available_connections == [held] and not pool._in_use_connections and pool.waiting == 0
    finally:
        await redis.aclose()


async def test_a_cancelled_caller_handed_a_connection_passes_it_on(redis_url: str) -> None:
    redis = server_client(redis_url, max_connections=1)
    pool = pool_of(redis)
    try:
        held = await pool.get_connection()
        cancelled = asyncio.create_task(pool.get_connection())
        later = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        await pool.release(held)  # handed to `cancelled`, which is cancelled before it runs again
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await asyncio.wait_for(later, 1) is held
        await pool.release(held)
        assert pool._available_connections == [held] and not pool._in_use_connections
    finally:
        await redis.aclose()


async def test_a_connection_the_server_dropped_is_made_anew(client: Redis, key_prefix: str) -> None:
    await client.set(f"{key_prefix}:k", "v")
    (idle,) = pool_of(client)._available_connections
    await client.execute_command("CLIENT", "KILL", "ID", await client.client_id())
    assert await client.get(f"{key_prefix}:k") == "v"  # reconnected (or retried) without an error
    assert pool_of(client)._available_connections == [idle] and idle.is_connected


async def test_new_connections_do_not_read_the_package_metadata(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: lookups.append(name) or real_version(name))
    redis = server_client(redis_url, max_connections=20)
    try:
        await asyncio.gather(*(redis.incr(f"{key_prefix}:n") for _ in range(100)))  # the burst fills the pool
        assert len(redis.connection_pool._available_connections) == 20  # type: ignore[attr-defined]
    finally:
        await redis.aclose()
    assert lookups == []


async def test_commands_skip_the_timed_write_unless_the_socket_is_full(
    client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed: list[float] = []
    real_wait_for = asyncio.wait_for

    async def counting_wait_for(awaitable: Any, timeout: float | None) -> Any:
        timed.append(timeout or 0.0)
        return await real_wait_for(awaitable, timeout)

    monkeypatch.setattr(asyncio, "wait_for", counting_wait_for)
    for n in range(20):
        await client.set(f"{key_prefix}:k", n)
    assert timed == []  # small commands: written at once, no task and timer per command
    big = "x" * (16 * 1024 * 1024)  # more than the socket buffers take at once
    await client.set(f"{key_prefix}:big", big)
    assert timed  # the rest drained under redis-py's socket timeout
    assert await client.strlen(f"{key_prefix}:big") == len(big)
    assert isinstance(pool_of(client)._available_connections[0], QuickSend)


async def test_a_caller_on_redis_pys_own_path_is_woken_after_maintenance_ends(redis_url: str) -> None:
    redis = server_client(redis_url, max_connections=1)
    pool = pool_of(redis)
    try:
        held = await pool.get_connection()
        pool._in_maintenance = True  # the server is reshaping the pool: new callers take redis-py's path
        waiting = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        pool._in_maintenance = False
        await pool.release(held)
        assert await asyncio.wait_for(waiting, 1) is held  # not the pool's 10 s timeout
        await pool.release(held)
        assert pool._available_connections == [held] and not pool._in_use_connections
    finally:
        await redis.aclose()
