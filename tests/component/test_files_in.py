"""Files users send, through the answer pipeline to the fake Dify: checked, downloaded, transcribed, uploaded."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.answering import AnswerPipeline
from core.conversations import ChatKey, Conversation, ConversationStore
from core.dify.client import DifyClient
from core.dify.parameters import MB
from core.files.model import CHUNK, Fetch, IncomingFile
from core.render.renderer import StreamRenderer
from core.render.throttle import Throttle
from core.service import ChatService
from tests.component.conftest import leftovers
from tests.fakes.dify import FakeDify, FileUpload
from tests.unit.test_renderer import MemorySurface

CHAT = ChatKey(platform="telegram", scope="tg:1:100", user="tg-7")
VOICE = Path(__file__).parents[1] / "data" / "voice.ogg"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PDF = b"%PDF-1.7\n" + b"x" * 5000
TOKEN = "123456:SECRET-bot-token"


def serve(data: bytes, fetched: list[int] | None = None) -> Fetch:
    async def fetch() -> AsyncIterator[bytes]:
        if fetched is not None:
            fetched.append(len(data))
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    return fetch


def endless(fetched: list[int]) -> Fetch:
    async def fetch() -> AsyncIterator[bytes]:
        while True:
            fetched.append(CHUNK)
            yield b"\0" * CHUNK

    return fetch


def broken() -> Fetch:
    async def fetch() -> AsyncIterator[bytes]:
        yield b"%PDF-"
        raise OSError(f"404, url='https://api.telegram.org/file/bot{TOKEN}/documents/file_1.pdf'")

    return fetch


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify(
        mode="advanced-chat",
        file_upload=FileUpload(enabled=True, allowed_file_types=["image", "document"]),
    ) as fake:
        yield fake


@pytest.fixture
async def pipeline(dify: FakeDify, store: ConversationStore) -> AsyncIterator[AnswerPipeline]:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, retry_delays=(0, 0)) as client:
        yield AnswerPipeline(ChatService(dify=client, store=store, lock_wait=10))


async def ask(pipeline: AnswerPipeline, text: str, *files: IncomingFile, chat: ChatKey = CHAT) -> str:
    """What the user sees at the end: the answer's final message."""
    surface = MemorySurface()
    await pipeline.answer(
        chat=chat,
        text=text,
        sink=lambda stream: StreamRenderer(surface, throttle=Throttle(0.01), status_delay=0.05),
        attachments=files,
    )
    return surface.shown[max(surface.shown)]


async def test_photo_with_caption_is_uploaded_for_the_conversations_user(
    pipeline: AnswerPipeline, dify: FakeDify, workdir: Path
) -> None:
    assert await ask(pipeline, "hello") == "echo: hello"
    sender = ChatKey(platform=CHAT.platform, scope=CHAT.scope, user="tg-8")  # someone else in the same chat
    photo = IncomingFile(name="photo.jpg", mime="image/jpeg", size=len(PNG), fetch=serve(PNG))
    assert await ask(pipeline, "what is this?", photo, chat=sender) == "echo: what is this?"
    request = dify.chat_requests()[-1]
    assert request["query"] == "what is this?" and request["user"] == "tg-7"
    [[received]] = dify.received_files
    assert received.type == "image" and received.transfer_method == "local_file"
    assert received.data == PNG and received.file is not None and received.file.user == "tg-7"
    assert received.name == "photo.png"  # named after the bytes, which are a PNG
    assert leftovers(workdir) == []  # the temp dir went with the answer


