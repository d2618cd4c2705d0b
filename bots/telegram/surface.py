"""TelegramSurface: sends and edits one answer's messages, mapping Telegram errors to surface errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import LinkPreviewOptions, Message, ReplyParameters

from bots.telegram.markdown import TelegramText, measure, plain, render_markdown
from core.render.surface import (
    SurfaceBlocked,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Telegram's cap is 4096 UTF-16 units; 4000 leaves a margin.
TELEGRAM_LIMITS = SurfaceLimits(max_length=4000, cursor_length=2)
CURSOR = " ▌"
GENERAL_TOPIC = 1
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class TelegramSurface:
    """One answer in one chat (and topic). The first message replies to the user's message."""

    limits = TELEGRAM_LIMITS

    def __init__(self, bot: Bot, *, chat_id: int, thread_id: int | None = None, reply_to: int | None = None) -> None:
        self._bot = bot
        self.chat_id = chat_id
        # Telegram rejects message_thread_id=1 (the General topic) on sends.
        self._thread_id = thread_id if thread_id != GENERAL_TOPIC else None
        self._reply_to = reply_to
        self._plain_only = False
        self.calls = 0

    def measure(self, markdown: str) -> int:
        return measure(markdown)

    def _render(self, markdown: str, *, final: bool) -> TelegramText:
        content = plain(markdown) if self._plain_only else render_markdown(markdown)
        if final:
            return content
        # The cursor goes after the rendered text, outside any entity (and any open code block).
        return TelegramText(text=content.text + CURSOR, entities=content.entities)

    async def send(self, markdown: str, *, final: bool) -> int:
        async def call(content: TelegramText) -> Message:
            reply = (
                ReplyParameters(message_id=self._reply_to, allow_sending_without_reply=True)
                if self._reply_to is not None
                else None
            )
            return await self._bot.send_message(
                chat_id=self.chat_id,
                text=content.text,
                entities=content.entities or None,
                parse_mode=None,
                message_thread_id=self._thread_id,
                reply_parameters=reply,
                link_preview_options=NO_PREVIEW,
            )

        message = await self._call(markdown, call, final=final)
        if message is None:
            raise SurfaceTransient("telegram returned no message")
        return message.message_id

    async def edit(self, handle: int, markdown: str, *, final: bool) -> int:
        async def call(content: TelegramText) -> Any:
            return await self._bot.edit_message_text(
                chat_id=self.chat_id,
                message_id=handle,
                text=content.text,
                entities=content.entities or None,
                parse_mode=None,
                link_preview_options=NO_PREVIEW,
            )

        await self._call(markdown, call, final=final)
        return handle

    async def delete(self, handle: int) -> None:
        try:
            await self._bot.delete_message(chat_id=self.chat_id, message_id=handle)
        except TelegramAPIError as exc:
            log.info("could not delete message %s: %s", handle, exc.message)

    async def typing(self) -> None:
        await self._bot.send_chat_action(chat_id=self.chat_id, action="typing", message_thread_id=self._thread_id)

    async def status(self, text: str) -> None:
        """Unused: Telegram shows progress as a placeholder message."""

    async def _call(self, markdown: str, call: Callable[[TelegramText], Awaitable[T]], *, final: bool) -> T | None:
        content = self._render(markdown, final=final)
        for _ in range(3):
            self.calls += 1
            try:
                return await call(content)
            except TelegramBadRequest as exc:
                reason = exc.message.lower()
                if "message is not modified" in reason:
                    return None  # identical content is success
                if "can't parse entities" in reason and not self._plain_only:
                    log.info("telegram refused the formatting; resending as plain text")
                    self._plain_only = True
                    content = self._render(markdown, final=final)
                    continue
                if "message thread not found" in reason and self._thread_id is not None:
                    self._thread_id = None  # the topic is gone: answer in the chat itself
                    continue
                raise _map_bad_request(reason) from exc
            except TelegramRetryAfter as exc:
                raise SurfaceRateLimited(float(exc.retry_after)) from exc
            except (TelegramForbiddenError, TelegramUnauthorizedError) as exc:
                raise SurfaceBlocked(exc.message) from exc
            except (TelegramNetworkError, TelegramServerError) as exc:
                raise SurfaceTransient(exc.message) from exc
            except TelegramAPIError as exc:
                raise SurfaceTransient(exc.message) from exc
        raise SurfaceTransient("telegram kept refusing the message")


def _map_bad_request(reason: str) -> Exception:
    if "message to edit not found" in reason or "message can't be edited" in reason:
        return SurfaceMessageGone(reason)
    if "too long" in reason or "message_too_long" in reason:
        return SurfaceTooLong(reason)
    if "message to be replied not found" in reason:
        return SurfaceMessageGone(reason)
    if any(sign in reason for sign in _NO_WAY_IN):
        return SurfaceBlocked(reason)
    return SurfaceTransient(reason)


# Bad Request answers that mean the bot cannot write to the chat at all: retrying never helps.
_NO_WAY_IN = ("chat not found", "not enough rights", "have no rights", "chat_write_forbidden", "need administrator")
