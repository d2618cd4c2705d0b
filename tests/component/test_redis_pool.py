"""QuickBlockingPool on a real Redis: idle connections come and go on the short path, a burst past the cap
waits for a released one, and a connection the server dropped is made anew before it is used."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.redis_clients import server_client
from core.redis_pool import QuickBlockingPool


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
    assert len(pool._available_connections) == 3 and not pool._in_use_connections and pool._waiting == 0


async def test_a_release_on_the_short_path_wakes_a_waiting_caller(client: Redis) -> None:
    pool = pool_of(client)
    held = [await pool.get_connection() for _ in range(3)]
    waiting = asyncio.create_task(pool.get_connection())
    await asyncio.sleep(0.05)
    assert not waiting.done() and pool._waiting == 1
    await pool.release(held.pop())
    handed = await asyncio.wait_for(waiting, 1)  # not the pool's 10 s timeout
    for connection in (*held, handed):
        await pool.release(connection)
    assert pool._waiting == 0 and len(pool._available_connections) == 3


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
