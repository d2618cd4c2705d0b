"""TelegramSurface: sends and edits one answer's messages, mapping Telegram errors to surface errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    FSInputFile,
    InputMediaPhoto,
    ReplyParameters,
)

from bots.telegram.fast_methods import NO_PREVIEW_JSON, ChatAction, EditText, SendText, SentMessage
from bots.telegram.keyboards import KeyboardCache
from bots.telegram.markdown import TelegramText, measure_interim, plain, render_interim, render_markdown
from core.controls.model import Controls
from core.files.model import ProducedFile
from core.render.surface import (
    SurfaceBlocked,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)
from core.texts import Lang

log = logging.getLogger(__name__)

T = TypeVar("T")

# Telegram's cap is 4096 UTF-16 units; 4000 leaves a margin.
TELEGRAM_LIMITS = SurfaceLimits(max_length=4000, cursor_length=2)
CURSOR = " ▌"
GENERAL_TOPIC = 1
PHOTO_LIMIT = 10 * 1024 * 1024  # sendPhoto's cap; bigger pictures go as documents
ALBUM_MAX = 10
# What sendPhoto answers for a picture Telegram will not show as a photo: it still goes, as a document.
_PHOTO_REFUSALS = ("photo_invalid_dimensions", "image_process_failed", "photo_save_file_invalid")
# What a call fails with when the Bot API is unreachable or answers with something that is not the API
# (a proxy's HTML error page): the next attempt may well work.
UNREACHABLE = (ClientDecodeError, TelegramNetworkError, TelegramServerError, aiohttp.ClientError, TimeoutError, OSError)


class TelegramSurface:
    """One answer in one chat (and topic). The first message replies to the user's message; `controls`
    show as an inline keyboard (in `lang`), and a message sent or edited without any shows none."""

    limits = TELEGRAM_LIMITS

    def __init__(
        self,
        bot: Bot,
        *,
        chat_id: int,
        thread_id: int | None = None,
        reply_to: int | None = None,
        lang: Lang = "en",
    ) -> None:
        self._bot = bot
        self._keyboards = KeyboardCache(lang)
        self.chat_id = chat_id
        # Telegram rejects message_thread_id=1 (the General topic) on sends.
        self._thread_id = thread_id if thread_id != GENERAL_TOPIC else None
        self._reply_to = reply_to
        self._plain_only = False
        self.calls = 0
        self.migrated_from: int | None = None  # the group this answer left when it became a supergroup
        self._left_behind: set[int] = set()  # messages in the old group, handed back as gone
        self._delivered: set[Path] = set()  # files `attach` already sent (it is retried after rate limits)

    def measure(self, markdown: str) -> int:
        # Paragraphs already rendered for earlier frames are not rendered again; `render_interim` gives
        # the same length as a whole rendering wherever it renders paragraph by paragraph.
        return measure_interim(markdown)

    def _render(self, markdown: str, *, final: bool) -> TelegramText:
        if self._plain_only:
            content = plain(markdown)
        else:
            content = render_markdown(markdown) if final else render_interim(markdown)
        if final:
            return content
        # The cursor goes after the rendered text, outside any entity (and any open code block).
        return content.with_suffix(CURSOR)

    async def send(self, markdown: str, *, final: bool, controls: Controls | None = None) -> int:
        keyboard = self._keyboards.get(controls)

        async def call(content: TelegramText) -> SentMessage:
            reply = (
                json.dumps({"message_id": self._reply_to, "allow_sending_without_reply": True})
                if self._reply_to is not None
                else None
            )
            method = SendText(
                chat_id=self.chat_id,
                text=content.text,
                entities=content.entities_json(),
                message_thread_id=self._thread_id,
                reply_parameters=reply,
                link_preview_options=NO_PREVIEW_JSON,
                reply_markup=keyboard,
            )
            return await self._bot(method)

        message = await self._call(markdown, call, final=final)
        if message is None:
            raise SurfaceTransient("telegram returned no message")
        return message.message_id

    async def edit(self, handle: int, markdown: str, *, final: bool, controls: Controls | None = None) -> int:
        keyboard = self._keyboards.get(controls)

        async def call(content: TelegramText) -> SentMessage | bool:
            method = EditText(
                chat_id=self.chat_id,
                message_id=handle,
                text=content.text,
                entities=content.entities_json(),
                link_preview_options=NO_PREVIEW_JSON,
                reply_markup=keyboard,
            )
            return await self._bot(method)

        await self._call(markdown, call, final=final)
        return handle

    def _reply(self) -> ReplyParameters | None:
        if self._reply_to is None:
            return None
        return ReplyParameters(message_id=self._reply_to, allow_sending_without_reply=True)

    async def attach(self, files: Sequence[ProducedFile]) -> None:
        """Deliver the answer's files: pictures as photos (2-10 as an album), everything else as documents.

        Files already delivered are skipped, so a retry after a rate limit sends only the rest."""
        pending = [file for file in files if file.path not in self._delivered]
        photos = [file for file in pending if file.kind == "image" and file.size <= PHOTO_LIMIT]
        documents = [file for file in pending if file not in photos]
        for start in range(0, len(photos), ALBUM_MAX):
            batch = photos[start : start + ALBUM_MAX]
            if len(batch) == 1:
                await self._send_photo(batch[0])
            else:
                await self._send_album(batch)
        for file in documents:
            await self._send_document(file)

    async def _send_photo(self, file: ProducedFile) -> None:
        try:
            await self._file_call(
                lambda: self._bot.send_photo(
                    chat_id=self.chat_id,
                    photo=FSInputFile(file.path, filename=file.name),
                    message_thread_id=self._thread_id,
                    reply_parameters=self._reply(),
                )
            )
        except _PhotoRefused:
            log.info("telegram refused %s as a photo; sending it as a document", file.name)
            await self._send_document(file)
            return
        self._delivered.add(file.path)

    async def _send_album(self, batch: Sequence[ProducedFile]) -> None:
        try:
            await self._file_call(
                lambda: self._bot.send_media_group(
                    chat_id=self.chat_id,
                    media=[InputMediaPhoto(media=FSInputFile(file.path, filename=file.name)) for file in batch],
                    message_thread_id=self._thread_id,
                    reply_parameters=self._reply(),
                )
            )
        except _PhotoRefused:
            for file in batch:  # find the picture Telegram refused: the others still go as photos
                await self._send_photo(file)
            return
        self._delivered.update(file.path for file in batch)

    async def _send_document(self, file: ProducedFile) -> None:
        await self._file_call(
            lambda: self._bot.send_document(
                chat_id=self.chat_id,
                document=FSInputFile(file.path, filename=file.name),
                message_thread_id=self._thread_id,
                reply_parameters=self._reply(),
            )
        )
        self._delivered.add(file.path)

    async def _file_call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One file upload (the file streams from disk), with Telegram's errors mapped like `_call` does."""
        for _ in range(3):
            self.calls += 1
            try:
                return await call()
            except TelegramEntityTooLarge as exc:
                raise SurfaceTooLong("telegram refused the file as too large") from exc
            except TelegramBadRequest as exc:
                reason = exc.message.lower()
                if any(sign in reason for sign in _PHOTO_REFUSALS):
                    raise _PhotoRefused(reason) from exc
                if "message thread not found" in reason and self._thread_id is not None:
                    self._thread_id = None
                    continue
                raise _map_bad_request(reason) from exc
            except TelegramMigrateToChat as exc:
                self._follow_migration(exc)
                continue
            except (TelegramAPIError, *UNREACHABLE) as exc:
                raise _failure(exc) from exc
        raise SurfaceTransient("telegram kept refusing the file")

    def _follow_migration(self, exc: TelegramMigrateToChat) -> None:
        """Go on in the supergroup the group became; a migration to the same chat is a transient failure."""
        old_chat = self.chat_id
        self._migrate(exc.migrate_to_chat_id)
        if self.chat_id == old_chat:
            raise SurfaceTransient("telegram moved the chat to itself") from exc

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
            await self._bot(ChatAction(chat_id=self.chat_id, action="typing", message_thread_id=self._thread_id))
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
                self._follow_migration(exc)
                if isinstance(handle := getattr(exc.method, "message_id", None), int):
                    self._left_behind.add(handle)
                    raise SurfaceMessageGone("the group became a supergroup") from exc
                continue  # a new message: send it to the supergroup
            except (TelegramAPIError, *UNREACHABLE) as exc:
                raise _failure(exc) from exc
        raise SurfaceTransient("telegram kept refusing the message")


def _failure(exc: BaseException) -> Exception:
    """What a Bot API failure other than a Bad Request or a chat migration means for the answer."""
    if isinstance(exc, TelegramRetryAfter):
        return SurfaceRateLimited(float(exc.retry_after))
    if isinstance(exc, TelegramForbiddenError | TelegramUnauthorizedError):
        return SurfaceBlocked(exc.message)
    if isinstance(exc, TelegramAPIError):
        return SurfaceTransient(exc.message)
    if isinstance(exc, ClientDecodeError):  # e.g. a proxy's HTML 502 page instead of the Bot API's JSON
        return SurfaceTransient("telegram answered with something other than the Bot API")
    return SurfaceTransient(type(exc).__name__)  # the network, a timeout


class _PhotoRefused(Exception):
    """Telegram will not take this picture as a photo (size, shape or format); it can go as a document."""


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
