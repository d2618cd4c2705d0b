"""A round-robin HTTP load balancer on 127.0.0.1: each request goes to the next upstream in turn."""

from __future__ import annotations

import itertools
from collections import Counter
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web

from tests.fakes.local_server import serve_locally

# Headers that describe one hop, not the request: the proxy's own connections set them afresh.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class RoundRobinProxy:
    """Forwards every request (method, path, query, headers and body bytes unchanged, so signatures still
    verify) to `upstreams[i % n]`, and the upstream's answer back. An upstream that cannot be reached
    answers 502, as a load balancer would; `forwarded` counts requests per upstream."""

    def __init__(self, upstreams: list[str]) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self.upstreams = [url.rstrip("/") for url in upstreams]
        self.forwarded: Counter[str] = Counter()
        self._next = itertools.cycle(self.upstreams)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner, self.port = await serve_locally(app, shutdown_timeout=1.0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        upstream = next(self._next)
        self.forwarded[upstream] += 1
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        body = await request.read()
        try:
            async with self._session.request(
                request.method, upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
            ) as answer:
                payload = await answer.read()
                back = {name: value for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP}
                return web.Response(status=answer.status, body=payload, headers=back)
        except aiohttp.ClientError:
            return web.Response(status=502, text="bad gateway")
