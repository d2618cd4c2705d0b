"""A tap in front of FakeTelegram per replica: which replica calls getUpdates; a last batch left unconfirmed."""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web

from tests.fakes.local_server import serve_locally


class ReplicaTap:
    """Forwards one replica's Bot API calls to the fake Telegram (`upstream`) and records them.

    Give every replica its own tap (`TELEGRAM_API_BASE=tap.url`) to see which one polls: the fake
    itself cannot tell callers apart. After `hold_polls_after_batch()`, the first getUpdates that
    hands this replica updates is the last one forwarded: the next ones wait here until the replica
    goes away, so that batch stays unconfirmed at the server, as when a poller dies right after
    receiving it.
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self.calls: list[tuple[str, int]] = []  # (method, HTTP status) of every forwarded call
        self.delivered: list[int] = []  # update ids this replica received
        self.held = 0  # getUpdates calls kept from the server
        self.forwarded_polls = 0  # getUpdates calls sent on to the server (long polls count as they start)
        self._hold_after_batch = False
        self._holding = False
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner, port = await serve_locally(app, handler_cancellation=True, shutdown_timeout=0.5)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def polls(self) -> int:
        """getUpdates calls that reached the server, finished or still waiting there."""
        return self.forwarded_polls

    def hold_polls_after_batch(self) -> None:
        self._hold_after_batch = True

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        method = request.path.rsplit("/", 1)[-1]
        polling = method.lower() == "getupdates"
        if polling and self._holding:
            self.held += 1
            await asyncio.Event().wait()  # until the replica closes the connection (the handler is cancelled)
        self.forwarded_polls += polling
        headers = {"Content-Type": request.headers["Content-Type"]} if "Content-Type" in request.headers else {}
        body = await request.read()
        async with self._session.request(
            request.method, self._upstream + request.path_qs, data=body, headers=headers
        ) as response:
            payload = await response.read()
            status = response.status
            content_type = response.headers.get("Content-Type", "application/json")
        self.calls.append((method, status))
        if polling and status == 200:
            ids = [int(update["update_id"]) for update in json.loads(payload)["result"]]
            self.delivered.extend(ids)
            if ids and self._hold_after_batch:
                self._holding = True
        return web.Response(body=payload, status=status, headers={"Content-Type": content_type})
