"""QuickBlockingPool: redis-py's blocking connection pool with a short path while a connection is free."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import AbstractConnection

__all__ = ["QuickBlockingPool"]


class QuickBlockingPool(BlockingConnectionPool):
    """A pool that makes a burst wait for a connection, as BlockingConnectionPool does, but hands out and
    takes back an idle connection without its condition, timeout and metrics bookkeeping.

    Every Redis command takes and returns a connection; in redis-py 8 the blocking pool's lock, timer and
    connection-count records cost about as much as the command's own work. A taken connection is still
    checked (`ensure_connection`: reconnect if dropped, refuse one with unread data). Only when no connection
    is idle, someone waits for one, or the pool is being reshaped (server maintenance) does the pool's own
    path run. The short path announces no released connection: that event serves streaming credential
    providers, which the bot does not use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0  # callers inside the pool's own get_connection, who must hear of a release

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> AbstractConnection:
        if not self._available_connections or self._reshaping():
            self._waiting += 1
            try:
                return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
            finally:
                self._waiting -= 1
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if self._waiting or self._reshaping():
            await super().release(connection)  # wakes a waiter
            return
        self._in_use_connections.remove(connection)
        should_reconnect = getattr(connection, "should_reconnect", None)  # redis-py 8: server maintenance
        if should_reconnect is not None and should_reconnect():
            await connection.disconnect()
        self._available_connections.append(connection)

    def _reshaping(self) -> bool:
        return bool(getattr(self, "_in_maintenance", False))
