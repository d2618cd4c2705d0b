"""Telegram files end to end: photos, documents, albums and voice reach the Dify app; files it makes reach the chat."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import Message, PhotoSize
from redis.asyncio import Redis

from bots.telegram.addressing import chat_key
from bots.telegram.albums import AlbumCollector
from bots.telegram.files import download, largest_photo
from bots.telegram.handlers import origin_of
from core.files.model import FileFetchFailed, FileProblem
from core.journal import JournalEntry, JournalMessage
from core.keys import RedisKeys
from core.texts import friendly_error, text
from tests.e2e.telegram_harness import TOKEN, TelegramHarness, eventually, rendered, telegram_bot
from tests.fakes.dify import Transcript
from tests.fakes.dify_files import FileUpload
from tests.fakes.dify_transcripts import agent_tool_image, chatflow_with_files

MB = 1024 * 1024
CHAT = 42
GROUP = -100777
IMAGES_AND_DOCUMENTS = {"file_upload": FileUpload(enabled=True, allowed_file_types=["image", "document"])}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
VOICE = Path(__file__).resolve().parent.parent / "data" / "voice.ogg"


def png(width: int = 160, height: int = 120, *, seed: int = 1) -> bytes:
    """A real PNG of noise (barely compressible, so larger than one 64 KiB download chunk)."""
    noise = random.Random(seed)
    rows = b"".join(b"\x00" + noise.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(params=["polling", "webhook"])
async def bot(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(
        redis_url=redis_url,
        key_prefix=key_prefix,
        webhook=request.param == "webhook",
        dify_options=IMAGES_AND_DOCUMENTS,
    ) as harness:
        yield harness


@pytest.fixture
async def polling_bot(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_options=IMAGES_AND_DOCUMENTS) as harness:
        yield harness


def assert_token_never_reached_dify(bot: TelegramHarness) -> None:
    assert TOKEN not in bot.dify_saw()
    assert TOKEN.split(":", 1)[1] not in bot.dify_saw()
    for stored in bot.dify.uploads.values():
        assert TOKEN.encode() not in stored.data


def uploads_of(bot: TelegramHarness, request: dict[str, Any]) -> list[Any]:
    return [bot.dify.uploads[entry["upload_file_id"]] for entry in request.get("files") or []]


def refusal(problem: FileProblem) -> str:
    """How a refused file shows in the chat: the failed answer's warning line."""
    return "⚠️ " + friendly_error(problem)


def nothing_sent_to_dify(bot: TelegramHarness) -> bool:
    return not bot.dify.chat_requests() and not bot.dify.uploads


async def test_photo_with_caption_is_uploaded_for_the_chats_user_and_the_caption_asked(bot: TelegramHarness) -> None:
    photo = png()
    update = await bot.send_file("photo", photo, caption="what is on this picture?")

    assert await bot.settled() == ["echo: what is on this picture?"]
    (request,) = bot.dify.chat_requests()
    assert request["query"] == "what is on this picture?"
    (entry,) = request["files"]
    assert entry["type"] == "image" and entry["transfer_method"] == "local_file"
    (upload,) = uploads_of(bot, request)
    assert upload.data == photo  # the largest of the photo's sizes, byte for byte
    assert upload.user == request["user"] == "tg-7"
    (answer,) = bot.telegram.chat_messages(CHAT)
    assert answer.reply_to_message_id == update["message"]["message_id"]
    assert_token_never_reached_dify(bot)


