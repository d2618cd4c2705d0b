"""Slack files end to end: files shared with the bot reach the Dify app, files the app makes reach the thread."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import pytest

from bots.slack.addressing import SlackMessage
from bots.slack.files_in import file_fields, token_may_go_to
from core.conversations import ChatKey
from core.files.model import FileFetchFailed, FileProblem
from core.journal import Journal
from core.texts import friendly_error
from tests.e2e.slack_harness import BOT_TOKEN, SlackHarness, slack_bot
from tests.fakes.dify import Events, ReplyContext, Step, Transcript
from tests.fakes.dify_files import FileUpload
from tests.fakes.slack import OAUTH_SCOPES, dm_event, mention_event

CHANNEL = "C100"
IMAGES_AND_DOCUMENTS = {"file_upload": FileUpload(enabled=True, allowed_file_types=["image", "document"])}


def png(width: int = 160, height: int = 120, *, seed: int = 1) -> bytes:
    """A real PNG of noise (barely compressible, so larger than one 64 KiB download chunk)."""
    noise = random.Random(seed)
    rows = b"".join(b"\x00" + noise.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(params=["native", "update"])
async def bot(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[SlackHarness]:
    async with slack_bot(
        redis_url=redis_url, key_prefix=key_prefix, streaming=request.param, dify_options=IMAGES_AND_DOCUMENTS
    ) as harness:
        yield harness


def assert_no_bot_token_reached_dify(bot: SlackHarness) -> None:
    for request in bot.dify.requests:
        seen = json.dumps([request.headers, request.json, request.query, request.path], default=str)
        assert BOT_TOKEN not in seen, request.path
    for stored in bot.dify.uploads.values():
        assert BOT_TOKEN.encode() not in stored.data


def sent_files(request: dict[str, Any]) -> list[dict[str, Any]]:
    return list(request.get("files") or [])


async def test_dm_with_a_picture_is_downloaded_with_the_bot_token_and_uploaded_for_the_user(
    bot: SlackHarness,
) -> None:
    image = png()
    shared = bot.slack.files.add(image, name="screenshot.png", mimetype="image/png")
    ts = bot.next_ts()
    assert await bot.event(dm_event(channel="D1", user="U1", text="what is on this?", ts=ts, files=[shared])) == 200

    assert await bot.thread_settled("D1", ts) == ["echo: what is on this?"]
    (download,) = bot.slack.files.downloads
    assert download.authorization == f"Bearer {BOT_TOKEN}" and download.served_file
    (request,) = bot.dify.chat_requests()
    assert request["query"] == "what is on this?" and request["user"] == "slack-T1-U1"
    (sent,) = sent_files(request)
    assert sent["type"] == "image" and sent["transfer_method"] == "local_file"
    upload = bot.dify.uploads[sent["upload_file_id"]]
    assert upload.data == image and upload.user == "slack-T1-U1"
    assert_no_bot_token_reached_dify(bot)


async def test_mention_with_a_document_in_a_channel_is_answered_in_its_thread(bot: SlackHarness) -> None:
    shared = bot.slack.files.add(PDF, name="policy.pdf", mimetype="application/pdf")
    ts = bot.next_ts()
    event = mention_event(channel=CHANNEL, user="U1", text="<@UBOT> summarize this", ts=ts, files=[shared])
    assert await bot.event(event) == 200

    assert await bot.thread_settled(CHANNEL, ts) == ["echo: summarize this"]
    (request,) = bot.dify.chat_requests()
    assert request["query"] == "summarize this" and request["user"] == f"slack-T1-{CHANNEL}"
    (sent,) = sent_files(request)
    assert sent["type"] == "document"
    upload = bot.dify.uploads[sent["upload_file_id"]]
    assert upload.data == PDF and upload.name == "policy.pdf" and upload.user == f"slack-T1-{CHANNEL}"
    assert_no_bot_token_reached_dify(bot)


async def test_a_file_without_text_asks_the_default_question(bot: SlackHarness) -> None:
    shared = bot.slack.files.add(png(), name="photo.png", mimetype="image/png")
    ts = bot.next_ts()
    await bot.event(dm_event(channel="D1", user="U1", text="", ts=ts, files=[shared]))

    (reply,) = await bot.thread_settled("D1", ts)
    (request,) = bot.dify.chat_requests()
    assert request["query"].strip() and reply == f"echo: {request['query']}"
    assert len(sent_files(request)) == 1


async def test_slack_connect_stub_is_looked_up_with_files_info(bot: SlackHarness) -> None:
    stub = bot.slack.files.add(PDF, name="shared.pdf", mimetype="application/pdf", connect_stub=True)
    assert "url_private" not in stub
    ts = bot.next_ts()
    await bot.event(dm_event(channel="D1", user="U1", text="read it", ts=ts, files=[stub]))

    assert await bot.thread_settled("D1", ts) == ["echo: read it"]
    assert bot.slack.count("files.info", ok=True) == 1
    (sent,) = sent_files(bot.dify.chat_requests()[0])
    assert bot.dify.uploads[sent["upload_file_id"]].data == PDF


async def test_failed_download_is_a_friendly_sentence_and_nothing_reaches_dify(
    bot: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bot.slack.files.fail_downloads(500)
    shared = bot.slack.files.add(png(), name="chart.png", mimetype="image/png")
    ts = bot.next_ts()
    await bot.event(dm_event(channel="D1", user="U1", text="explain the chart", ts=ts, files=[shared]))

    assert await bot.thread_settled("D1", ts) == ["⚠️ " + friendly_error(FileFetchFailed())]
    assert [d.status for d in bot.slack.files.downloads] == [500]
    assert bot.dify.chat_requests() == [] and bot.dify.uploads == {}
    assert "HTTP 500" in caplog.text and BOT_TOKEN not in caplog.text


async def test_sign_in_page_instead_of_the_file_is_a_failed_download(redis_url: str, key_prefix: str) -> None:
    # Without files:read Slack serves its HTML sign-in page with status 200, never the file.
    scopes = OAUTH_SCOPES.replace("files:read,", "")
    async with slack_bot(
        redis_url=redis_url,
        key_prefix=key_prefix,
        dify_options=IMAGES_AND_DOCUMENTS,
        slack_options={"scopes": scopes},
    ) as bot:
        shared = bot.slack.files.add(PDF, name="policy.pdf", mimetype="application/pdf")
        ts = bot.next_ts()
        await bot.event(dm_event(channel="D1", user="U1", text="summarize", ts=ts, files=[shared]))

        assert await bot.thread_settled("D1", ts) == ["⚠️ " + friendly_error(FileFetchFailed())]
        (download,) = bot.slack.files.downloads
        assert download.authorization == f"Bearer {BOT_TOKEN}" and not download.served_file
        assert bot.dify.chat_requests() == [] and bot.dify.uploads == {}


def image_answer(url: str, text: str) -> Transcript:
    """An agent-style answer: a tool's picture (`message_file`, relative URL), then the text."""

    def build(ctx: ReplyContext) -> list[Step]:
        ev = Events(ctx)
        steps: list[Step] = [ev.message_file("f-chart", url)]
        steps += [ev.message(word) for word in text.split(" ")[:1]]
        steps += [ev.message(" " + word) for word in text.split(" ")[1:]]
        return [*steps, ev.message_end()]

    return Transcript(build)


