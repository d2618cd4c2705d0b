"""aiogram's webhook handler, answering 400 (one log line) to a body that is not a Telegram Update."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from pydantic import ValidationError

log = logging.getLogger(__name__)


class UnreadableUpdate(Exception):
    """The webhook body is not JSON, or not an Update; the message says which (never the body itself)."""


async def read_update(bot: Bot, request: web.Request) -> Update:
    """The request's Update, parsed the way aiogram does, or UnreadableUpdate."""
    try:
        data = bot.session.json_loads(await request.text())
    except (ValueError, LookupError) as exc:  # JSON and decoding errors; LookupError: an unknown charset
        raise UnreadableUpdate(f"not JSON ({type(exc).__name__}: {exc})") from None
    try:
        return Update.model_validate(data, context={"bot": bot})
    except ValidationError as exc:
        # Only where and what: pydantic's own message would quote the input.
        problems = exc.errors(include_url=False, include_input=False, include_context=False)
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"]) or "update"
        raise UnreadableUpdate(f"not an Update ({len(problems)} problem(s); {where}: {first['msg']})") from None


class CheckedRequestHandler(SimpleRequestHandler):
    """SimpleRequestHandler that parses the Update before answering, so a bad body gets 400, not 500 or a
    background traceback. The secret token is still checked first, by `handle`."""

    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            update = await read_update(bot, request)
        except UnreadableUpdate as exc:
            return _bad_request(exc)
        task = asyncio.create_task(self._feed_in_background(bot, update))
        self._background_feed_update_tasks.add(task)
        task.add_done_callback(self._background_feed_update_tasks.discard)
        return web.json_response({}, dumps=bot.session.json_dumps)

    async def _handle_request(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            update = await read_update(bot, request)
        except UnreadableUpdate as exc:
            return _bad_request(exc)
        result: TelegramMethod[Any] | None = await self.dispatcher.feed_webhook_update(bot, update, **self.data)
        return web.Response(body=self._build_response_writer(bot=bot, result=result))

    async def _feed_in_background(self, bot: Bot, update: Update) -> None:
        try:
            result = await self.dispatcher.feed_update(bot, update, **self.data)
        except Exception as exc:
            # The dispatcher's error handler has seen handler failures; this is what escaped it.
            log.error("telegram update %s failed: %s: %s", update.update_id, type(exc).__name__, exc)
            return
        if isinstance(result, TelegramMethod):
            await self.dispatcher.silent_call_request(bot=bot, result=result)


def _bad_request(exc: UnreadableUpdate) -> web.Response:
    log.warning("telegram webhook: answered 400 to a body that is %s", exc)
    return web.json_response({"ok": False, "error": "bad update"}, status=400)
