"""TelegramSurface: sends and edits one answer's messages, mapping Telegram errors to surface errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
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
# What a call fails with when the Bot API is unreachable or answers with something that is not the API
# (a proxy's HTML error page): the next attempt may well work.
UNREACHABLE = (ClientDecodeError, TelegramNetworkError, TelegramServerError, aiohttp.ClientError, TimeoutError, OSError)


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
        self.migrated_from: int | None = None  # the group this answer left when it became a supergroup
        self._left_behind: set[int] = set()  # messages in the old group, handed back as gone

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
        chat_id = self.chat_id
        if handle in self._left_behind and self.migrated_from is not None:
            # Message ids count per chat: this one belongs to the old group, not to the supergroup.
            self._left_behind.discard(handle)
            chat_id = self.migrated_from
        try:
            await self._bot.delete_message(chat_id=chat_id, message_id=handle)
        except TelegramAPIError as exc:
            log.info("could not delete message %s: %s", handle, exc.message)
        except UNREACHABLE as exc:
            log.info("could not delete message %s: %s", handle, type(exc).__name__)

    async def typing(self) -> None:
        """Best effort: never raises."""
        try:
            await self._bot.send_chat_action(chat_id=self.chat_id, action="typing", message_thread_id=self._thread_id)
        except TelegramMigrateToChat as exc:
            self._migrate(exc.migrate_to_chat_id)
        except (TelegramAPIError, *UNREACHABLE) as exc:
            log.debug("typing failed: %s", type(exc).__name__)

    def _migrate(self, new_chat_id: int) -> None:
        """The group became a supergroup: answer there from now on, without replying to a message of the old one."""
        if new_chat_id == self.chat_id:
            return
        log.info("chat %s became supergroup %s; answering there", self.chat_id, new_chat_id)
        self.migrated_from = self.chat_id
        self.chat_id = new_chat_id
        self._reply_to = None

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
            except TelegramMigrateToChat as exc:
                old_chat = self.chat_id
                self._migrate(exc.migrate_to_chat_id)
                if self.chat_id == old_chat:
                    raise SurfaceTransient("telegram moved the chat to itself") from exc
                if isinstance(handle := getattr(exc.method, "message_id", None), int):
                    self._left_behind.add(handle)
                    raise SurfaceMessageGone("the group became a supergroup") from exc
                continue  # a new message: send it to the supergroup
            except TelegramRetryAfter as exc:
                raise SurfaceRateLimited(float(exc.retry_after)) from exc
            except (TelegramForbiddenError, TelegramUnauthorizedError) as exc:
                raise SurfaceBlocked(exc.message) from exc
            except (TelegramNetworkError, TelegramServerError) as exc:
                raise SurfaceTransient(exc.message) from exc
            except TelegramAPIError as exc:
                raise SurfaceTransient(exc.message) from exc
            except ClientDecodeError as exc:  # e.g. a proxy's HTML 502 page instead of the Bot API's JSON
                raise SurfaceTransient("telegram answered with something other than the Bot API") from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise SurfaceTransient(type(exc).__name__) from exc
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
