"""`dify-bots check`: one pass/fail line per thing the bot depends on."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from bots.core_stack import dify_client
from core.conversations import ConversationStore
from core.dify.errors import DifyAuthError, DifyError, DifyTransportError
from core.errors import BotError
from core.redis_connection import open_redis
from core.settings import Settings

Check = Callable[[], Awaitable[str]]


def _explain(error: BaseException) -> str:
    if isinstance(error, DifyAuthError):
        return "the API key was refused (HTTP 401). Check DIFY_API_KEY."
    if isinstance(error, DifyTransportError):
        return f"could not reach it ({error.message}). Check DIFY_BASE_URL and the network."
    if isinstance(error, DifyError):
        return f"it answered with an error ({error.status or ''} {error.code or ''}: {error.message})".strip()
    if isinstance(error, BotError):
        return error.message
    return f"{type(error).__name__}: {error}"


async def _run(name: str, check: Check) -> bool:
    try:
        detail = await check()
    except Exception as exc:  # every failure becomes one readable line
        print(f"FAIL  {name}: {_explain(exc)}")
        return False
    print(f"ok    {name}: {detail}")
    return True


async def run_check(settings: Settings) -> int:
    print("ok    settings: loaded")
    results: list[bool] = []
    where = (settings.redis_url and "REDIS_URL") or f"embedded Redis in {settings.data_dir}"
    async with dify_client(settings) as dify:

        async def info() -> str:
            app = await dify.info()
            return f"app {app.name!r}, mode {app.mode}"

        async def parameters() -> str:
            params = await dify.parameters()
            return "opening statement set" if params.get("opening_statement") else "readable"

        results.append(await _run("Dify /info", info))
        results.append(await _run("Dify /parameters", parameters))

    async def store() -> str:
        async with open_redis(url=settings.redis_url, data_dir=settings.data_dir) as redis:
            await ConversationStore(redis, app="check", ttl=60, prefix=settings.redis_prefix).ping()
        return f"reachable ({where})"

    results.append(await _run("conversation store", store))
    from bots.platform_checks import platform_checks

    for name, check in platform_checks(settings):
        results.append(await _run(name, check))
    ok = all(results)
    print("All checks passed." if ok else "Some checks failed.", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1
