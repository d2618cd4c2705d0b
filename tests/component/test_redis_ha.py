"""Redis HA for real: a Sentinel failover and a 3-node Cluster, started by the test on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

import core.redis_clients as redis_clients
from core.conversations import ChatKey, Conversation, ConversationStore
from core.errors import StartupError
from core.journal import Journal
from core.keys import RedisKeys
from core.redis_clients import cluster_client, sentinel_client
from core.redis_connection import open_redis
from core.redis_urls import ClusterUrl, SentinelUrl
from core.shared_budgets import Interval, SharedBudgets

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
MASTER_PASSWORD = "master-pw-7781"
SENTINEL_PASSWORD = "sentinel-pw-4410"
TELEGRAM = ChatKey(platform="telegram", scope="tg:1:42", user="tg-7")
# Scopes a client can choose (the OpenAI endpoint's conversation id) may carry braces of their own.
CHATS = [
    TELEGRAM,
    ChatKey(platform="slack", scope="slack:T1:C1:g0:1700000000.000100", user="slack-T1-U1"),
    ChatKey(platform="openai", scope="openai:team{a}", user="openai-team{a}"),
    ChatKey(platform="openai", scope="openai:odd}one", user="openai-odd}one"),
    ChatKey(platform="openai", scope="openai:open{ended", user="openai-open{ended"),
]


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production backoff (~3.5 s in all) is right for a failover, too slow for a refused port.
    monkeypatch.setattr(redis_clients, "RETRY_BASE", 0.01)
    monkeypatch.setattr(redis_clients, "RETRY_CAP", 0.2)


def free_port(*, with_bus: bool = False) -> int:
    """A free TCP port (and, for a cluster node, a free bus port 10000 above it)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not with_bus:
            return port
        if port + 10000 < 65536:
            with socket.socket() as bus, contextlib.suppress(OSError):
                bus.bind(("127.0.0.1", port + 10000))
                return port
    raise RuntimeError("no free port")