async def test_picture_made_by_the_app_arrives_in_the_thread_with_the_same_bytes(bot: SlackHarness) -> None:
    chart = png(200, 150, seed=7)
    bot.dify.script(image_answer(bot.dify.produce(chart, name="chart.png"), "Here is the chart you asked for."))
    ts = bot.next_ts()
    await bot.event(mention_event(channel=CHANNEL, user="U1", text="<@UBOT> plot sales", ts=ts))

    (shared,) = await bot.files_settled(CHANNEL, ts)
    assert await bot.thread_settled(CHANNEL, ts) == ["Here is the chart you asked for."]
    assert shared.data == chart and shared.filename.endswith(".png")
    assert bot.slack.count("files.getUploadURLExternal", ok=True) == 1
    assert bot.slack.count("files.completeUploadExternal", ok=True) == 1
    assert bot.slack.count("files.upload") == 0
    (post,) = bot.slack.files.upload_posts
    assert post.status == 200 and post.content_length == len(chart) and not post.chunked
    assert post.authorization is None  # the upload URL is the ticket: no token goes with the bytes
    assert_no_bot_token_reached_dify(bot)


async def test_upload_failure_is_retried_and_the_file_arrives_once(bot: SlackHarness) -> None:
    chart = png(seed=3)
    bot.slack.files.fail_uploads(503)
    bot.dify.script(image_answer(bot.dify.produce(chart, name="chart.png"), "Done."))
    ts = bot.next_ts()
    await bot.event(dm_event(channel="D1", user="U1", text="draw", ts=ts))

    (shared,) = await bot.files_settled("D1", ts)
    assert shared.data == chart
    assert await bot.thread_settled("D1", ts) == ["Done."]
    assert [p.status for p in bot.slack.files.upload_posts] == [503, 200]
    await asyncio.sleep(0.2)
    assert len(bot.slack.files.in_thread("D1", ts)) == 1


