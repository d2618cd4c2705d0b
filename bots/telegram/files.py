"""Files in a Telegram message as IncomingFiles: what each one is, and how to download it without leaking the token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import Message, PhotoSize

from core.files.model import CHUNK, FileFetchFailed, FileProblem, IncomingFile

log = logging.getLogger(__name__)

MAX_DOWNLOAD = 20 * 1024 * 1024  # the public Bot API's getFile cap
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


def has_files(message: Message) -> bool:
    """True for the kinds of message whose file the bot can pass on (not stickers, locations, …)."""
    return bool(
        message.photo or message.document or message.audio or message.video or message.voice or message.video_note
    )


def download_cap(bot: Bot) -> int | None:
    """The most a bot may download: 20 MB from the public Bot API, no cap from a local Bot API server."""
    return None if bot.session.api.is_local else MAX_DOWNLOAD


def incoming_files(message: Message, bot: Bot) -> list[IncomingFile]:
    """The message's file as core sees it (none for a message without one)."""
    limit = download_cap(bot)
    if message.photo:
        size = largest_photo(message.photo, limit=limit)
        return [_incoming(bot, size.file_id, "photo.jpg", "image/jpeg", size.file_size, limit=limit)]
    if message.document:
        doc = message.document
        name = doc.file_name or "document" + _extension(doc.mime_type)
        return [_incoming(bot, doc.file_id, name, doc.mime_type or "", doc.file_size, limit=limit)]
    if message.audio:
        audio = message.audio
        name = audio.file_name or "audio" + (_extension(audio.mime_type) or ".mp3")
        return [_incoming(bot, audio.file_id, name, audio.mime_type or "", audio.file_size, limit=limit)]
    if message.video:
        video = message.video
        name = video.file_name or "video" + (_extension(video.mime_type) or ".mp4")
        return [_incoming(bot, video.file_id, name, video.mime_type or "video/mp4", video.file_size, limit=limit)]
    if message.voice:
        voice = message.voice
        mime = voice.mime_type or "audio/ogg"
        return [_incoming(bot, voice.file_id, "voice.ogg", mime, voice.file_size, limit=limit, voice=True)]
    if message.video_note:
        note = message.video_note
        return [_incoming(bot, note.file_id, "video_note.mp4", "video/mp4", note.file_size, limit=limit)]
    return []


def largest_photo(sizes: list[PhotoSize], *, limit: int | None) -> PhotoSize:
    """The biggest rendition the bot may download (Telegram's order is not a promise)."""
    fits = [size for size in sizes if limit is None or size.file_size is None or size.file_size <= limit]
    return max(fits or sizes, key=lambda size: (size.width * size.height, size.file_size or 0))


_EXTENSIONS = {
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/ogg": ".ogg",
    "video/mp4": ".mp4",
}


def _extension(mime: str | None) -> str:
    return _EXTENSIONS.get((mime or "").lower(), "")


def _incoming(
    bot: Bot, file_id: str, name: str, mime: str, size: int | None, *, limit: int | None, voice: bool = False
) -> IncomingFile:
    def fetch() -> AsyncIterator[bytes]:
        return download(bot, file_id, limit=limit)

    return IncomingFile(name=name, mime=mime, size=size, fetch=fetch, voice=voice, platform_limit=limit)


async def download(bot: Bot, file_id: str, *, limit: int | None = MAX_DOWNLOAD) -> AsyncIterator[bytes]:
    """getFile, then the file's bytes in chunks. Every error is a FileProblem whose text holds no URL or token."""
    try:
        info = await bot.get_file(file_id)
    except TelegramBadRequest as exc:
        if "file is too big" in exc.message.lower():
            raise FileProblem("too_large", "telegram: file is too big", limit_mb="20") from None
        raise FileFetchFailed(f"telegram getFile failed: {exc.message}") from None
    except TelegramAPIError as exc:
        raise FileFetchFailed(f"telegram getFile failed: {exc.message}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise FileFetchFailed(f"telegram getFile failed: {type(exc).__name__}") from None
    if not info.file_path:
        raise FileFetchFailed("telegram getFile returned no file path")
    api = bot.session.api
    if api.is_local:
        async for chunk in _local_chunks(Path(api.wrap_local_file.to_local(info.file_path))):
            yield chunk
        return
    url = api.file_url(bot.token, info.file_path)
    if not isinstance(bot.session, AiohttpSession):
        raise FileFetchFailed("telegram download needs the aiohttp session")
    session = await bot.session.create_session()  # the bot's own pool (and proxy)
    received = 0
    try:
        async with session.get(url, timeout=DOWNLOAD_TIMEOUT) as response:
            if response.status != 200:
                raise FileFetchFailed(f"telegram download failed: HTTP {response.status}")
            async for chunk in response.content.iter_chunked(CHUNK):
                received += len(chunk)
                if limit is not None and received > limit:
                    raise FileProblem("too_large", "telegram: file is too big", limit_mb="20")
                yield chunk
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # aiohttp's messages carry the URL, and with it the bot token: only the error's type is kept.
        raise FileFetchFailed(f"telegram download failed: {type(exc).__name__}") from None


async def _local_chunks(path: Path) -> AsyncIterator[bytes]:
    try:
        with path.open("rb") as handle:
            while block := handle.read(CHUNK):
                yield block
    except OSError as exc:
        raise FileFetchFailed(f"telegram local file unreadable: {type(exc).__name__}") from None
