"""The dispatcher's error handler: a failed update becomes one log line, and polling or the webhook go on."""

from __future__ import annotations

import logging

import aiohttp
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from core.errors import BotError
from core.logs import Redactor
from core.render.surface import SurfaceBusy, SurfaceError

log = logging.getLogger(__name__)


class SharedBudgetBusy(SurfaceBusy):
    """Another replica has just used the chat's slot, so no call was made: the surface passes this on as
    SurfaceBusy (an interim frame is skipped, a final one waits)."""


# Failures of Dify, Redis, Telegram or the network: worth a line, not a traceback.
EXPECTED_ERRORS = (BotError, TelegramAPIError, SurfaceError, aiohttp.ClientError, TimeoutError)


async def log_update_error(event: ErrorEvent, bot: Bot) -> bool:
    """Log the failure once; returning marks the update handled, so aiogram logs no traceback of its own."""
    exc = event.exception
    # aiogram's network errors can quote a Bot API URL, which carries the token.
    message = Redactor([bot.token])(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, EXPECTED_ERRORS):
        log.warning("telegram update %s failed: %s", event.update.update_id, message)
    else:
        log.error("telegram update %s failed: %s", event.update.update_id, message, exc_info=exc)
    return True


def handle_errors(dispatcher: Dispatcher) -> None:
    """Register the error handler on the root router, where every router's failures end up."""
    dispatcher.errors.register(log_update_error)
