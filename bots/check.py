"""`dify-bots check`: one pass/fail line per thing the bot depends on, reasons in words."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Mapping
from typing import Any

from bots import registry
from bots.core_stack import dify_client
from bots.diagnose import explain
from bots.front_door import Check
from core.answer import AnswerReducer, Done, Failed
from core.conversations import ConversationStore
from core.dify.client import CHAT_MODES, WORKFLOW_MODE, DifyClient
from core.errors import BotError
from core.redis_connection import open_redis
from core.settings import Config, Settings

QUESTION = "This is a connection test from dify-bots check. Please reply with OK."
ASK_TIMEOUT = 60.0
PLACEHOLDER = "check"


class CheckFailed(BotError):
    """A check found a problem; `message` is the whole reason."""


async def _run(name: str, check: Check, *, base_url: str) -> bool:
    try:
        detail = await check()
    except Exception as exc:  # every failure becomes one readable line
        print(f"FAIL  {name}: {explain(exc, base_url=base_url)}")
        return False
    print(f"ok    {name}: {detail}")
    return True


def placeholder_inputs(form: Any, *, skip: str = "") -> dict[str, Any]:
    """Values for the app's input form (`/parameters` `user_input_form`): defaults, first options, placeholders."""
    inputs: dict[str, Any] = {}
    for item in form if isinstance(form, list) else []:
        if not isinstance(item, Mapping) or len(item) != 1:
            continue
        ((kind, spec),) = item.items()
        if not isinstance(spec, Mapping) or not isinstance(spec.get("variable"), str) or spec["variable"] == skip:
            continue
        default = spec.get("default")
        if kind in ("text-input", "paragraph", "string"):
            length = spec.get("max_length")
            value = str(default or PLACEHOLDER)
            inputs[spec["variable"]] = value[:length] if isinstance(length, int) and length > 0 else value
        elif kind == "select":
            options = spec.get("options")
            choice = default or (options[0] if isinstance(options, list) and options else None)
            if choice is not None:
                inputs[spec["variable"]] = choice
        elif kind == "number":
            inputs[spec["variable"]] = default if isinstance(default, int | float) else 1
        elif kind == "checkbox":
            inputs[spec["variable"]] = bool(default)
    return inputs


async def ask(dify: DifyClient, settings: Settings) -> str:
    """Send one real question as a throwaway user; the answer's length, or the failure that stopped it."""
    mode = await dify.app_mode()
    params = await dify.parameters()
    inputs = placeholder_inputs(params.get("user_input_form"), skip=settings.dify_workflow_input)
    user = f"difybots-check-{secrets.token_hex(4)}"
    reducer = AnswerReducer(mode=mode, workflow_output=settings.dify_workflow_output)
    outcome: Done | Failed | None = None
    async with asyncio.timeout(ASK_TIMEOUT):
        async with contextlib.aclosing(dify.stream_batches(query=QUESTION, user=user, inputs=inputs)) as batches:
            async for batch in batches:
                for event in batch:
                    for reply in reducer.feed(event):
                        if isinstance(reply, Done | Failed):
                            outcome = reply
                if outcome is not None:
                    break
        for reply in reducer.finish():
            if isinstance(reply, Done | Failed):
                outcome = reply
    if isinstance(outcome, Failed):
        raise outcome.error
    assert outcome is not None  # finish() always settles an outcome
    if outcome.conversation_id and mode in CHAT_MODES:
        with contextlib.suppress(BotError):
            await dify.delete_conversation(conversation_id=outcome.conversation_id, user=user)
    if not outcome.answer.strip():
        return "the app answered a test question, with an empty answer"
    return f"the app answered a test question ({len(outcome.answer)} characters)"


async def run_check(config: Config) -> int:
    settings = config.core
    print("ok    settings: loaded")
    base_url = settings.dify_base_url
    results: list[bool] = []
    where = (settings.redis_url and "REDIS_URL") or f"embedded Redis in {settings.data_dir}"
    async with dify_client(settings) as dify:

        async def info() -> str:
            app = await dify.info()
            if app.mode not in CHAT_MODES and app.mode != WORKFLOW_MODE:
                raise CheckFailed(
                    f"the app {app.name!r} is a {app.mode or 'unknown'} app, which dify-bots does not support; "
                    "use a chat, agent, chatflow or workflow app"
                )
            forced = settings.dify_app_mode
            if forced and forced != app.mode:
                raise CheckFailed(
                    f"DIFY_APP_MODE is {forced} but the app {app.name!r} is {app.mode}; "
                    f"set DIFY_APP_MODE={app.mode} or leave it empty"
                )
            return f"app {app.name!r}, mode {app.mode}"

        async def parameters() -> str:
            params = await dify.parameters()
            return "opening statement set" if params.get("opening_statement") else "readable"

        reached = await _run("Dify /info", info, base_url=base_url)
        results.append(reached)
        if reached:
            results.append(await _run("Dify /parameters", parameters, base_url=base_url))
            results.append(await _run("Dify answer", lambda: ask(dify, settings), base_url=base_url))

    async def store() -> str:
        async with open_redis(url=settings.redis_url, data_dir=settings.data_dir) as redis:
            await ConversationStore(redis, app="check", ttl=60, prefix=settings.redis_prefix).ping()
        return f"reachable ({where})"

    results.append(await _run("conversation store", store, base_url=base_url))
    configured = 0
    for plugin in registry.plugins():
        section = config.section(plugin.name)
        for warning in plugin.warnings(section):
            print(f"warn  {plugin.name}: {warning}")
        if not plugin.configured(section):
            continue
        configured += 1
        for name, check in plugin.checks(section, settings):
            results.append(await _run(name, check, base_url=base_url))
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
