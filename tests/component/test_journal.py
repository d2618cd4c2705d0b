"""The answer journal against real Redis: entries, leases, orphans claimed exactly once, Redis down."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.answer import TaskStarted, TextDelta
from core.conversations import ChatKey
from core.journal import Journal, JournalEntry
from core.keys import RedisKeys
from tests.fakes.counting_redis import CountingRedis

CHAT = ChatKey(platform="telegram", scope="tg:1:42", user="tg-7")
ORIGIN = {"message": {"message_id": 5, "chat": {"id": 42, "type": "private"}}, "query": "héllo"}


def journal(redis: Redis, prefix: str, *, lease: float = 5.0, owner: str | None = None) -> Journal:
    return Journal(redis, keys=RedisKeys(prefix=prefix, app="testapp"), lease=lease, owner=owner)


async def settle(writer_journal: Journal) -> None:
    """Let the background writes land."""
    for _ in range(10):
        await asyncio.sleep(0.01)


async def events() -> AsyncIterator[TaskStarted | TextDelta]:
    yield TaskStarted(task_id="task-1")
    yield TextDelta(text="Hello")


async def test_an_answer_is_journaled_until_its_final_frame(redis: Redis, key_prefix: str) -> None:
    dead = journal(redis, key_prefix, lease=0.2, owner="dead")
    await dead.start()
    writer = dead.open(chat=CHAT, origin=ORIGIN)
    await writer.begin()
    writer.frame(0, 101, "Thinking…", True)
    seen = [event async for event in writer.watch(events(), lambda: "tg-7-stored")]
    assert [type(event) for event in seen] == [TaskStarted, TextDelta]
    writer.frame(0, 101, "Hello", False)
    writer.frame(1, 102, "more", False)
    await settle(dead)
    await dead.close()  # the replica is gone: its lease with it

    claimer = journal(redis, key_prefix, owner="alive")
    [entry] = await claimer.claim_orphans(platforms={"telegram"})
    assert entry == JournalEntry(
        answer_id=writer.answer_id,
        owner="dead",
        chat=CHAT,
        origin=ORIGIN,
        task_id="task-1",
        dify_user="tg-7-stored",
        messages=entry.messages,
    )
    assert [(m.handle, m.markdown, m.text) for m in entry.messages] == [(101, "Hello", True), (102, "more", True)]
    await claimer.clear(entry.answer_id)
    assert await claimer.claim_orphans(platforms={"telegram"}) == []
    assert [key async for key in redis.scan_iter(match=f"{key_prefix}:*")] == []


async def test_a_finished_answer_leaves_nothing(redis: Redis, key_prefix: str) -> None:
    owner = journal(redis, key_prefix)
    await owner.start()
    writer = owner.open(chat=CHAT, origin=ORIGIN)
    await writer.begin()
    writer.frame(0, 101, "Hello", False)
    await settle(owner)
    assert await redis.scard(owner.keys.journal_index()) == 1
    writer.frame(0, 101, "Hello world", True)
    await writer.close()
    await owner.close()
    assert [key async for key in redis.scan_iter(match=f"{key_prefix}:*")] == []


async def test_frames_of_many_answers_share_one_round_trip(redis_url: str, key_prefix: str) -> None:
    client = CountingRedis.from_url(redis_url, decode_responses=True)
    try:
        owner = journal(client, key_prefix)
        writers = [owner.open(chat=CHAT, origin={"query": f"q{n}"}) for n in range(30)]
        for writer in writers:
            await writer.begin()
        client.pipelines = 0
        for n, writer in enumerate(writers):
            writer.frame(0, 100 + n, f"Hello {n}", False)
        await settle(owner)
        assert client.pipelines == 1
        for n, writer in enumerate(writers):
            assert json.loads(await client.hget(owner.keys.journal_entry(writer.answer_id), "m0")) == [
                100 + n,
                f"Hello {n}",
                False,
            ]
        for writer in writers:
            writer.frame(0, 1, "the end", True)
            await writer.close()  # a write on its way lands before the entry goes, never after
        await settle(owner)
        assert [key async for key in client.scan_iter(match=f"{key_prefix}:*")] == []
    finally:
        await client.aclose()


async def test_a_live_owner_keeps_its_answers(redis: Redis, key_prefix: str) -> None:
    owner = journal(redis, key_prefix, lease=0.3)
    await owner.start()
    try:
        await owner.open(chat=CHAT, origin=ORIGIN).begin()
        await settle(owner)
        await asyncio.sleep(0.5)  # longer than the lease: only renewal keeps it
        assert await journal(redis, key_prefix).claim_orphans(platforms={"telegram"}) == []
        assert await owner.claim_orphans(platforms={"telegram"}) == []  # never its own
    finally:
        await owner.close()


async def test_an_expired_lease_makes_orphans_claimed_exactly_once(redis: Redis, key_prefix: str) -> None:
    dead = journal(redis, key_prefix, lease=0.5)
    await dead.start()
    assert dead._renewer is not None
    dead._renewer.cancel()  # the process froze: no more renewals
    writers = [dead.open(chat=CHAT, origin={"query": f"q{i}"}) for i in range(5)]
    for writer in writers:
        await writer.begin()
    await settle(dead)
    claimers = [journal(redis, key_prefix) for _ in range(4)]
    for claimer in claimers:
        await claimer.start()
    assert await claimers[0].claim_orphans(platforms={"telegram"}) == []  # the lease is still there
    await asyncio.sleep(0.5)
    results = await asyncio.gather(*(claimer.claim_orphans(platforms={"telegram"}) for claimer in claimers))
    claimed = sorted(entry.answer_id for entries in results for entry in entries)
    assert claimed == sorted(writer.answer_id for writer in writers)
    assert len(set(claimed)) == len(claimed)
    # The claimers die before finishing (their leases go): the next replica takes over.
    for claimer in claimers:
        await claimer.close()
    again = await journal(redis, key_prefix).claim_orphans(platforms={"telegram"})
    assert sorted(entry.answer_id for entry in again) == claimed


async def test_orphans_of_a_platform_without_a_door_stay_for_another_replica(redis: Redis, key_prefix: str) -> None:
    dead = journal(redis, key_prefix, lease=0.1)
    await dead.open(
        chat=ChatKey(platform="slack", scope="slack:T:C:g0", user="slack-T-U"), origin={"query": "q"}
    ).begin()
    await settle(dead)
    await asyncio.sleep(0.15)
    assert await journal(redis, key_prefix).claim_orphans(platforms={"telegram"}) == []
    [entry] = await journal(redis, key_prefix).claim_orphans(platforms={"slack"})
    assert entry.chat.platform == "slack" and not entry.started and entry.messages == ()


async def test_redis_down_never_fails_the_answer(key_prefix: str) -> None:
    broken: Redis = Redis(host="127.0.0.1", port=1, decode_responses=True, retry=Retry(NoBackoff(), 0))
    try:
        owner = journal(broken, key_prefix)
        await owner.start()  # logs, does not raise
        writer = owner.open(chat=CHAT, origin=ORIGIN)
        await writer.begin()  # fails quietly: this answer is not journaled
        writer.frame(0, 1, "text", False)
        assert [event async for event in writer.watch(events(), lambda: "u")]
        await settle(owner)
        writer.frame(0, 1, "text", True)
        await writer.close()
        await owner.close()
        with pytest.raises(RedisError):
            await owner.claim_orphans(platforms={"telegram"})
    finally:
        await broken.aclose()


async def test_close_returns_even_when_a_renewal_swallows_its_cancellation(redis: Redis, key_prefix: str) -> None:
    owner = journal(redis, key_prefix, lease=0.03)
    await owner.start()

    async def swallowing() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # as Python 3.11's wait_for may, inside redis-py
            await asyncio.sleep(1.0)

    async def ending() -> None:
        raise asyncio.CancelledError

    owner._renew_once = swallowing  # type: ignore[method-assign]
    await asyncio.sleep(0.05)  # the renewer is inside a renewal now
    closing = asyncio.create_task(owner.close())
    done, _ = await asyncio.wait({closing}, timeout=0.5)
    if closing not in done:
        owner._renew_once = ending  # type: ignore[method-assign]  # let the test end either way
        await closing
        pytest.fail("close() kept waiting for a renewer whose cancellation was swallowed")