async def test_refused_upload_keeps_the_answer_text(redis_url: str, key_prefix: str) -> None:
    scopes = OAUTH_SCOPES.replace(",files:write", "")
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, slack_options={"scopes": scopes}) as bot:
        bot.dify.script(image_answer(bot.dify.produce(png(), name="chart.png"), "Here it is."))
        ts = bot.next_ts()
        await bot.event(dm_event(channel="D1", user="U1", text="draw", ts=ts))

        assert await bot.thread_settled("D1", ts) == ["Here it is."]
        await asyncio.sleep(0.2)
        assert bot.slack.files.shared == []
        assert bot.slack.count("files.getUploadURLExternal") == 1  # missing_scope: not tried again


# A Slack mobile clip: an MP4 audio container (ftyp M4A), sent to /audio-to-text as audio/m4a untouched.
M4A_CLIP = b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isom" + b"\x00\x00\x00\x08free" + bytes(2000)


async def test_voice_clip_is_transcribed_shown_and_answered(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, dify_options={"speech_to_text": True}) as bot:
        bot.dify.script_transcript("what are the opening hours")
        clip = bot.slack.files.add(M4A_CLIP, name="audio_message.m4a", mimetype="audio/mp4", subtype="slack_audio")
        ts = bot.next_ts()
        await bot.event(dm_event(channel="D1", user="U1", text="", ts=ts, files=[clip]))

        (reply,) = await bot.thread_settled("D1", ts)
        assert reply == "🎤 what are the opening hours\n\necho: what are the opening hours"
        (request,) = bot.dify.chat_requests()
        assert request["query"] == "what are the opening hours" and sent_files(request) == []
        (call,) = bot.dify.files.audio_calls
        assert (call.user, call.mime_type, call.size) == ("slack-T1-U1", "audio/m4a", len(M4A_CLIP))
        assert_no_bot_token_reached_dify(bot)


async def test_several_files_in_one_message_are_one_question(bot: SlackHarness) -> None:
    first, second = png(seed=11), png(seed=12)
    shared = [
        bot.slack.files.add(first, name="before.png", mimetype="image/png"),
        bot.slack.files.add(second, name="after.png", mimetype="image/png"),
    ]
    ts = bot.next_ts()
    await bot.event(dm_event(channel="D1", user="U1", text="what changed?", ts=ts, files=shared))

    assert await bot.thread_settled("D1", ts) == ["echo: what changed?"]
    (request,) = bot.dify.chat_requests()
    assert [bot.dify.uploads[f["upload_file_id"]].data for f in sent_files(request)] == [first, second]


async def test_a_type_the_app_refuses_is_explained_before_any_download(redis_url: str, key_prefix: str) -> None:
    images_only = {"file_upload": FileUpload(enabled=True, allowed_file_types=["image"])}
    async with slack_bot(redis_url=redis_url, key_prefix=key_prefix, dify_options=images_only) as bot:
        shared = bot.slack.files.add(b"PK\x03\x04" + bytes(100), name="logs.zip", mimetype="application/zip")
        ts = bot.next_ts()
        await bot.event(dm_event(channel="D1", user="U1", text="check these logs", ts=ts, files=[shared]))

        (reply,) = await bot.thread_settled("D1", ts)
        assert reply == "⚠️ " + friendly_error(FileProblem("type_refused", what=".zip"))
        assert bot.slack.files.downloads == []
        assert bot.dify.chat_requests() == [] and bot.dify.uploads == {}


