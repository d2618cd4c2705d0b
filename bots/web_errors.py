"""The web server's last line of defence: an unexpected error becomes one log line and a plain 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors pass through; anything else is logged once (no traceback, no body) and answered 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("%s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
        return web.json_response({"error": "internal error"}, status=500)
