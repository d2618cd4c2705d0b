"""The fake Telegram's file side, driven by the real aiogram Bot: getFile, downloads and sending files."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramEntityTooLarge, TelegramRetryAfter
from aiogram.types import (
    BufferedInputFile,
    FSInputFile,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
    Update,
)

from tests.fakes.telegram import FakeTelegram, ManualClock
from tests.fakes.telegram_files import (
    FILE_TOO_BIG,
    IMAGE_PROCESS_FAILED,
    MEDIA_GROUP_COUNT,
    MEDIA_GROUP_MIXED,
    PHOTO_INVALID_DIMENSIONS,
    WRONG_FILE_ID,
    generated_bytes,
)

PRIVATE = 42
MB = 1024 * 1024


def png(width: int, height: int) -> bytes:
    """A real PNG header (and an empty image body) of the given size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.url))
    client = Bot(fake.token, session=session)
    try:
        yield client
    finally:
        await client.session.close()


async def test_photo_update_has_three_sizes_and_the_largest_downloads_as_registered(
    fake: FakeTelegram, bot: Bot, tmp_path: Path
) -> None:
    data = png(1280, 960) + b"photo-body" * 100
    photo = fake.files.add(data, kind="photo")
    update = Update.model_validate(
        fake.media_update(chat_id=PRIVATE, user_id=7, kind="photo", file=photo, caption="what is this?")
    )
    message = update.message
    assert message is not None and message.photo is not None and message.caption == "what is this?"
    assert len(message.photo) == 3
    largest = max(message.photo, key=lambda size: size.width * size.height)
    assert largest.file_id == photo.file_id
    info = await bot.get_file(largest.file_id)
    assert info.file_path is not None and info.file_path.startswith("photos/") and info.file_size == len(data)
    target = tmp_path / "photo.jpg"
    await bot.download_file(info.file_path, destination=target)
    assert target.read_bytes() == data


async def test_voice_update_looks_like_telegrams(fake: FakeTelegram, bot: Bot) -> None:
    voice = fake.files.add(b"OggS" + b"\0" * 100, kind="voice")
    message = Update.model_validate(fake.media_update(chat_id=PRIVATE, user_id=7, kind="voice", file=voice)).message
    assert message is not None and message.voice is not None
    assert message.voice.mime_type == "audio/ogg"
    info = await bot.get_file(message.voice.file_id)
    assert info.file_path is not None and info.file_path.startswith("voice/") and info.file_path.endswith(".oga")


async def test_get_file_refuses_files_over_20_mb_and_unknown_ids(fake: FakeTelegram, bot: Bot) -> None:
    huge = fake.files.add(size=25 * MB)  # nothing is allocated for it
    with pytest.raises(TelegramBadRequest) as too_big:
        await bot.get_file(huge.file_id)
    assert too_big.value.message == FILE_TOO_BIG
    with pytest.raises(TelegramBadRequest) as unknown:
        await bot.get_file("AgACnope")
    assert unknown.value.message == WRONG_FILE_ID


async def test_a_generated_file_streams_its_size(fake: FakeTelegram, bot: Bot) -> None:
    big = fake.files.add(size=3 * MB + 5)
    info = await bot.get_file(big.file_id)
    assert info.file_path is not None
    url = bot.session.api.file_url(bot.token, info.file_path)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.read()
    assert len(body) == 3 * MB + 5 and body[:1000] == generated_bytes(1000)


async def test_download_route_needs_the_token_a_known_path_and_obeys_the_failure_knob(
    fake: FakeTelegram, bot: Bot
) -> None:
    doc = fake.files.add(b"%PDF-1.4 hello", ext="pdf")
    info = await bot.get_file(doc.file_id)
    assert info.file_path is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.url}/file/bot123:WRONG/{info.file_path}") as response:
            assert response.status == 404
        async with session.get(f"{fake.url}/file/bot{fake.token}/documents/unknown.pdf") as response:
            assert response.status == 404
        fake.files.fail_downloads(1, status=502)
        url = f"{fake.url}/file/bot{fake.token}/{info.file_path}"
        async with session.get(url) as response:
            assert response.status == 502
        async with session.get(url) as response:
            assert response.status == 200 and await response.read() == b"%PDF-1.4 hello"
        fake.files.expire_paths()
        async with session.get(url) as response:
            assert response.status == 404
    assert fake.files.downloads == [info.file_path]


async def test_send_photo_keeps_the_bytes_and_where_it_went(fake: FakeTelegram, bot: Bot, tmp_path: Path) -> None:
    picture = tmp_path / "chart.png"
    picture.write_bytes(png(800, 600))
    sent = await bot.send_photo(
        PRIVATE,
        FSInputFile(picture),
        reply_parameters=ReplyParameters(message_id=5, allow_sending_without_reply=True),
    )
    assert isinstance(sent, Message) and sent.photo
    [record] = fake.files.sent_to(PRIVATE)
    assert (record.method, record.kind, record.data, record.filename) == (
        "sendPhoto",
        "photo",
        picture.read_bytes(),
        "chart.png",
    )
    assert record.reply_to == 5


async def test_send_photo_refuses_what_telegram_refuses(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    with pytest.raises(TelegramBadRequest) as not_image:
        await bot.send_photo(PRIVATE, BufferedInputFile(b"plain text", filename="a.png"))
    assert not_image.value.message == IMAGE_PROCESS_FAILED
    clock.advance(2)
    with pytest.raises(TelegramBadRequest) as thin:
        await bot.send_photo(PRIVATE, BufferedInputFile(png(4000, 100), filename="strip.png"))
    assert thin.value.message == PHOTO_INVALID_DIMENSIONS
    clock.advance(2)
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_photo(PRIVATE, BufferedInputFile(png(10, 10) + bytes(11 * MB), filename="big.png"))
    assert fake.files.sent == []


async def test_send_media_group_rules(fake: FakeTelegram, bot: Bot, clock: ManualClock) -> None:
    one = [InputMediaPhoto(media=BufferedInputFile(png(10, 10), filename="a.png"))]
    with pytest.raises(TelegramBadRequest) as count:
        await bot.send_media_group(PRIVATE, media=one)  # type: ignore[arg-type]
    assert count.value.message == MEDIA_GROUP_COUNT
    mixed = [
        InputMediaPhoto(media=BufferedInputFile(png(10, 10), filename="a.png")),
        InputMediaDocument(media=BufferedInputFile(b"doc", filename="b.txt")),
    ]
    with pytest.raises(TelegramBadRequest) as mix:
        await bot.send_media_group(PRIVATE, media=mixed)  # type: ignore[arg-type]
    assert mix.value.message == MEDIA_GROUP_MIXED
    pictures = [png(10 + i, 10) for i in range(3)]
    album = [InputMediaPhoto(media=BufferedInputFile(data, filename=f"{i}.png")) for i, data in enumerate(pictures)]
    sent = await bot.send_media_group(PRIVATE, media=album)  # type: ignore[arg-type]
    assert len(sent) == 3 and len({message.media_group_id for message in sent}) == 1
    assert [record.data for record in fake.files.sent_to(PRIVATE)] == pictures
    clock.advance(0.1)
    with pytest.raises(TelegramRetryAfter):  # an album counts against the chat's flood budget
        await bot.send_photo(PRIVATE, BufferedInputFile(png(10, 10), filename="again.png"))