async def test_an_external_file_is_never_fetched_with_the_token(bot: SlackHarness) -> None:
    shared = bot.slack.files.add(PDF, name="plan.pdf", mimetype="application/pdf", mode="external")
    ts = bot.next_ts()
    await bot.event(dm_event(channel="D1", user="U1", text="read the plan", ts=ts, files=[shared]))

    assert await bot.thread_settled("D1", ts) == ["⚠️ " + friendly_error(FileFetchFailed())]
    assert bot.slack.files.downloads == []
    assert bot.dify.chat_requests() == []


def test_the_bot_token_only_goes_to_slack_file_hosts() -> None:
    api = "https://slack.com/api/"
    assert token_may_go_to("https://files.slack.com/files-pri/T1-F1/download/a.png", api)
    assert token_may_go_to("https://files.slack-gov.com/files-pri/T1-F1/a.png", api)
    assert token_may_go_to("http://127.0.0.1:8080/files-pri/T1-F1/a.png", "http://127.0.0.1:8080/api/")
    assert not token_may_go_to("http://files.slack.com/files-pri/T1-F1/a.png", api)  # never in clear text
    assert not token_may_go_to("https://files.slack.com.example.net/a.png", api)
    assert not token_may_go_to("https://example.net/?u=https://files.slack.com/a.png", api)
    assert not token_may_go_to("https://drive.example.com/file/F1", api)
    assert not token_may_go_to("/files-pri/T1-F1/a.png", api)


async def test_a_journaled_question_with_a_file_is_asked_again_with_the_file(redis_url: str, key_prefix: str) -> None:
    # A replica took a mention with a file and died before Dify saw it: the next one asks again, file included.
    async with slack_bot(
        redis_url=redis_url, key_prefix=key_prefix, journal_lease=0.5, dify_options=IMAGES_AND_DOCUMENTS
    ) as bot:
        shared = bot.slack.files.add(PDF, name="policy.pdf", mimetype="application/pdf")
        ts = bot.next_ts()
        message = SlackMessage(
            team="T1", channel=CHANNEL, user="U1", text="<@UBOT> summarize", ts=ts, thread_ts=None, is_dm=False
        )
        key = ChatKey(platform="slack", scope=f"slack:T1:{CHANNEL}:g0:{ts}", user=f"slack-T1-{CHANNEL}")
        store = bot.service.pipeline.service.store
        dead = Journal(store.redis, keys=store.keys, owner="dead-replica")
        origin = {"message": asdict(message), "query": "summarize", "files": file_fields([shared])}
        await dead.open(chat=key, origin=origin).begin()

        assert await bot.thread_settled(CHANNEL, ts, timeout=15) == ["echo: summarize"]
        (request,) = bot.dify.chat_requests()
        (sent,) = sent_files(request)
        assert bot.dify.uploads[sent["upload_file_id"]].data == PDF


async def test_file_share_over_socket_mode(redis_url: str, key_prefix: str) -> None:
    async with slack_bot(
        redis_url=redis_url, key_prefix=key_prefix, socket_mode=True, dify_options=IMAGES_AND_DOCUMENTS
    ) as bot:
        image = png(seed=5)
        shared = bot.slack.files.add(image, name="photo.png", mimetype="image/png")
        ts = bot.next_ts()
        await bot.event(dm_event(channel="D1", user="U1", text="what is this?", ts=ts, files=[shared]))

        assert await bot.thread_settled("D1", ts) == ["echo: what is this?"]
        (sent,) = sent_files(bot.dify.chat_requests()[0])
        assert bot.dify.uploads[sent["upload_file_id"]].data == image
        assert bot.slack.files.downloads[0].authorization == f"Bearer {BOT_TOKEN}"
