"""ConversationStore against real Redis: keys, TTL, reset, locks, de-duplication, embedded persistence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core.conversations import ChatKey, Conversation, ConversationStore
from core.errors import ConversationBusy, StoreUnavailable
from core.redis_connection import open_redis

CHAT = ChatKey(platform="telegram", scope="tg:1:42", user="tg-7")


async def test_save_get_reset_roundtrip(store: ConversationStore, key_prefix: str) -> None:
    assert await store.get(CHAT) is None
    await store.save(CHAT, Conversation(conversation_id="c-1", user="tg-7"))
    assert store.key(CHAT) == f"{key_prefix}:conv:testapp:telegram:tg:1:42"
    assert await store.get(CHAT) == Conversation(conversation_id="c-1", user="tg-7")
    assert await store.reset(CHAT) == Conversation(conversation_id="c-1", user="tg-7")
    assert await store.get(CHAT) is None
    assert await store.reset(CHAT) is None


async def test_ttl_slides_on_use(redis: Redis, key_prefix: str) -> None:
    store = ConversationStore(redis, app="a", ttl=100, prefix=key_prefix)
    await store.save(CHAT, Conversation(conversation_id="c", user="u"))
    await redis.expire(store.key(CHAT), 5)
    await store.get(CHAT)
    assert 95 <= await redis.ttl(store.key(CHAT)) <= 100


async def test_ttl_zero_keeps_forever(redis: Redis, key_prefix: str) -> None:
    store = ConversationStore(redis, app="a", ttl=0, prefix=key_prefix)
    await store.save(CHAT, Conversation(conversation_id="c", user="u"))
    await store.get(CHAT)
    assert await redis.ttl(store.key(CHAT)) == -1


async def test_different_apps_never_share_conversations(redis: Redis, key_prefix: str) -> None:
    one = ConversationStore(redis, app="app1", ttl=60, prefix=key_prefix)
    two = ConversationStore(redis, app="app2", ttl=60, prefix=key_prefix)
    await one.save(CHAT, Conversation(conversation_id="c", user="u"))
    assert await two.get(CHAT) is None


async def test_unreadable_record_is_dropped(store: ConversationStore, redis: Redis) -> None:
    await redis.set(store.key(CHAT), "not json")
    assert await store.get(CHAT) is None
    assert await redis.exists(store.key(CHAT)) == 0


async def test_first_delivery_is_true_once(store: ConversationStore) -> None:
    assert await store.first_delivery("telegram", "100") is True
    assert await store.first_delivery("telegram", "100") is False
    assert await store.first_delivery("slack", "100") is True


async def test_generation_bumps(store: ConversationStore) -> None:
    assert await store.generation("slack:T1:C1") == 0
    assert await store.bump_generation("slack:T1:C1") == 1
    assert await store.generation("slack:T1:C1") == 1


async def test_lock_serializes_in_arrival_order(store: ConversationStore) -> None:
    order: list[str] = []

    async def worker(name: str, hold: float) -> None:
        async with store.lock(CHAT, wait=5):
            order.append(f"{name}+")
            await asyncio.sleep(hold)
            order.append(f"{name}-")

    await asyncio.gather(worker("a", 0.05), worker("b", 0.0), worker("c", 0.0))
    assert order == ["a+", "a-", "b+", "b-", "c+", "c-"]


async def test_lock_excludes_other_processes(redis_url: str, key_prefix: str) -> None:
    # Two stores on two connections stand for two processes.
    first_redis = Redis.from_url(redis_url, decode_responses=True)
    second_redis = Redis.from_url(redis_url, decode_responses=True)
    first = ConversationStore(first_redis, app="a", ttl=60, prefix=key_prefix, lock_lease=5)
    second = ConversationStore(second_redis, app="a", ttl=60, prefix=key_prefix, lock_lease=5)
    try:
        async with first.lock(CHAT, wait=1):
            with pytest.raises(ConversationBusy):
                async with second.lock(CHAT, wait=0.2):
                    pass
        async with second.lock(CHAT, wait=1):
            pass
    finally:
        await first_redis.aclose()
        await second_redis.aclose()


async def test_lock_is_renewed_while_held(redis: Redis, key_prefix: str) -> None:
    store = ConversationStore(redis, app="a", ttl=60, prefix=key_prefix, lock_lease=0.3)
    async with store.lock(CHAT, wait=1):
        await asyncio.sleep(0.6)  # two leases long: only renewal keeps it
        keys = [key async for key in redis.scan_iter(match=store.keys.lock(CHAT))]
        assert len(keys) == 1
    assert [key async for key in redis.scan_iter(match=store.keys.lock(CHAT))] == []


async def test_release_never_deletes_someone_elses_lock(redis: Redis, key_prefix: str) -> None:
    store = ConversationStore(redis, app="a", ttl=60, prefix=key_prefix, lock_lease=5)
    lock = store.lock(CHAT, wait=1)
    async with lock:
        lock_key = store.keys.lock(CHAT)
        await redis.set(lock_key, "someone-else", ex=60)  # our lease expired and another process took it
    assert await redis.get(lock_key) == "someone-else"


async def test_redis_outage_raises_store_unavailable(key_prefix: str) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    store = ConversationStore(dead, app="a", ttl=60, prefix=key_prefix)
    try:
        with pytest.raises(StoreUnavailable):
            await store.get(CHAT)
        with pytest.raises(StoreUnavailable):
            async with store.lock(CHAT, wait=1):
                pass
    finally:
        await dead.aclose()


async def test_embedded_redis_survives_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with open_redis(url=None, data_dir=data_dir) as redis:
        store = ConversationStore(redis, app="a", ttl=0, prefix="p")
        await store.save(CHAT, Conversation(conversation_id="kept", user="u"))
    assert (data_dir / "dify-bots.rdb").exists() or any(data_dir.iterdir())
    async with open_redis(url=None, data_dir=data_dir) as redis:
        store = ConversationStore(redis, app="a", ttl=0, prefix="p")
        assert await store.get(CHAT) == Conversation(conversation_id="kept", user="u")
