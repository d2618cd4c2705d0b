"""The embedded Redis of real `dify-bots chat` processes: shared per DATA_DIR, stopped by the last one, quickly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.e2e.test_cli import cli_env
from tests.fakes.dify import FakeDify


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


def redis_servers(under: Path) -> list[int]:
    """Running redis-server processes whose command line or working directory lies under `under`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if "redis-server" in cmdline and state != "Z" and (str(under) in cmdline or cwd.startswith(str(under))):
            found.append(int(entry.name))
    return found


async def answers(socket: Path) -> bool:
    client = Redis(unix_socket_path=str(socket))
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


class Chat:
    """A `dify-bots chat` process fed through a pipe."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path) -> Chat:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            "chat",
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def ask(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return (await asyncio.wait_for(self.process.stdout.readline(), timeout=30)).decode()

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def finish(self) -> tuple[int, str]:
        """Wait for the exit; the exit code and everything written to stderr."""
        assert self.process.stderr is not None
        try:
            err = await asyncio.wait_for(self.process.stderr.read(), timeout=30)
            await asyncio.wait_for(self.process.wait(), timeout=30)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode, err.decode()


def clean(err: str) -> None:
    assert "shutdown failed" not in err.lower() and "Traceback" not in err, err


async def test_quit_stops_the_server_well_under_a_second(dify: FakeDify, tmp_path: Path) -> None:
    chat = await Chat.start(cli_env(dify, tmp_path / "data"), tmp_path)
    assert await chat.ask("hi") == "echo: hi\n"
    assert len(redis_servers(tmp_path)) == 1
    started = time.monotonic()
    await chat.send("/quit")
    code, err = await chat.finish()
    elapsed = time.monotonic() - started
    assert code == 0 and redis_servers(tmp_path) == []
    clean(err)
    assert elapsed < 1.0, f"chat took {elapsed:.2f}s to leave"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_a_signal_stops_the_server(dify: FakeDify, tmp_path: Path, signum: signal.Signals) -> None:
    chat = await Chat.start(cli_env(dify, tmp_path / "data"), tmp_path)
    assert await chat.ask("hi") == "echo: hi\n"
    chat.process.send_signal(signum)
    code, err = await chat.finish()
    assert code == 0 and redis_servers(tmp_path) == []
    clean(err)


async def test_two_chats_share_one_server_and_the_last_stops_it(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    first = await Chat.start(env, tmp_path)
    assert await first.ask("one") == "echo: one\n"
    second = await Chat.start(env, tmp_path)
    assert await second.ask("two") == "echo: two\n"
    assert len(redis_servers(tmp_path)) == 1  # one server for one data file
    await first.send("/quit")
    code, err = await first.finish()
    assert code == 0
    clean(err)
    assert await second.ask("still there?") == "echo: still there?\n"  # the server outlived the first chat
    await second.send("/quit")
    code, err = await second.finish()
    assert code == 0 and redis_servers(tmp_path) == []
    clean(err)
    # Both chats kept the same conversation: the second continued what the first started.
    ids = [request["conversation_id"] for request in dify.chat_requests()]
    assert ids[0] == "" and ids[1] == ids[2] != ""


async def test_a_server_left_by_a_killed_process_is_reused(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    killed = await Chat.start(env, tmp_path)
    socket = tmp_path / "data" / "redis.sock"
    for _ in range(300):  # until its Redis answers (it asks nothing, so it holds no conversation lock)
        if socket.exists() and await answers(socket):
            break
        await asyncio.sleep(0.02)
    killed.process.kill()  # no clean-up at all
    await killed.finish()
    left = redis_servers(tmp_path)
    assert len(left) == 1
    chat = await Chat.start(env, tmp_path)
    assert await chat.ask("two") == "echo: two\n"
    assert redis_servers(tmp_path) == left  # joined, not a second server on the same files
    await chat.send("/quit")
    code, err = await chat.finish()
    assert code == 0 and redis_servers(tmp_path) == []
    clean(err)
