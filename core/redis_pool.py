"""QuickBlockingPool: redis-py's blocking connection pool, and connections, without per-command bookkeeping."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["QuickBlockingPool", "QuickSend"]


class QuickSend:
    """A connection whose command goes straight to the socket when the socket takes it all.

    redis-py sends every command under `asyncio.wait_for(..., socket_timeout)`, which on Python 3.11 and
    3.12 runs the write in a task of its own: a task, a timer and an extra turn of the event loop per
    command, only to wait for a socket buffer that is nearly always empty. Here the command is written at
    once; only if the kernel did not take all of it does redis-py's own path wait for the buffer to drain,
    with its timeout and its errors. A connection that is not connected, is closing or is due a health
    check takes redis-py's path from the start."""

    _writer: asyncio.StreamWriter | None
    health_check_interval: float

    async def send_packed_command(self, command: str | bytes | Iterable[bytes], check_health: bool = True) -> None:
        writer = self._writer
        if writer is None or writer.transport.is_closing() or (check_health and self.health_check_interval):
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if isinstance(command, str):
            command = command.encode()
        writer.writelines([command] if isinstance(command, bytes) else command)
        if writer.transport.get_write_buffer_size():
            await super().send_packed_command((), check_health=False)  # type: ignore[misc]  # drain, timed


_QUICK_CLASSES: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def quick_send_class(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (plain, TLS, Unix socket or Sentinel-managed) with QuickSend's write path; one class per base."""
    if issubclass(base, QuickSend):
        return base
    if base not in _QUICK_CLASSES:
        _QUICK_CLASSES[base] = type(f"Quick{base.__name__}", (QuickSend, base), {})
    return _QUICK_CLASSES[base]


class QuickBlockingPool(BlockingConnectionPool):
    """A pool that makes a burst wait for a connection, as BlockingConnectionPool does, without its
    condition, timeout and metrics bookkeeping on every command.

    Every Redis command takes and returns a connection; in redis-py 8 the blocking pool's lock, timer and
    connection-count records cost about as much as the command's own work, and a burst past the cap paid
    more: every waiter woke, took the condition's lock and went back to sleep once per release. Here an
    idle connection (or room for a new one) is taken at once, and a caller past the cap queues one future
    that a release hands a connection to directly, first come first served. A taken connection is still
    checked (`ensure_connection`: reconnect if dropped, refuse one with unread data). While the server
    reshapes the pool (maintenance notifications) new callers take redis-py's own path. Nothing announces
    a released connection: that event serves streaming credential providers, which the bot does not use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_class = quick_send_class(self.connection_class)
        self._queue: deque[asyncio.Future[AbstractConnection]] = deque()  # callers waiting past the cap
        self._on_own_path = 0  # callers inside redis-py's get_connection, woken only by its release

    @property
    def waiting(self) -> int:
        """Callers queued for a released connection."""
        return sum(not waiter.done() for waiter in self._queue)

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> AbstractConnection:
        if self._reshaping():
            self._on_own_path += 1
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
            finally:
                self._on_own_path -= 1
        if self.can_get_connection():
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        else:
            connection = await self._wait_for_release()
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def _wait_for_release(self) -> AbstractConnection:
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                await self.release(waiter.result())  # handed over just as the wait ended: pass it on
            else:
                waiter.cancel()  # a release skips it
            if isinstance(exc, TimeoutError):
                raise RedisConnectionError("No connection available.") from exc
            raise

    async def release(self, connection: AbstractConnection) -> None:
        should_reconnect = getattr(connection, "should_reconnect", None)  # redis-py 8: server maintenance
        if should_reconnect is not None and should_reconnect():
            await connection.disconnect()  # whoever takes it next connects it again
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # it stays in use, by the next caller in line
                return
        if self._reshaping() or self._on_own_path:
            await super().release(connection)  # wakes callers on redis-py's own path
            return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)

    def _reshaping(self) -> bool:
        return bool(getattr(self, "_in_maintenance", False))