class Servers:
    """redis-server processes started in a temp dir; all killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *args: str, config: str | None = None) -> None:
        workdir = self.root / str(port)
        workdir.mkdir()
        command = [REDIS_SERVER]
        if config is not None:  # Sentinel rewrites its file, so it must be its own and writable
            (workdir / "sentinel.conf").write_text(config)
            command += ["sentinel.conf", "--sentinel"]
        command += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args]
        with (workdir / "log").open("wb") as log:
            self.processes[port] = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(5)

    def close(self) -> None:
        for port in list(self.processes):
            self.kill(port)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.close()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 12.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def ask(port: int, *command: str | int, password: str | None = None) -> object:
    """One command to one server (or Sentinel), without retries; None when it does not answer."""
    client = Redis(port=port, password=password, decode_responses=True, socket_connect_timeout=0.5)
    try:
        return await client.execute_command(*command)  # type: ignore[no-untyped-call]
    except (RedisError, OSError):
        return None
    finally:
        await client.aclose()


# ---- Sentinel ---------------------------------------------------------------------------------------------------


@pytest.fixture
async def sentinel_group(servers: Servers) -> tuple[int, int, int]:
    """(master, replica, sentinel) ports; the Sentinel knows the replica, so it can fail over."""
    master, replica, sentinel = free_port(), free_port(), free_port()
    auth = ("--requirepass", MASTER_PASSWORD, "--masterauth", MASTER_PASSWORD)
    servers.start(master, *auth)
    servers.start(replica, *auth, "--replicaof", "127.0.0.1", str(master))

    async def synced() -> bool:
        info = await ask(replica, "INFO", "replication", password=MASTER_PASSWORD)
        return isinstance(info, dict) and info.get("master_link_status") == "up"

    await eventually(synced)
    servers.start(
        sentinel,
        "--requirepass",
        SENTINEL_PASSWORD,
        config=(
            f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
            f"sentinel auth-pass mymaster {MASTER_PASSWORD}\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 3000\n"
        ),
    )

    async def knows_replica() -> bool:
        replicas = await ask(sentinel, "SENTINEL", "REPLICAS", "mymaster", password=SENTINEL_PASSWORD)
        return bool(replicas)

    await eventually(knows_replica)
    return master, replica, sentinel


def sentinel_url(sentinel: int) -> str:
    return f"redis+sentinel://:{MASTER_PASSWORD}@127.0.0.1:{sentinel}/mymaster/0?sentinel_password={SENTINEL_PASSWORD}"


async def test_a_sentinel_failover_loses_no_conversation(
    sentinel_group: tuple[int, int, int], servers: Servers, tmp_path: Path
) -> None:
    master, replica, sentinel = sentinel_group
    async with open_redis(url=sentinel_url(sentinel), data_dir=tmp_path) as redis:
        store = ConversationStore(redis, app="ha", ttl=3600, prefix="ha-test")
        await store.save(TELEGRAM, Conversation(conversation_id="c-before", user="tg-7"))
        # Replication is asynchronous: only a write the replica has seen can survive losing the master.
        assert await redis.wait(1, 2000) == 1

        servers.kill(master)

        async def promoted() -> bool:
            address = await ask(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster", password=SENTINEL_PASSWORD)
            return isinstance(address, list) and int(address[1]) == replica

        await eventually(promoted)
        # The same client: its connections to the dead master are replaced on the first use.
        assert await store.get(TELEGRAM) == Conversation(conversation_id="c-before", user="tg-7")
        other = ChatKey(platform="telegram", scope="tg:1:43", user="tg-8")
        await store.save(other, Conversation(conversation_id="c-after", user="tg-8"))
        assert await store.get(other) == Conversation(conversation_id="c-after", user="tg-8")
        async with store.lock(other, wait=2):
            pass
    role = await ask(replica, "ROLE", password=MASTER_PASSWORD)
    assert isinstance(role, list) and role[0] == "master"


async def test_a_burst_waits_for_a_sentinel_connection(sentinel_group: tuple[int, int, int]) -> None:
    _, _, sentinel = sentinel_group
    target = SentinelUrl(
        sentinels=(("127.0.0.1", sentinel),),
        service="mymaster",
        password=MASTER_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    )
    redis, manager = sentinel_client(target, max_connections=2)
    try:
        store = ConversationStore(redis, app="ha", ttl=60, prefix="ha-burst")
        chats = [ChatKey(platform="telegram", scope=f"tg:1:{n}", user="u") for n in range(40)]
        await asyncio.gather(*(store.save(chat, Conversation(conversation_id=chat.scope, user="u")) for chat in chats))
        found = await asyncio.gather(*(store.get(chat) for chat in chats))
        assert [item.conversation_id if item else None for item in found] == [chat.scope for chat in chats]
    finally:
        await redis.aclose()
        await manager.aclose()


async def test_an_unreachable_sentinel_is_one_sentence_without_passwords(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(StartupError) as caught:
        async with open_redis(url=sentinel_url(port), data_dir=tmp_path):
            pass
    message = str(caught.value)
    assert message == (
        f"cannot reach Redis at REDIS_URL redis+sentinel://127.0.0.1:{port}/mymaster/0 "
        "(no Sentinel answered); check that Redis is running and REDIS_URL is right"
    )
    assert MASTER_PASSWORD not in message and SENTINEL_PASSWORD not in message


# ---- Cluster ----------------------------------------------------------------------------------------------------


def ask_now(port: int, *command: str) -> object:
    """`ask` for the synchronous, module-wide cluster fixture."""
    client = SyncRedis(port=port, decode_responses=True, socket_connect_timeout=0.5)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    except (RedisError, OSError):
        return None
    finally:
        client.close()


def wait_now(check: Callable[[], bool], *, timeout: float = 12.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """A 3-node cluster (no replicas) shared by this module's cluster tests; each uses its own key prefix."""
    servers = Servers(tmp_path_factory.mktemp("cluster"))
    try:
        ports = [free_port(with_bus=True) for _ in range(3)]
        for port in ports:
            servers.start(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        wait_now(lambda: all(ask_now(port, "PING") for port in ports))
        nodes = [f"127.0.0.1:{port}" for port in ports]
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=20,
            check=False,
        )
        assert created.returncode == 0, created.stdout.decode()[-500:]
        wait_now(lambda: all("cluster_state:ok" in str(ask_now(port, "CLUSTER", "INFO")) for port in ports))
        yield ports
    finally:
        servers.close()


@pytest.fixture
async def cluster_redis(cluster: list[int], tmp_path: Path) -> AsyncIterator[Redis]:
    url = f"redis+cluster://127.0.0.1:{cluster[0]},127.0.0.1:{cluster[1]}"
    async with open_redis(url=url, data_dir=tmp_path) as redis:
        yield redis


async def keyslot(redis: Redis, key: str) -> int:
    """The server's CLUSTER KEYSLOT (open_redis hands a RedisCluster out typed as a Redis)."""
    return int(await cast(RedisCluster, redis).cluster_keyslot(key))


async def test_the_keys_a_conversation_touches_together_share_one_slot(cluster_redis: Redis) -> None:
    keys = RedisKeys(prefix="difybots", app="0123abcdef45")
    for chat in CHATS:
        family = [keys.lock(chat), keys.queue(chat), keys.queue_alive(chat)]
        slots = {await keyslot(cluster_redis, key) for key in family}
        assert len(slots) == 1, (chat, family)
        if "}" not in chat.scope:  # with a bare '}' the lock family has a slot of its own
            assert await keyslot(cluster_redis, keys.conversation(chat)) in slots
    slots_used = {await keyslot(cluster_redis, keys.lock(chat)) for chat in CHATS}
    assert len(slots_used) > 1  # conversations still spread over the cluster


