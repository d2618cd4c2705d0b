"""Start an aiohttp application on 127.0.0.1 with a free port (every fake server uses this)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve_locally(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """Run `app` on 127.0.0.1 port 0; returns the runner (call `cleanup()` to stop) and the port."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def go_offline(runner: web.AppRunner, site: web.BaseSite | None) -> None:
    """Stop listening and drop every open connection (the server "goes away")."""
    if site is not None:
        await site.stop()
    server = runner.server
    for connection in list(server.connections) if server is not None else []:
        if connection.transport is not None:
            connection.transport.abort()


async def come_back(runner: web.AppRunner, port: int) -> web.TCPSite:
    """Listen again on the same port."""
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return site
