"""SharedChatBudget: the Bot API calls that count against a chat take its budget in Redis, shared by replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from bots.telegram.errors import SharedBudgetBusy
from bots.telegram.surface import CURSOR
from core.shared_budgets import Bucket, Interval, SharedBudgets

__all__ = ["CHAT_METHODS", "SEND_METHODS", "SharedChatBudget"]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# New messages: they count against the chat and, when TELEGRAM_GLOBAL_RATE is set, against the bot.
SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
        "sendAudio",
        "sendVoice",
        "sendVideo",
        "sendAnimation",
        "sendSticker",
        "copyMessage",
        "forwardMessage",
    }
)
# Telegram counts sends, edits and deletes against one per-chat budget (chat actions do not count).
CHAT_METHODS = SEND_METHODS | {
    "editMessageText",
    "editMessageCaption",
    "editMessageMedia",
    "editMessageReplyMarkup",
    "deleteMessage",
}
# Two replicas' calls travel on different connections: leave room for one arriving a little late
# (a tenth of the interval, at most this many milliseconds).
CROSS_REPLICA_MARGIN_MS = 100
# A call that must not be skipped waits inline up to this long; past it the caller gets SharedBudgetBusy
# and decides (the renderer keeps a final frame trying until its own deadline).
MAX_INLINE_WAIT = 10.0


class SharedChatBudget(BaseRequestMiddleware):
    """Takes the chat's shared slot (private chats one per `private_interval`, a group one per
    `group_interval` for all its topics) before each counted call, and the bot's budget for new messages
    when `global_rate` (messages per second) is set. An interim frame (one ending in the typing cursor)
    that finds the slot taken by another replica is not sent: SharedBudgetBusy, and the renderer skips it.
    Anything else waits for the slot. A "retry after" pauses the chat for every replica."""

    def __init__(
        self,
        budgets: SharedBudgets,
        *,
        bot_id: int,
        private_interval: float,
        group_interval: float,
        global_rate: float = 0.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._budgets = budgets
        self._prefix = f"telegram:{bot_id}"
        self._private = _slot(private_interval)
        self._group = _slot(group_interval)
        self._global = Bucket(per_minute=global_rate * 60, burst=max(1, int(global_rate))) if global_rate > 0 else None
        self._sleep = sleep

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        name = method.__api_method__
        chat_id = getattr(method, "chat_id", None)
        if name not in CHAT_METHODS or not isinstance(chat_id, int) or isinstance(chat_id, bool):
            return await make_request(bot, method)
        scope = f"{self._prefix}:chat:{chat_id}"
        skippable = _interim(method)
        # Positive ids are users (private chats); groups, supergroups and channels are negative.
        await self._take(scope, self._private if chat_id > 0 else self._group, skippable)
        if self._global is not None and name in SEND_METHODS:  # after the chat's: a busy chat spends none
            await self._take(f"{self._prefix}:sends", self._global, skippable)
        try:
            return await make_request(bot, method)
        except TelegramRetryAfter as exc:
            await self._budgets.pause(scope, exc.retry_after * 1000)
            raise

    async def _take(self, scope: str, rate: Interval | Bucket, skippable: bool) -> None:
        waited = 0.0
        while wait_ms := await self._budgets.take(scope, rate):
            wait = wait_ms / 1000
            if skippable or waited + wait > MAX_INLINE_WAIT:
                raise SharedBudgetBusy(wait)
            await self._sleep(wait)
            waited += wait


def _slot(seconds: float) -> Interval:
    ms = round(seconds * 1000)
    return Interval(ms, min(CROSS_REPLICA_MARGIN_MS, ms // 10))


def _interim(method: TelegramMethod[TelegramType]) -> bool:
    """An interim frame of an answer: the surface shows the typing cursor only on those."""
    text = getattr(method, "text", None)
    return isinstance(text, str) and text.endswith(CURSOR)
