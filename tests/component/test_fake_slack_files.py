"""The fake Slack's files: url_private behind the bot token, files.info, and the external upload flow,
driven by the real slack_sdk AsyncWebClient and aiohttp over a socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import OAUTH_SCOPES, FakeSlack, dm_event, mention_event
from tests.fakes.slack_files import SIGN_IN_HTML

TOKEN = "xoxb-test-token"
ROOT_TS = "1690000000.000100"
DATA = bytes(range(256)) * 400  # 100 KiB, more than one read


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=TOKEN) as server:
        yield server


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url)


async def api_error(call: Awaitable[Any]) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


async def get(url: str, *, token: str | None = TOKEN) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.content_type, await response.read()


async def post(url: str, data: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=data) as response:
        return response.status, await response.text()


# ---------------------------------------------------------------------- files in


async def test_shared_file_is_served_only_with_the_bot_token(fake: FakeSlack) -> None:
    shared = fake.files.add(DATA, name="report.pdf", mimetype="application/pdf")

    assert shared["size"] == len(DATA) and shared["mode"] == "hosted" and shared["filetype"] == "pdf"
    assert await get(shared["url_private_download"]) == (200, "application/pdf", DATA)
    assert await get(shared["url_private"]) == (200, "application/pdf", DATA)
    for token in (None, "xoxb-wrong"):
        status, content_type, body = await get(shared["url_private_download"], token=token)
        assert (status, content_type, body.decode()) == (200, "text/html", SIGN_IN_HTML)
    assert [(d.authorization, d.served_file) for d in fake.files.downloads] == [
        (f"Bearer {TOKEN}", True),
        (f"Bearer {TOKEN}", True),
        (None, False),
        ("Bearer xoxb-wrong", False),
    ]


async def test_without_files_read_the_token_gets_the_sign_in_page() -> None:
    async with FakeSlack(bot_token=TOKEN, scopes=OAUTH_SCOPES.replace("files:read,", "")) as fake:
        shared = fake.files.add(DATA, name="a.bin", mimetype="application/octet-stream")
        status, content_type, _ = await get(shared["url_private_download"])
        bare = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        error = await api_error(bare.files_info(file=shared["id"]))

    assert (status, content_type) == (200, "text/html")
    assert error.response["error"] == "missing_scope"


async def test_names_are_quoted_in_file_urls(fake: FakeSlack) -> None:
    shared = fake.files.add(DATA, name="Q3 报告.pdf", mimetype="application/pdf")

    assert shared["url_private_download"].endswith("/download/Q3%20%E6%8A%A5%E5%91%8A.pdf")
    assert await get(shared["url_private_download"]) == (200, "application/pdf", DATA)


async def test_download_faults_and_unknown_files(fake: FakeSlack) -> None:
    shared = fake.files.add(DATA, name="a.png", mimetype="image/png")
    fake.files.fail_downloads(500)

    assert (await get(shared["url_private_download"]))[0] == 500
    assert (await get(shared["url_private_download"]))[2] == DATA
    assert (await get(shared["url_private_download"].replace(shared["id"], "F404")))[0] == 404
    assert [d.status for d in fake.files.downloads] == [500, 200, 404]


async def test_slack_connect_stub_is_resolved_with_files_info(fake: FakeSlack, client: AsyncWebClient) -> None:
    stub = fake.files.add(DATA, name="deck.pdf", mimetype="application/pdf", connect_stub=True)

    assert stub["file_access"] == "check_file_info" and "url_private" not in stub and "name" not in stub
    info = await client.files_info(file=stub["id"])
    assert info["file"]["name"] == "deck.pdf" and info["file"]["size"] == len(DATA)
    assert await get(info["file"]["url_private_download"]) == (200, "application/pdf", DATA)
    assert (await api_error(client.files_info(file="F0"))).response["error"] == "file_not_found"
    assert fake.count("files.info") == 2


async def test_voice_clip_and_external_file_objects(fake: FakeSlack) -> None:
    clip = fake.files.add(b"m4a", name="audio_message.m4a", mimetype="audio/mp4", subtype="slack_audio")
    external = fake.files.add(b"doc", name="plan.gdoc", mimetype="application/vnd.google-apps", mode="external")

    assert clip["subtype"] == "slack_audio" and clip["filetype"] == "m4a"
    assert external["is_external"] is True and not external["url_private"].startswith(fake.url)


def test_events_carry_files() -> None:
    files = [{"id": "F1", "name": "a.png"}]
    dm = dm_event(channel="D1", user="U1", text="look", ts=ROOT_TS, files=files)
    mention = mention_event(channel="C1", user="U1", text="<@UBOT> look", ts=ROOT_TS, files=files)

    assert dm["subtype"] == "file_share" and dm["files"] == files and dm["upload"] is False
    assert "subtype" not in mention and mention["files"] == files
    assert "files" not in dm_event(channel="D1", user="U1", text="plain", ts=ROOT_TS)


# ---------------------------------------------------------------------- files out


async def upload(client: AsyncWebClient, data: bytes, *, filename: str = "chart.png") -> str:
    ticket = await client.files_getUploadURLExternal(filename=filename, length=len(data))
    assert await post(ticket["upload_url"], data) == (200, f"OK - {len(data)}")
    return str(ticket["file_id"])


async def test_external_upload_shares_the_file_into_the_thread(fake: FakeSlack, client: AsyncWebClient) -> None:
    file_id = await upload(client, DATA)
    done = await client.files_completeUploadExternal(
        files=[{"id": file_id, "title": "Sales"}], channel_id="C1", thread_ts=ROOT_TS
    )

    assert done["files"] == [{"id": file_id, "title": "Sales"}]
    (shared,) = fake.files.in_thread("C1", ROOT_TS)
    assert (shared.data, shared.filename, shared.title, shared.thread_ts) == (DATA, "chart.png", "Sales", ROOT_TS)
    again = await api_error(client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C1"))
    assert again.response["error"] == "file_not_found"  # callable once
    (post_record,) = fake.files.upload_posts
    assert post_record.content_length == len(DATA) and not post_record.chunked


async def test_upload_ticket_rules(fake: FakeSlack, client: AsyncWebClient) -> None:
    no_length = client.api_call("files.getUploadURLExternal", params={"filename": "a.png"})
    for bad in (client.files_getUploadURLExternal(filename="a.png", length=0), no_length):
        assert (await api_error(bad)).response["error"] == "invalid_arguments"
    too_long = client.files_getUploadURLExternal(filename="a.png", length=3, alt_txt="x" * 1001)
    assert (await api_error(too_long)).response["error"] == "alt_txt_too_large"

    ticket = await client.files_getUploadURLExternal(filename="a.png", length=10)
    assert (await post(ticket["upload_url"], b"short"))[0] == 400  # the length must match
    never_uploaded = client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id="C1")
    assert (await api_error(never_uploaded)).response["error"] == "file_not_found"
    fake.files.fail_uploads(503)
    assert (await post(ticket["upload_url"], b"0123456789"))[0] == 503
    assert (await post(ticket["upload_url"], b"0123456789")) == (200, "OK - 10")
    assert (await post(f"{fake.url}/upload/v1/F404", b"x"))[0] == 404
    assert fake.files.shared == []


async def test_a_reply_ts_is_taken_but_the_file_is_not_in_the_thread(fake: FakeSlack, client: AsyncWebClient) -> None:
    reply = await client.chat_postMessage(channel="C1", thread_ts=ROOT_TS, text="answer")
    file_id = await upload(client, DATA)
    await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C1", thread_ts=reply["ts"])

    assert fake.files.in_thread("C1", ROOT_TS) == []
    other = await upload(client, DATA)
    thread_without_channel = client.files_completeUploadExternal(files=[{"id": other}], thread_ts=ROOT_TS)
    assert (await api_error(thread_without_channel)).response["error"] == "invalid_arguments"


async def test_files_upload_is_retired(fake: FakeSlack, client: AsyncWebClient) -> None:
    form = aiohttp.FormData({"channels": "C1", "token": TOKEN})
    form.add_field("file", DATA, filename="a.bin", content_type="application/octet-stream")
    async with aiohttp.ClientSession() as session, session.post(f"{fake.api_url}files.upload", data=form) as resp:
        body = await resp.json()

    assert body == {"ok": False, "error": "method_deprecated"}
    assert fake.files.shared == [] and fake.count("files.upload", ok=False) == 1


async def test_without_files_write_uploads_are_refused() -> None:
    async with FakeSlack(bot_token=TOKEN, scopes=OAUTH_SCOPES.replace(",files:write", "")) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        error = await api_error(client.files_getUploadURLExternal(filename="a.png", length=3))

    assert error.response["error"] == "missing_scope"


async def test_files_methods_are_rate_limited_at_tier_4() -> None:
    async with FakeSlack(bot_token=TOKEN, rate_limits={"files.getUploadURLExternal": 2}) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        for _ in range(2):
            await client.files_getUploadURLExternal(filename="a.png", length=3)
        limited = await api_error(client.files_getUploadURLExternal(filename="a.png", length=3))

    assert limited.response.status_code == 429 and fake.rate_limited == 1
    assert FakeSlack(bot_token=TOKEN).rate_limits["files.completeUploadExternal"] == 100


async def test_complete_lists_several_files_at_once(fake: FakeSlack, client: AsyncWebClient) -> None:
    ids = [await upload(client, DATA[:n], filename=f"{n}.bin") for n in (10, 20)]
    await client.api_call(
        "files.completeUploadExternal",
        params={"files": json.dumps([{"id": i} for i in ids]), "channel_id": "D1", "thread_ts": ROOT_TS},
    )

    assert [(f.filename, len(f.data)) for f in fake.files.in_thread("D1", ROOT_TS)] == [("10.bin", 10), ("20.bin", 20)]
