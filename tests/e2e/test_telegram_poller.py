"""Polling mode on several replicas: one Redis lease, one getUpdates caller, a quick hand-off, no double answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bots.telegram.poller import LeaseTiming, PollerElection, PollerLease
from tests.e2e.telegram_harness import TOKEN, eventually, telegram_bot
from tests.e2e.test_journal_recovery import kill, ready
from tests.e2e.test_operations import bot_env, free_port, get, start_bot, stop_bot
from tests.fakes.dify import FakeDify
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram_polling import ReplicaTap

FAST = LeaseTiming(ttl=1.0, renew_every=0.2, retry_every=0.1, margin=0.2, take_timeout=0.2)


# ---- the lease, in one process ------------------------------------------------------------------------------


@dataclass
class Replica:
    """One election and when it led: (from, to) per term, by the loop's clock."""

    name: str
    terms: list[list[float]] = field(default_factory=list)
    election: PollerElection | None = None

    async def lead(self) -> None:
        self.terms.append([asyncio.get_running_loop().time(), float("inf")])

    async def step_down(self) -> None:
        self.terms[-1][1] = asyncio.get_running_loop().time()

    @property
    def role(self) -> str:
        assert self.election is not None
        return self.election.role


def replica(name: str, redis: Redis, key: str) -> Replica:
    result = Replica(name)
    lease = PollerLease(redis, key, ttl=FAST.ttl)
    result.election = PollerElection(lease, lead=result.lead, step_down=result.step_down, timing=FAST)
    return result


@pytest.fixture
def lease_key(key_prefix: str) -> str:
    return f"{key_prefix}:poller:telegram:1"


@pytest.fixture
async def pair(redis: Redis, lease_key: str) -> AsyncIterator[tuple[Replica, Replica]]:
    first, second = replica("first", redis, lease_key), replica("second", redis, lease_key)
    try:
        yield first, second
    finally:
        for one in (first, second):
            assert one.election is not None
            await one.election.stop()


def overlapping(a: Replica, b: Replica) -> bool:
    return any(x[0] < y[1] and y[0] < x[1] for x in a.terms for y in b.terms)


async def test_one_replica_leads_and_a_clean_stop_hands_over_at_once(pair: tuple[Replica, Replica]) -> None:
    first, second = pair
    assert first.election is not None and second.election is not None
    await first.election.start()
    await second.election.start()
    assert (first.role, second.role) == ("poller", "standby")
    await asyncio.sleep(FAST.ttl * 1.5)  # renewed past its TTL: still one poller
    assert (first.role, second.role) == ("poller", "standby") and len(first.terms) == 1

    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    await first.election.stop()
    assert first.role == "standby" and first.terms[0][1] != float("inf")
    await eventually(lambda: second.role == "poller", timeout=2)
    assert second.terms[0][0] - stopped_at < FAST.ttl / 2  # released, not left to expire
    assert not overlapping(first, second)


async def test_a_poller_whose_lease_is_taken_stops_polling_at_its_next_renewal(
    pair: tuple[Replica, Replica], redis: Redis, lease_key: str
) -> None:
    first, _ = pair
    assert first.election is not None
    await first.election.start()
    assert first.role == "poller"
    await redis.set(lease_key, "another replica", px=3000)
    await eventually(lambda: first.role == "standby", timeout=FAST.renew_every + 0.5)
    await asyncio.sleep(FAST.retry_every * 3)
    assert first.role == "standby" and len(first.terms) == 1  # it does not take what another holds
    await redis.delete(lease_key)
    await eventually(lambda: first.role == "poller", timeout=2)
    assert len(first.terms) == 2


async def test_a_poller_cut_off_from_redis_stops_before_its_lease_runs_out(
    redis_url: str, redis: Redis, lease_key: str
) -> None:
    async with TcpProxy(redis_url) as proxy:
        cut_off_client: Redis = Redis.from_url(proxy.url)
        first, second = replica("first", cut_off_client, lease_key), replica("second", redis, lease_key)
        assert first.election is not None and second.election is not None
        try:
            await first.election.start()
            await second.election.start()
            assert (first.role, second.role) == ("poller", "standby")
            await proxy.cut()
            await eventually(lambda: second.role == "poller", timeout=FAST.ttl + 2)
            assert first.role == "standby"
            assert not overlapping(first, second)  # the old poller stood down before the new one took over
            assert await redis.get(lease_key) is not None
        finally:
            await first.election.stop()
            await second.election.stop()
            await cut_off_client.aclose()


# ---- real processes -----------------------------------------------------------------------------------------


async def role(port: int) -> str:
    status, body = await get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200, body  # a standby is as ready as the poller
    detail: dict[str, str] = json.loads(body)["detail"]
    return detail["telegram"]


