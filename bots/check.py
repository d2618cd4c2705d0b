"""`dify-bots check`: one pass/fail line per thing the bot depends on."""

from __future__ import annotations

import sys

from bots import registry
from bots.core_stack import dify_client
from bots.front_door import Check
from core.conversations import ConversationStore
from core.dify.errors import DifyAuthError, DifyError, DifyTransportError
from core.errors import BotError
from core.redis_connection import open_redis
from core.settings import Config


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


async def run_check(config: Config) -> int:
    settings = config.core
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
    configured = 0
    for plugin in registry.plugins():
        section = config.section(plugin.name)
        for warning in plugin.warnings(section):
            print(f"warn  {plugin.name}: {warning}")
        if not plugin.configured(section):
            continue
        configured += 1
        for name, check in plugin.checks(section, settings):
            results.append(await _run(name, check))
    if not configured:
        print(f"warn  front doors: none is configured, so `dify-bots run` has nothing to start ({_switches()})")
    ok = all(results)
    print("All checks passed." if ok else "Some checks failed.", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1


def _switches() -> str:
    return "; ".join(
        f"set {plugin.settings.env_names()[0]} for {plugin.name}"
        for plugin in registry.plugins()
        if plugin.settings.env_names()
    )