async def test_the_store_works_over_a_cluster(cluster_redis: Redis) -> None:
    store = ConversationStore(cluster_redis, app="ha", ttl=3600, prefix="ha-cluster", lock_lease=0.3)
    for n, chat in enumerate(CHATS):
        await store.save(chat, Conversation(conversation_id=f"c-{chat.scope}", user=chat.user))
        assert await store.get(chat) == Conversation(conversation_id=f"c-{chat.scope}", user=chat.user)
        # Two answers in one chat: the second waits in the queue (lock + queue + alive in one script).
        first = store.lock(chat, wait=3)
        await first.acquire()
        second = store.lock(chat, wait=3)
        waiting = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.45 if n == 0 else 0.05)  # first: past the lease, so only renewal keeps the turn
        assert not waiting.done()
        await first.release()
        assert await waiting
        await second.release()
    group, supergroup = CHATS[0], ChatKey(platform="telegram", scope="tg:1:-100042", user="tg-7")
    assert await store.move(group, supergroup)  # two chats, two slots: single-key steps
    assert await store.get(group) is None
    assert await store.get(supergroup) == Conversation(conversation_id="c-tg:1:42", user="tg-7")
    assert await store.reset(supergroup) is not None
    assert await store.first_delivery("telegram", "1:1") and not await store.first_delivery("telegram", "1:1")
    assert await store.bump_generation("slack:T1:C1") == 1


async def test_the_journal_works_over_a_cluster(cluster_redis: Redis) -> None:
    keys = RedisKeys(prefix="ha-journal", app="ha")
    dead = Journal(cluster_redis, keys=keys, lease=0.2, owner="dead")
    await dead.start()
    writers = [dead.open(chat=chat, origin={"n": n}) for n, chat in enumerate(CHATS)]
    for writer in writers:
        await writer.begin()
        writer.frame(0, 100, "Hello", False)
    await asyncio.sleep(0.05)
    await dead.close()
    alive = Journal(cluster_redis, keys=keys, owner="alive")
    claimed = await alive.claim_orphans(platforms={"telegram", "slack", "openai"})
    assert sorted(entry.answer_id for entry in claimed) == sorted(writer.answer_id for writer in writers)
    assert {entry.chat for entry in claimed} == set(CHATS)
    assert await alive.claim_orphans(platforms={"telegram", "slack", "openai"}) == []
    for entry in claimed:
        await alive.clear(entry.answer_id)
    assert await cluster_redis.smembers(keys.journal_index()) == set()


async def test_a_burst_waits_for_a_cluster_connection(cluster: list[int]) -> None:
    redis = cluster_client(ClusterUrl(nodes=(("127.0.0.1", cluster[2]),)), max_connections=2)
    try:
        keys = RedisKeys(prefix="ha-burst", app="ha")
        journal = Journal(redis, keys=keys, owner="burst")  # type: ignore[arg-type]
        store = ConversationStore(redis, app="ha", ttl=60, prefix="ha-burst")  # type: ignore[arg-type]
        chats = [ChatKey(platform="telegram", scope=f"tg:1:{n}", user="u") for n in range(40)]
        await asyncio.gather(*(store.save(chat, Conversation(conversation_id=chat.scope, user="u")) for chat in chats))
        writers = [journal.open(chat=chat, origin={}) for chat in chats]
        await asyncio.gather(*(writer.begin() for writer in writers))  # pipelines, concurrently
        found = await asyncio.gather(*(store.get(chat) for chat in chats))
        assert [item.conversation_id if item else None for item in found] == [chat.scope for chat in chats]
        assert len(await redis.smembers(keys.journal_index())) == len(chats)
    finally:
        await redis.aclose()


async def test_a_cluster_burst_waits_only_so_long(cluster: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_clients, "POOL_TIMEOUT", 0.1)
    redis = cluster_client(ClusterUrl(nodes=(("127.0.0.1", cluster[0]),)), max_connections=1)
    try:

        async def hold() -> object:
            return await redis.blpop(["ha-wait:{x}:list"], timeout=0.4)

        holding = asyncio.create_task(hold())  # takes the only turn
        await asyncio.sleep(0.05)
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await redis.get("ha-wait:{x}:other")
        assert await holding is None
        assert await redis.get("ha-wait:{x}:other") is None  # the turn is back
    finally:
        await redis.aclose()


async def test_an_unreachable_cluster_is_one_sentence_without_passwords(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis+cluster://:{MASTER_PASSWORD}@127.0.0.1:{port}"
    with pytest.raises(StartupError) as caught:
        async with open_redis(url=url, data_dir=tmp_path):
            pass
    assert str(caught.value).startswith(f"cannot reach Redis at REDIS_URL redis+cluster://127.0.0.1:{port} (")
    assert MASTER_PASSWORD not in str(caught.value)


async def test_shared_budgets_work_over_a_cluster(cluster_redis: Redis) -> None:
    budgets = SharedBudgets(cluster_redis, RedisKeys(prefix="ha-budgets", app="ha"))
    rate = Interval(ms=60_000)
    scopes = [f"telegram:1:chat:{n}" for n in range(20)]  # keys spread over the cluster's nodes
    assert await asyncio.gather(*(budgets.take(scope, rate) for scope in scopes)) == [0] * 20
    waits = await asyncio.gather(*(budgets.take(scope, rate) for scope in scopes))
    assert all(59_000 < wait <= 60_000 for wait in waits)
    assert await budgets.take("telegram:1:chat:alone", rate) == 0
    assert budgets.mode == "shared"