async def becomes(port: int, wanted: str, timeout: float) -> float:
    """Seconds until the replica on `port` reports `wanted` as its role."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (found := await role(port)) != wanted:
        if loop.time() - started > timeout:
            raise AssertionError(f"still {found!r} after {timeout}s")
        await asyncio.sleep(0.1)
    return loop.time() - started


def answered(telegram: FakeTelegram, chat_id: int, text: str) -> bool:
    return telegram.visible_texts(chat_id) == [f"echo: {text}"]


async def test_readyz_names_the_webhook_role_and_webhook_mode_takes_no_lease(
    redis_url: str, key_prefix: str, redis: Redis
) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=True) as bot:
        status, body = await get(f"http://127.0.0.1:{bot.service.port}/readyz")
        assert status == 200 and json.loads(body)["detail"]["telegram"] == "webhook"
        assert await bot.deliver(bot.telegram.message_update(chat_id=42, user_id=7, text="hi")) == 200
        assert await bot.settled() == ["echo: hi"]
        assert bot.telegram.count("getUpdates") == 0
        assert [key async for key in redis.scan_iter(match=f"{key_prefix}:poller:*")] == []


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDify, FakeTelegram, ReplicaTap, ReplicaTap]]:
    async with (
        FakeDify() as dify,
        FakeTelegram(token=TOKEN) as telegram,
        ReplicaTap(telegram.url) as tap_a,
        ReplicaTap(telegram.url) as tap_b,
    ):
        yield dify, telegram, tap_a, tap_b


async def test_two_polling_replicas_one_polls_and_the_other_takes_over_after_a_kill(
    fakes: tuple[FakeDify, FakeTelegram, ReplicaTap, ReplicaTap], redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    dify, telegram, tap_a, tap_b = fakes
    port_a, port_b = free_port(), free_port()
    a = await start_bot(
        bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port_a), TELEGRAM_API_BASE=tap_a.url), tmp_path
    )
    b = None
    try:
        await ready(port_a)
        assert await role(port_a) == "poller"
        b = await start_bot(
            bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port_b), TELEGRAM_API_BASE=tap_b.url),
            tmp_path,
        )
        await ready(port_b)
        assert await role(port_b) == "standby"

        for chat_id in (40, 41, 42):
            telegram.push_update(telegram.message_update(chat_id=chat_id, user_id=chat_id, text=f"hello {chat_id}"))
        for chat_id in (40, 41, 42):
            await eventually(lambda c=chat_id: answered(telegram, c, f"hello {c}"), timeout=30)  # type: ignore[misc]
        await asyncio.sleep(2)  # more than a lease renewal and a standby's retry
        assert tap_b.polls() == 0 and tap_a.polls() >= 2
        assert [await role(port_a), await role(port_b)] == ["poller", "standby"]

        # The poller receives a batch and dies before its next getUpdates confirms it.
        tap_a.hold_polls_after_batch()
        last = telegram.push_update(telegram.message_update(chat_id=50, user_id=50, text="last words"))
        await eventually(lambda: answered(telegram, 50, "last words"), timeout=30)
        await eventually(lambda: tap_a.held > 0, timeout=10)
        assert last in tap_a.delivered
        await kill(a)

        took_over = await becomes(port_b, "poller", timeout=10)
        await eventually(lambda: last in tap_b.delivered, timeout=10)  # Telegram sent the batch again
        await asyncio.sleep(1)
        assert answered(telegram, 50, "last words")  # ...and it was not answered twice
        assert [r["query"] for r in dify.chat_requests()].count("last words") == 1

        telegram.push_update(telegram.message_update(chat_id=51, user_id=51, text="still there?"))
        await eventually(lambda: answered(telegram, 51, "still there?"), timeout=30)
        assert telegram.count("getUpdates", status=409) == 0  # never two long polls at once
    finally:
        if a.returncode is None:
            await kill(a)
        result = await stop_bot(b) if b is not None else (0, "")
    assert result[0] == 0, result[1]
    assert took_over <= 10
    assert TOKEN not in result[1]


async def test_a_poller_shut_down_cleanly_hands_over_at_once(
    fakes: tuple[FakeDify, FakeTelegram, ReplicaTap, ReplicaTap], redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    dify, telegram, tap_a, tap_b = fakes
    port_a, port_b = free_port(), free_port()
    a = await start_bot(
        bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port_a), TELEGRAM_API_BASE=tap_a.url), tmp_path
    )
    b = None
    try:
        await ready(port_a)
        b = await start_bot(
            bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port_b), TELEGRAM_API_BASE=tap_b.url),
            tmp_path,
        )
        await ready(port_b)
        assert [await role(port_a), await role(port_b)] == ["poller", "standby"]
        code_a, err_a = await stop_bot(a)
        took_over = await becomes(port_b, "poller", timeout=10)
        telegram.push_update(telegram.message_update(chat_id=60, user_id=60, text="who is there?"))
        await eventually(lambda: answered(telegram, 60, "who is there?"), timeout=30)
        assert tap_b.polls() >= 1
    finally:
        if a.returncode is None:
            await kill(a)
        code_b, err_b = await stop_bot(b) if b is not None else (0, "")
    assert (code_a, code_b) == (0, 0), (err_a, err_b)
    assert took_over < 3  # the lease was handed back, not left to run out (5 s)
    assert telegram.count("getUpdates", status=409) == 0