async def test_next_question_continues_the_conversation_the_file_started(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file("photo", png(), caption="describe it")
    await polling_bot.settled()
    await polling_bot.say("and the colours?")
    await polling_bot.settled(count=2)
    first, second = polling_bot.dify.chat_requests()
    assert second["conversation_id"] and second["user"] == first["user"]
    assert "files" not in second or not second["files"]


async def test_document_keeps_its_name_and_bytes(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file(
        "document", PDF, ext="pdf", caption="summarize", file_name="policy.pdf", mime_type="application/pdf"
    )

    assert await polling_bot.settled() == ["echo: summarize"]
    (request,) = polling_bot.dify.chat_requests()
    assert [entry["type"] for entry in request["files"]] == ["document"]
    (upload,) = uploads_of(polling_bot, request)
    assert (upload.name, upload.data, upload.user) == ("policy.pdf", PDF, "tg-7")
    assert_token_never_reached_dify(polling_bot)


async def test_file_without_caption_asks_the_default_question(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file("photo", png())

    (reply,) = await polling_bot.settled()
    (request,) = polling_bot.dify.chat_requests()
    assert request["query"].strip() and reply == f"echo: {request['query']}"
    assert len(request["files"]) == 1


async def test_album_of_three_photos_is_one_question_with_three_files(bot: TelegramHarness) -> None:
    pictures = [png(seed=seed) for seed in (1, 2, 3)]
    updates = await bot.send_album(pictures, caption="compare these")

    assert await bot.settled() == ["echo: compare these"]
    await eventually(bot.idle)
    (request,) = bot.dify.chat_requests()
    assert sorted(upload.data for upload in uploads_of(bot, request)) == sorted(pictures)
    assert [entry["type"] for entry in request["files"]] == ["image"] * 3
    (answer,) = bot.telegram.chat_messages(CHAT)
    assert answer.reply_to_message_id == updates[0]["message"]["message_id"]
    assert_token_never_reached_dify(bot)


async def test_voice_note_is_transcribed_shown_and_answered(redis_url: str, key_prefix: str) -> None:
    options = {**IMAGES_AND_DOCUMENTS, "speech_to_text": True}
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_options=options) as bot:
        bot.dify.script_transcript("when does the shop open")
        await bot.send_file("voice", VOICE.read_bytes())

        (shown,) = await bot.settled()
        heard = text("heard", "en", text="when does the shop open")
        assert shown == rendered(heard + "\n\necho: when does the shop open")
        (request,) = bot.dify.chat_requests()
        assert request["query"] == "when does the shop open" and not request.get("files")
        (call,) = bot.dify.files.audio_calls
        assert call.status == 200 and call.detected == "mp3" and call.user == request["user"]
        assert_token_never_reached_dify(bot)


async def test_voice_without_speech_to_text_or_audio_is_refused_kindly(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file("voice", VOICE.read_bytes())

    assert await polling_bot.settled() == [refusal(FileProblem("voice_unsupported"))]
    assert nothing_sent_to_dify(polling_bot)
    assert polling_bot.telegram.count("getFile") == 0


async def test_a_type_the_app_refuses_is_refused_before_any_download(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file("video", b"\x00\x00\x00\x18ftypmp42" + bytes(100), caption="what happens here?")

    (reply,) = await polling_bot.settled()
    assert reply == refusal(FileProblem("type_refused", what=".mp4"))
    assert nothing_sent_to_dify(polling_bot)
    assert polling_bot.telegram.files.downloads == []


async def test_a_25_mb_document_is_too_big_and_nothing_reaches_dify(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file(
        "document", size=25 * MB, ext="pdf", caption="read this", file_name="huge.pdf", mime_type="application/pdf"
    )

    (reply,) = await polling_bot.settled()
    assert reply == refusal(FileProblem("too_large", limit_mb="15"))  # the app's document limit
    assert nothing_sent_to_dify(polling_bot)
    assert polling_bot.telegram.count("getFile") == 0


async def test_a_failed_download_is_a_friendly_sentence_and_nothing_reaches_dify(polling_bot: TelegramHarness) -> None:
    polling_bot.telegram.files.fail_downloads(5, status=502)
    await polling_bot.send_file("photo", png(), caption="look")

    assert await polling_bot.settled() == [refusal(FileFetchFailed())]
    assert nothing_sent_to_dify(polling_bot)
    assert_token_never_reached_dify(polling_bot)


async def test_image_made_by_an_agent_tool_arrives_as_a_photo_with_the_same_bytes(
    redis_url: str, key_prefix: str
) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_mode="agent-chat") as bot:
        chart = png(200, 100, seed=7)
        url = bot.dify.produce(chart, name="chart.png")
        assert url.startswith("/files/tools/")
        bot.dify.script(Transcript(agent_tool_image(url, ["Here is", " the sales chart."])))
        update = await bot.say("draw the sales chart")

        await bot.settled()
        await eventually(lambda: len(bot.telegram.files.sent_to(CHAT)) == 1)
        assert [m.text for m in bot.telegram.chat_messages(CHAT) if m.media is None] == ["Here is the sales chart."]
        (photo,) = bot.telegram.files.sent_to(CHAT)
        assert (photo.method, photo.data) == ("sendPhoto", chart)
        assert photo.reply_to == update["message"]["message_id"]


async def test_group_photo_is_answered_only_when_its_caption_mentions_the_bot(polling_bot: TelegramHarness) -> None:
    await polling_bot.send_file("photo", png(seed=4), chat_id=GROUP, chat_type="supergroup", caption="nice view")
    await polling_bot.send_file(
        "photo", png(seed=5), chat_id=GROUP, chat_type="supergroup", caption="@test_bot where is this?"
    )

    assert await polling_bot.settled(GROUP) == ["echo: where is this?"]
    (request,) = polling_bot.dify.chat_requests()
    assert request["user"] == f"tg-chat-{GROUP}"
    (upload,) = uploads_of(polling_bot, request)
    assert upload.data == png(seed=5)

    (answer,) = polling_bot.telegram.chat_messages(GROUP)
    await polling_bot.send_file(
        "photo", png(seed=6), chat_id=GROUP, chat_type="supergroup", reply_to_bot_message_id=answer.message_id
    )  # a reply to the bot needs no mention, and no caption either
    texts = await polling_bot.settled(GROUP, count=2)
    second = polling_bot.dify.chat_requests()[-1]
    assert texts[-1] == f"echo: {second['query']}" and len(polling_bot.dify.chat_requests()) == 2
    assert [upload.data for upload in uploads_of(polling_bot, second)] == [png(seed=6)]


async def test_a_sticker_still_asks_for_text(polling_bot: TelegramHarness) -> None:
    update = polling_bot.telegram.message_update(chat_id=CHAT, user_id=7, text="x")
    message = update["message"]
    del message["text"]
    message.pop("entities", None)
    message["sticker"] = {
        "file_id": "CAACsticker",
        "file_unique_id": "AgADsticker",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
    }
    await polling_bot.deliver(update)

    assert await polling_bot.settled() == [text("empty_message", "en")]
    assert not polling_bot.dify.requests or not polling_bot.dify.chat_requests()


# ---- albums across replicas ---------------------------------------------------------------------


def part(message_id: int, caption: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"message_id": message_id, "chat": {"id": CHAT, "type": "private"}}
    if caption:
        found["caption"] = caption
    return found


async def test_album_parts_on_two_replicas_are_answered_once_with_every_part(redis: Redis, key_prefix: str) -> None:
    keys = RedisKeys(prefix=key_prefix, app="app")
    late: list[Callable[[], Any]] = []

    async def sleep(seconds: float) -> None:
        while late:  # a part arrives on the other replica while the owner waits: the wait goes on
            await late.pop()()

    one = AlbumCollector(redis, keys, quiet=0.5, sleep=sleep)
    two = AlbumCollector(redis, keys, quiet=0.5, sleep=sleep)
    assert await two.add(CHAT, "g1", part(11)) is True
    assert await one.add(CHAT, "g1", part(10, "compare")) is False
    late.append(lambda: one.add(CHAT, "g1", part(12)))

    parts = await two.collect(CHAT, "g1")

    assert [item["message_id"] for item in parts] == [10, 11, 12]
    assert parts[0]["caption"] == "compare"
    assert await one.add(CHAT, "g2", part(20)) is True  # another album elects its own owner


# ---- an interrupted file question ---------------------------------------------------------------


async def test_file_question_interrupted_before_dify_answered_ends_with_the_interrupted_line(
    polling_bot: TelegramHarness,
) -> None:
    update = polling_bot.telegram.media_update(
        chat_id=CHAT, user_id=7, kind="photo", file=polling_bot.telegram.files.add(png(), kind="photo"), caption="hm"
    )
    message = Message.model_validate(update["message"])
    placeholder = await polling_bot.telegram_door.bot.send_message(CHAT, text("thinking", "en"))
    entry = JournalEntry(
        answer_id="a1",
        owner="dead-replica",
        chat=chat_key(message, bot_id=polling_bot.telegram_door.bot.id),
        origin=origin_of(message, "hm", files=1),
        task_id=None,
        dify_user=None,
        messages=(JournalMessage(handle=placeholder.message_id, markdown=text("thinking", "en"), text=False),),
    )

    await polling_bot.telegram_door.recover(entry)

    assert polling_bot.answers() == ["⚠️ " + text("interrupted_resend", "en")]
    assert nothing_sent_to_dify(polling_bot)  # not asked again without its file


# ---- files the app makes, delivered -------------------------------------------------------------


async def test_two_images_from_a_chatflow_arrive_as_one_album(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_mode="advanced-chat") as bot:
        charts = [png(120, 90, seed=8), png(90, 120, seed=9)]
        outputs = [bot.dify.produce_output(data, name=f"chart{i}.png") for i, data in enumerate(charts)]
        bot.dify.script(Transcript(chatflow_with_files("Two charts for you.", outputs)))
        update = await bot.say("charts please")

        await eventually(lambda: len(bot.telegram.files.sent_to(CHAT)) == 2)
        await eventually(bot.idle)
        sent = bot.telegram.files.sent_to(CHAT)
        assert {record.method for record in sent} == {"sendMediaGroup"}
        assert sorted(record.data for record in sent) == sorted(charts)
        assert all(record.reply_to == update["message"]["message_id"] for record in sent)
        assert [m.text for m in bot.telegram.chat_messages(CHAT) if m.media is None] == ["Two charts for you."]


async def test_a_picture_telegram_will_not_show_as_a_photo_goes_as_a_document(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_mode="agent-chat") as bot:
        strip = png(4000, 50, seed=3)  # a 80:1 strip: PHOTO_INVALID_DIMENSIONS
        bot.dify.script(Transcript(agent_tool_image(bot.dify.produce(strip, name="strip.png"), ["A strip."])))
        await bot.say("draw a strip")

        await eventually(lambda: len(bot.telegram.files.sent_to(CHAT)) == 1)
        (record,) = bot.telegram.files.sent_to(CHAT)
        assert (record.method, record.data) == ("sendDocument", strip)
        assert bot.telegram.count("sendPhoto", status=400) == 1


async def test_a_rate_limited_photo_is_sent_again_once(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_mode="agent-chat") as bot:
        chart = png(seed=11)
        bot.dify.script(Transcript(agent_tool_image(bot.dify.produce(chart), ["Done."])))
        bot.telegram.fail_next("sendPhoto", "retry_after:1")
        await bot.say("chart")

        await eventually(lambda: len(bot.telegram.files.sent_to(CHAT)) == 1)
        await eventually(bot.idle)
        assert [record.data for record in bot.telegram.files.sent_to(CHAT)] == [chart]
        assert bot.telegram.count("sendPhoto", status=429) == 1


async def test_voice_without_speech_to_text_goes_as_audio_when_the_app_takes_audio(
    redis_url: str, key_prefix: str
) -> None:
    options = {"file_upload": FileUpload(enabled=True, allowed_file_types=["image", "document", "audio"])}
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_options=options) as bot:
        await bot.send_file("voice", VOICE.read_bytes(), caption=None)

        (reply,) = await bot.settled()
        (request,) = bot.dify.chat_requests()
        assert reply == f"echo: {request['query']}"
        assert [entry["type"] for entry in request["files"]] == ["audio"]
        (upload,) = uploads_of(bot, request)
        assert upload.data == VOICE.read_bytes() and upload.user == "tg-7"
        assert bot.dify.files.audio_calls == []


# ---- downloads from Telegram --------------------------------------------------------------------


def test_the_largest_photo_size_the_bot_may_download_is_taken() -> None:
    sizes = [
        PhotoSize(file_id="small", file_unique_id="s", width=90, height=60, file_size=2_000),
        PhotoSize(file_id="huge", file_unique_id="h", width=5000, height=4000, file_size=25 * MB),
        PhotoSize(file_id="big", file_unique_id="b", width=1280, height=960, file_size=300_000),
    ]
    assert largest_photo(sizes, limit=20 * MB).file_id == "big"
    assert largest_photo(sizes, limit=None).file_id == "huge"


async def test_download_errors_never_carry_the_token(polling_bot: TelegramHarness, tmp_path: Path) -> None:
    bot = polling_bot.telegram_door.bot
    files = polling_bot.telegram.files
    photo = files.add(png(), kind="photo")

    async def fetch(file_id: str) -> bytes:
        return b"".join([chunk async for chunk in download(bot, file_id)])

    assert await fetch(photo.file_id) == png()
    files.fail_downloads(1, status=502)
    with pytest.raises(FileFetchFailed) as failed:
        await fetch(photo.file_id)
    assert str(failed.value) == "telegram download failed: HTTP 502"
    with pytest.raises(FileFetchFailed) as unknown:
        await fetch("AgACunknown")
    with pytest.raises(FileProblem) as too_big:
        await fetch(files.add(size=21 * MB).file_id)
    assert too_big.value.reason == "too_large"
    for error in (failed.value, unknown.value, too_big.value):
        assert TOKEN not in str(error) and TOKEN not in repr(error)


async def test_a_produced_image_in_a_forum_topic_stays_in_the_topic(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_mode="agent-chat") as bot:
        chart = png(seed=12)
        bot.dify.script(Transcript(agent_tool_image(bot.dify.produce(chart), ["In the topic."])))
        update = await bot.say(
            "@test_bot chart", chat_id=GROUP, chat_type="supergroup", message_thread_id=77, is_topic_message=True
        )

        await eventually(lambda: len(bot.telegram.files.sent_to(GROUP)) == 1)
        (record,) = bot.telegram.files.sent_to(GROUP)
        assert (record.data, record.message_thread_id) == (chart, 77)
        assert record.reply_to == update["message"]["message_id"]