async def test_a_document_without_text_gets_a_default_question(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    doc = IncomingFile(name="report", mime="application/pdf", size=None, fetch=serve(PDF))
    assert await ask(pipeline, "  ", doc) == "echo: Please look at the attached file."
    [[received]] = dify.received_files
    assert received.type == "document" and received.name == "report.pdf" and received.data == PDF


async def test_album_is_one_question_with_several_files(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    album = [
        IncomingFile(name=f"p{n}.jpg", mime="image/jpeg", size=len(PNG), fetch=serve(PNG + bytes([n])))
        for n in range(3)
    ]
    assert await ask(pipeline, "", *album) == "echo: Please look at the attached files."
    [received] = dify.received_files
    assert [item.data[-1] for item in received] == [0, 1, 2]
    assert len(dify.chat_requests()) == 1


async def test_voice_note_is_transcribed_shown_and_answered(
    pipeline: AnswerPipeline, dify: FakeDify, workdir: Path
) -> None:
    dify.files.speech_to_text = True
    dify.script_transcript("what time is it")
    voice = IncomingFile(
        name="voice.oga", mime="audio/ogg", size=VOICE.stat().st_size, fetch=serve(VOICE.read_bytes()), voice=True
    )
    shown = await ask(pipeline, "", voice)
    assert shown == "🎤 what time is it\n\necho: what time is it"
    [call] = dify.files.audio_calls
    assert (call.mime_type, call.detected, call.status, call.user) == ("audio/mp3", "mp3", 200, "tg-7")
    assert dify.chat_requests()[-1]["query"] == "what time is it" and not dify.uploads
    assert leftovers(workdir) == []


async def test_voice_without_speech_to_text_is_refused_kindly(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    fetched: list[int] = []
    voice = IncomingFile(name="voice.oga", mime="audio/ogg", size=5000, fetch=serve(b"OggS", fetched), voice=True)
    shown = await ask(pipeline, "", voice)
    assert shown == "⚠️ This assistant can't listen to voice messages. Please send your question as text."
    assert not dify.chat_requests() and not fetched and not dify.files.audio_calls


async def test_voice_is_uploaded_as_audio_when_the_app_takes_audio(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    dify.files.config.allowed_file_types = ["audio"]
    voice = IncomingFile(name="voice.oga", mime="audio/ogg", size=None, fetch=serve(VOICE.read_bytes()), voice=True)
    assert await ask(pipeline, "", voice) == "echo: Please look at the attached file."
    [[received]] = dify.received_files
    assert received.type == "audio" and received.data == VOICE.read_bytes()


async def test_a_type_the_app_refuses_sends_nothing(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    fetched: list[int] = []
    song = IncomingFile(name="song.mp3", mime="audio/mpeg", size=3000, fetch=serve(b"ID3", fetched))
    shown = await ask(pipeline, "listen to this", song)
    assert shown.startswith("⚠️ This assistant does not accept this type of file (.mp3).")
    assert not dify.chat_requests() and not fetched and not dify.uploads


async def test_a_25_mb_file_is_refused_before_download(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    fetched: list[int] = []
    big = IncomingFile(
        name="big.pdf", mime="application/pdf", size=25 * MB, fetch=serve(b"", fetched), platform_limit=20 * MB
    )
    shown = await ask(pipeline, "summarise", big)
    assert shown == "⚠️ This file is too large: the limit is 15 MB. Please send a smaller file."
    assert not fetched and not dify.chat_requests()


async def test_an_undeclared_size_is_enforced_while_streaming(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    fetched: list[int] = []
    dify.files.limits.file_size_limit = 1
    stream = IncomingFile(name="dump.txt", mime="text/plain", size=None, fetch=endless(fetched))
    shown = await ask(pipeline, "read it", stream)
    assert shown == "⚠️ This file is too large: the limit is 1 MB. Please send a smaller file."
    assert sum(fetched) <= MB + CHUNK and not dify.chat_requests() and not dify.uploads


async def test_too_many_files_are_refused(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    docs = [IncomingFile(name=f"{n}.pdf", mime="application/pdf", size=10, fetch=serve(PDF)) for n in range(4)]
    shown = await ask(pipeline, "compare", *docs)
    assert shown == "⚠️ Too many files: this assistant takes at most 3 at once. Please send fewer files."
    assert not dify.chat_requests() and not dify.uploads


async def test_a_failed_download_never_leaks_the_url(
    pipeline: AnswerPipeline, dify: FakeDify, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    doc = IncomingFile(name="a.pdf", mime="application/pdf", size=10, fetch=broken())
    shown = await ask(pipeline, "read", doc)
    assert shown == "⚠️ The bot could not download your file. Please send it again."
    assert not dify.chat_requests() and not dify.uploads
    assert TOKEN not in caplog.text and "api.telegram.org" not in caplog.text


async def test_files_disabled_in_the_app(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    dify.files_enabled = False
    photo = IncomingFile(name="photo.jpg", mime="image/jpeg", size=10, fetch=serve(PNG))
    shown = await ask(pipeline, "what is this?", photo)
    assert shown == "⚠️ This assistant does not accept files. Please send your question as text."
    assert not dify.chat_requests()


async def test_a_stale_conversation_gets_the_files_again_for_the_new_user(
    pipeline: AnswerPipeline, dify: FakeDify, store: ConversationStore
) -> None:
    dify.chatflow_reuses_unknown = False
    await store.save(CHAT, Conversation(conversation_id="0b6a4c2e-9d2f-4c0e-8f55-3f1c2e9a7b10", user="tg-old"))
    photo = IncomingFile(name="photo.png", mime="image/png", size=len(PNG), fetch=serve(PNG))
    shown = await ask(pipeline, "and this?", photo)
    assert shown.startswith("echo: and this?")
    users = sorted(upload.user for upload in dify.uploads.values())
    assert users == ["tg-7", "tg-old"]
    [[received]] = dify.received_files
    assert received.file is not None and received.file.user == "tg-7" and received.data == PNG


async def test_parameters_are_read_once_and_only_for_files(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    await ask(pipeline, "plain text")
    assert not [r for r in dify.requests if r.path == "/v1/parameters"]
    photo = IncomingFile(name="photo.png", mime="image/png", size=len(PNG), fetch=serve(PNG))
    await ask(pipeline, "one", photo)
    await ask(pipeline, "two", photo)
    assert len([r for r in dify.requests if r.path == "/v1/parameters"]) == 1


async def test_an_upload_dify_refuses_sends_no_question(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    photo = IncomingFile(name="photo.png", mime="image/png", size=len(PNG), fetch=serve(PNG))
    await ask(pipeline, "one", photo)  # the app's limits are read now and kept for a while
    dify.files.limits.image_file_size_limit = 0  # then Dify's own limit shrinks: the upload gets 413
    shown = await ask(pipeline, "two", photo)
    assert shown == "⚠️ This file is too large for the assistant. Please send a smaller file."
    assert [r["query"] for r in dify.chat_requests()] == ["one"]


async def test_an_upload_that_fails_says_so(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    photo = IncomingFile(name="photo.png", mime="image/png", size=len(PNG), fetch=serve(PNG))
    await ask(pipeline, "one", photo)  # the app's mode and limits are known from now on
    await dify.__aexit__(None, None, None)  # then Dify goes away
    shown = await ask(pipeline, "two", photo)
    assert shown == (
        "⚠️ The bot could not pass your file to the assistant. Please send it again, perhaps in another format."
    )
    assert [r["query"] for r in dify.chat_requests()] == ["one"]


async def test_a_failed_transcription_sends_no_question(pipeline: AnswerPipeline, dify: FakeDify) -> None:
    dify.files.speech_to_text = True
    voice = IncomingFile(name="voice.oga", mime="audio/ogg", size=None, fetch=serve(VOICE.read_bytes()), voice=True)
    await ask(pipeline, "", voice)
    dify.files.speech_to_text = False  # switched off in Dify while the bot still has the old parameters
    shown = await ask(pipeline, "", voice)
    assert shown == "⚠️ The bot could not make out your voice message. Please send it again, or type your question."
    assert len(dify.chat_requests()) == 1 and [c.status for c in dify.files.audio_calls] == [200, 400]


async def test_unreadable_parameters_end_the_answer_kindly(dify: FakeDify, store: ConversationStore) -> None:
    url = dify.url
    await dify.__aexit__(None, None, None)  # Dify is down; the mode is configured, so /parameters is the first call
    async with DifyClient(base_url=url, api_key=dify.api_key, retry_delays=(), app_mode="advanced-chat") as client:
        answers = AnswerPipeline(ChatService(dify=client, store=store, lock_wait=10))
        photo = IncomingFile(name="photo.png", mime="image/png", size=len(PNG), fetch=serve(PNG))
        shown = await ask(answers, "what is this?", photo)
    assert shown.startswith("⚠️ The bot cannot reach its assistant's server.")


async def test_a_workflow_app_gets_the_file_and_the_caption(store: ConversationStore) -> None:
    upload = FileUpload(enabled=True, allowed_file_types=["document"])
    async with FakeDify(mode="workflow", file_upload=upload) as fake:
        async with DifyClient(base_url=fake.url, api_key=fake.api_key, retry_delays=()) as client:
            answers = AnswerPipeline(ChatService(dify=client, store=store, lock_wait=10))
            doc = IncomingFile(name="notes.txt", mime="text/plain", size=11, fetch=serve(b"hello notes"))
            shown = await ask(answers, "summarise", doc)
        [[received]] = fake.received_files
    assert shown == "echo: summarise"
    assert received.type == "document" and received.data == b"hello notes" and received.name == "notes.txt"
    assert fake.chat_requests()[0]["inputs"]["query"] == "summarise"
