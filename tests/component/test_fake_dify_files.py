"""The fake Dify's file side holds the rules real Dify 1.15 applies to uploads, `files`, voice and file links."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]

from tests.fakes import dify_transcripts
from tests.fakes.dify import Answer, FakeDify, FileUpload, SizeLimits, Transcript

USER = "tg:1"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def dify(clock: Clock) -> AsyncIterator[FakeDify]:
    config = FileUpload(enabled=True, allowed_file_types=["image", "document"], number_limits=3)
    async with FakeDify(mode="chat", file_upload=config, clock=clock) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(dify: FakeDify) -> dict[str, str]:
    return {"Authorization": f"Bearer {dify.api_key}"}


async def upload(
    http: aiohttp.ClientSession,
    dify: FakeDify,
    data: bytes,
    *,
    name: str = "pixel.png",
    mime: str | None = "image/png",
    user: str = USER,
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("user", user)
    if mime is None:  # aiohttp labels a part without a type as octet-stream; Dify needs none at all
        writer = aiohttp.MultipartWriter("form-data")
        writer.append(user).set_content_disposition("form-data", name="user")
        part = writer.append(data, {"Content-Type": ""})
        part.headers.popall("Content-Type", None)
        part.set_content_disposition("form-data", name="file", filename=name)
        async with http.post(dify.url + "/files/upload", data=writer, headers=auth(dify)) as r:
            return r.status, await r.json()
    form.add_field("file", io.BytesIO(data), filename=name, content_type=mime)
    async with http.post(dify.url + "/files/upload", data=form, headers=auth(dify)) as r:
        return r.status, await r.json()


async def uploaded(http: aiohttp.ClientSession, dify: FakeDify, data: bytes = PNG, **kwargs: Any) -> str:
    status, body = await upload(http, dify, data, **kwargs)
    assert status == 201, body
    return str(body["id"])


def ref(file_id: str, file_type: str = "image", method: str = "local_file") -> dict[str, str]:
    return {"type": file_type, "transfer_method": method, "upload_file_id": file_id}


async def ask(
    http: aiohttp.ClientSession, dify: FakeDify, files: list[Any], *, user: str = USER, stream: bool = False
) -> tuple[int, Any]:
    body = {
        "inputs": {},
        "query": "see picture",
        "user": user,
        "files": files,
        "response_mode": "streaming" if stream else "blocking",
    }
    async with http.post(dify.url + "/chat-messages", json=body, headers=auth(dify)) as r:
        if r.content_type == "text/event-stream":
            return r.status, await r.text()
        return r.status, await r.json()


# --- /parameters ----------------------------------------------------------------------------------


async def test_parameters_show_the_configured_file_rules(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.config = FileUpload(
        enabled=True,
        allowed_file_types=["image", "custom"],
        allowed_file_extensions=[".zip", ".ZIP"],
        allowed_file_upload_methods=["local_file"],
        number_limits=5,
        image_number_limits=2,
    )
    dify.files.limits = SizeLimits(file_size_limit=20, image_file_size_limit=4)
    dify.files.speech_to_text = True
    async with http.get(dify.url + "/parameters", headers=auth(dify)) as r:
        body = await r.json()
    upload_config = body["file_upload"]
    assert upload_config["image"] == {
        "detail": "high",
        "enabled": True,
        "number_limits": 2,
        "transfer_methods": ["local_file"],
    }
    assert upload_config["enabled"] is True and upload_config["number_limits"] == 5
    assert upload_config["allowed_file_types"] == ["image", "custom"]
    assert upload_config["allowed_file_extensions"] == [".zip", ".ZIP"]
    assert body["speech_to_text"] == {"enabled": True}
    assert body["system_parameters"]["file_size_limit"] == 20
    assert body["system_parameters"]["image_file_size_limit"] == 4


async def test_default_chat_app_shows_images_off(http: aiohttp.ClientSession) -> None:
    async with FakeDify() as dify:
        async with http.get(dify.url + "/parameters", headers=auth(dify)) as r:
            body = await r.json()
    assert body["file_upload"] == {
        "image": {
            "enabled": False,
            "number_limits": 3,
            "detail": "high",
            "transfer_methods": ["remote_url", "local_file"],
        }
    }
    assert body["speech_to_text"] == {"enabled": False}


# --- POST /files/upload ---------------------------------------------------------------------------


async def test_upload_keeps_the_bytes_and_the_user(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    file_id = await uploaded(http, dify, PNG, user="tg:42")
    stored = dify.uploads[file_id]
    assert (stored.data, stored.user, stored.name, stored.mime_type, stored.size) == (
        PNG,
        "tg:42",
        "pixel.png",
        "image/png",
        len(PNG),
    )


@pytest.mark.parametrize(
    ("name", "mime", "megabytes", "status"),
    [
        ("big.png", "image/png", 2, 413),  # image limit 1 MB
        ("big.PNG", "image/png", 2, 413),  # Dify lowers the extension before choosing the limit
        ("big.pdf", "application/pdf", 2, 201),  # document limit 3 MB
        ("big.pdf", "application/pdf", 4, 413),
        ("big.mp3", "audio/mpeg", 4, 201),  # audio limit 5 MB
    ],
)
async def test_upload_size_limit_follows_the_extension(
    dify: FakeDify, http: aiohttp.ClientSession, name: str, mime: str, megabytes: int, status: int
) -> None:
    dify.files.limits = SizeLimits(file_size_limit=3, image_file_size_limit=1, audio_file_size_limit=5)
    got, body = await upload(http, dify, b"x" * (megabytes * 1024 * 1024 + 1), name=name, mime=mime)
    assert got == status
    if status == 413:
        assert body == {"code": "file_too_large", "message": "", "status": 413}
        assert dify.uploads == {}


async def test_upload_needs_a_part_content_type(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    status, body = await upload(http, dify, b"abc", name="noctype.bin", mime=None)
    assert (status, body["code"]) == (415, "unsupported_file_type")
    status, body = await upload(http, dify, b"abc", name="any.bin", mime="application/octet-stream")
    assert status == 201 and body["mime_type"] == "application/octet-stream"


# --- `files` in chat-messages -----------------------------------------------------------------------


async def test_own_upload_is_accepted_and_recorded(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    file_id = await uploaded(http, dify)
    status, body = await ask(http, dify, [ref(file_id)])
    assert status == 200 and body["answer"] == "echo: see picture"
    [[accepted]] = dify.received_files
    assert (accepted.type, accepted.upload_file_id, accepted.data) == ("image", file_id, PNG)
    [message_file] = dify.messages[-1]["message_files"]
    assert (message_file["upload_file_id"], message_file["filename"], message_file["belongs_to"]) == (
        file_id,
        "pixel.png",
        "user",
    )
    assert message_file["url"].startswith(dify.host_url + f"/files/{file_id}/file-preview?")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([{"type": "image", "upload_file_id": "x"}], "transfer_method is required in file mapping"),
        ([{"type": "image", "transfer_method": "local_file"}], "Invalid upload file id"),
        ([ref("not-a-uuid")], "Invalid upload file id format"),
        ([ref(str(uuid.uuid4()))], "Invalid upload file"),
        ([{"type": "image", "transfer_method": "remote_url"}], "Invalid file url"),
        ([{"type": "image", "transfer_method": "by_pigeon"}], "No matching enum found for value 'by_pigeon'"),
    ],
)
async def test_bad_references_are_refused_by_chat_apps(
    dify: FakeDify, http: aiohttp.ClientSession, files: list[Any], message: str
) -> None:
    status, body = await ask(http, dify, files)
    assert (status, body) == (400, {"code": "invalid_param", "message": message, "status": 400})
    assert dify.received_files == [] and dify.messages == []


async def test_another_users_upload_is_refused(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    file_id = await uploaded(http, dify, user="tg:1")
    dify.script(Answer("kept for the next valid request"))
    status, body = await ask(http, dify, [ref(file_id)], user="tg:2")
    assert (status, body["message"]) == (400, "Invalid upload file")
    status, body = await ask(http, dify, [ref(file_id)], user="tg:1")
    assert body["answer"] == "kept for the next valid request"


async def test_chatflow_refuses_a_foreign_upload_after_http_200(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    """Real Dify 1.15, file 23: ping, a synthetic workflow_started, a failed workflow_finished."""
    dify.mode = "advanced-chat"
    file_id = await uploaded(http, dify, user="tg:1")
    status, text = await ask(http, dify, [ref(file_id)], user="tg:2", stream=True)
    real = dify_transcripts.recorded_body("23_cf_stream_with_foreign_file").decode()
    assert status == 200
    assert [block.split('"data"')[0].split('"task_id"')[0] for block in text.split("\n\n")] == [
        block.split('"data"')[0].split('"task_id"')[0] for block in real.split("\n\n")
    ]
    finished = json.loads(text.strip().split("\n\n")[-1][len("data: ") :])
    assert (finished["data"]["status"], finished["data"]["error"]) == ("failed", "Invalid upload file")
    assert dify.conversations == {}


async def test_chatflow_shows_accepted_files_in_sys_files(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "advanced-chat"
    file_id = await uploaded(http, dify)
    _, text = await ask(http, dify, [ref(file_id)], stream=True)
    started = next(json.loads(b[6:]) for b in text.split("\n\n") if b.startswith('data: {"event":"workflow_started"'))
    [sys_file] = started["data"]["inputs"]["sys.files"]
    assert (sys_file["related_id"], sys_file["filename"], sys_file["extension"]) == (file_id, "pixel.png", ".png")
    real = json.loads(dify_transcripts.recorded_body("22_cf_stream_with_file").split(b"\n\n")[1][6:])
    assert sys_file.keys() == real["data"]["inputs"]["sys.files"][0].keys()


async def test_type_rules(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.config = FileUpload(enabled=True, allowed_file_types=["image"], allowed_file_extensions=[".zip"])
    pdf = await uploaded(http, dify, b"%PDF-1.7", name="report.pdf", mime="application/pdf")
    status, body = await ask(http, dify, [ref(pdf, "document")])
    assert (status, body["message"]) == (400, "File validation failed for file: report.pdf")
    # custom passes the type list but needs its (lower-cased) extension listed
    upper = await uploaded(http, dify, b"PK", name="A.ZIP", mime="application/zip")
    status, body = await ask(http, dify, [ref(upper, "custom")])
    assert status == 200
    rar = await uploaded(http, dify, b"Rar!", name="a.rar", mime="application/x-rar")
    status, body = await ask(http, dify, [ref(rar, "custom")])
    assert (status, body["message"]) == (400, "File validation failed for file: a.rar")
    assert [[f.upload_file_id for f in files] for files in dify.received_files] == [[upper]]


async def test_custom_extension_is_compared_after_lowering(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    """Dify stores the extension in lower case, so an app listing only ".ZIP" refuses every zip."""
    dify.files.config = FileUpload(enabled=True, allowed_file_types=["custom"], allowed_file_extensions=[".ZIP"])
    file_id = await uploaded(http, dify, b"PK", name="A.ZIP", mime="application/zip")
    status, body = await ask(http, dify, [ref(file_id, "custom")])
    assert (status, body["message"]) == (400, "File validation failed for file: A.ZIP")


async def test_transfer_method_must_be_allowed(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.config = FileUpload(enabled=True, allowed_file_upload_methods=["remote_url"])
    file_id = await uploaded(http, dify)
    status, body = await ask(http, dify, [ref(file_id)])
    assert (status, body["message"]) == (400, "File validation failed for file: pixel.png")


async def test_number_limits(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.config = FileUpload(enabled=True, number_limits=3, image_number_limits=2)
    images = [await uploaded(http, dify) for _ in range(3)]
    status, body = await ask(http, dify, [ref(i) for i in images])
    assert (status, body["message"]) == (400, "Number of image files exceeds the maximum limit 2")
    docs = [await uploaded(http, dify, b"hi", name=f"n{i}.txt", mime="text/plain") for i in range(4)]
    status, body = await ask(http, dify, [ref(d, "document") for d in docs])
    assert (status, body["message"]) == (400, "Number of files exceeds the maximum limit 3")
    status, body = await ask(http, dify, [ref(images[0]), *[ref(d, "document") for d in docs[:2]]])
    assert status == 200 and len(dify.received_files[-1]) == 3


async def test_files_are_dropped_silently_when_uploads_are_off(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files_enabled = False
    status, body = await ask(http, dify, [ref(str(uuid.uuid4()))])
    assert status == 200 and body["answer"] == "echo: see picture"
    assert dify.received_files == [] and dify.messages[-1]["message_files"] == []


async def test_workflow_refusals(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "workflow"
    body = {"inputs": {}, "user": USER, "files": [ref(str(uuid.uuid4()))], "response_mode": "blocking"}
    async with http.post(dify.url + "/workflows/run", json=body, headers=auth(dify)) as r:
        assert (r.status, (await r.json())["message"]) == (400, "Invalid upload file")
    async with http.post(
        dify.url + "/workflows/run", json=body | {"response_mode": "streaming"}, headers=auth(dify)
    ) as r:
        text = await r.text()
    assert r.status == 200 and '"status":"failed"' in text and '"error":"Invalid upload file"' in text


# --- POST /audio-to-text ---------------------------------------------------------------------------


def wav_bytes(seconds: float = 0.1) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros(int(16000 * seconds), dtype="float32"), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def mp3_bytes(seconds: float = 0.2) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, np.zeros(int(16000 * seconds), dtype="float32"), 16000, format="MP3")
    return out.getvalue()


async def transcribe(
    http: aiohttp.ClientSession, dify: FakeDify, data: bytes, mime: str, name: str = "voice"
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=name, content_type=mime)
    form.add_field("user", USER)
    async with http.post(dify.url + "/audio-to-text", data=form, headers=auth(dify)) as r:
        return r.status, await r.json()


async def test_speech_to_text_must_be_on(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    status, body = await transcribe(http, dify, wav_bytes(), "audio/wav")
    assert (status, body["code"]) == (400, "speech_to_text_disabled")


@pytest.mark.parametrize("mime", ["audio/ogg", "audio/mpeg", "audio/x-wav", "audio/webm"])
async def test_only_dify_audio_part_types_are_taken(dify: FakeDify, http: aiohttp.ClientSession, mime: str) -> None:
    dify.files.speech_to_text = True
    status, body = await transcribe(http, dify, wav_bytes(), mime)
    assert (status, body) == (
        415,
        {"code": "unsupported_audio_type", "message": "Audio type not allowed.", "status": 415},
    )


async def test_audio_bytes_must_be_the_claimed_format(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.speech_to_text = True
    ogg = b"OggS\x00\x02" + bytes(100)
    status, body = await transcribe(http, dify, ogg, "audio/mp3", "voice.mp3")
    assert (status, body["code"]) == (400, "completion_request_error")
    assert dify.files.audio_calls[-1].detected is None


async def test_transcripts(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.speech_to_text = True
    dify.script_transcript("what is the refund policy")
    mp3 = mp3_bytes()
    assert await transcribe(http, dify, mp3, "audio/mp3", "voice.mp3") == (200, {"text": "what is the refund policy"})
    wav = wav_bytes()
    assert await transcribe(http, dify, wav, "audio/wav") == (200, {"text": f"transcript of {len(wav)} bytes"})
    assert [(c.user, c.mime_type, c.detected, c.status) for c in dify.files.audio_calls] == [
        (USER, "audio/mp3", "mp3", 200),
        (USER, "audio/wav", "wav", 200),
    ]


async def test_audio_cap_is_30_mb(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.files.speech_to_text = True
    status, body = await transcribe(http, dify, b"RIFF\x00\x00\x00\x00WAVE" + bytes(30 * 1024 * 1024), "audio/wav")
    assert (status, body["code"]) == (413, "audio_too_large")


# --- files the app produces ---------------------------------------------------------------------------


async def test_tool_file_links_are_signed_and_expire(dify: FakeDify, http: aiohttp.ClientSession, clock: Clock) -> None:
    url = dify.produce(PNG, name="chart.png")
    assert url.startswith("/files/tools/") and ".png?timestamp=" in url
    async with http.get(dify.host_url + url) as r:
        assert (r.status, r.content_type, await r.read()) == (200, "image/png", PNG)
    async with http.get(dify.host_url + url.replace("sign=", "sign=x")) as r:
        assert (r.status, await r.json()) == (403, {"code": "forbidden", "message": "Invalid request.", "status": 403})
    async with http.get(dify.host_url + url.split("?")[0]) as r:
        assert r.status == 403
    clock.now += 301
    async with http.get(dify.host_url + url) as r:
        assert r.status == 403


async def test_upload_preview_links_expire(dify: FakeDify, http: aiohttp.ClientSession, clock: Clock) -> None:
    _, body = await upload(http, dify, PNG)
    async with http.get(body["source_url"]) as r:
        assert (r.status, await r.read()) == (200, PNG)
    clock.now += 301
    async with http.get(body["source_url"]) as r:
        assert (r.status, (await r.json())["message"]) == (404, "File not found or signature is invalid")


async def test_agent_tool_image_reply_serves_its_bytes(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "agent-chat"
    url = dify.produce(PNG)
    dify.script(Transcript(dify_transcripts.agent_tool_image(url, ["Here is", " the chart."])))
    _, text = await ask(http, dify, [], stream=True)
    events = [json.loads(b[6:]) for b in text.split("\n\n") if b.startswith("data: ")]
    [file_event] = [e for e in events if e["event"] == "message_file"]
    assert (file_event["url"], file_event["belongs_to"], file_event["type"]) == (url, "assistant", "image")
    thought = next(e for e in events if e["event"] == "agent_thought" and e["message_files"])
    assert thought["message_files"] == [file_event["id"]]
    async with http.get(dify.host_url + file_event["url"]) as r:
        assert await r.read() == PNG


async def test_workflow_output_files(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "workflow"
    output = dify.produce_output(PNG, name="report.png")
    dify.script(Transcript(dify_transcripts.workflow_with_files("Your report:", [output])))
    body = {"inputs": {}, "user": USER, "response_mode": "streaming"}
    async with http.post(dify.url + "/workflows/run", json=body, headers=auth(dify)) as r:
        text = await r.text()
    events = [json.loads(b[6:]) for b in text.split("\n\n") if b.startswith("data: ")]
    chunks = "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk")
    assert chunks == f"Your report:\n![report.png]({output['url']})"
    finished = events[-1]["data"]
    assert finished["files"] == [output] and finished["outputs"]["file_0"] == output
    assert output["url"].startswith(dify.host_url + "/files/")
    async with http.get(output["url"]) as r:
        assert await r.read() == PNG


async def test_chatflow_message_end_files(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "advanced-chat"
    output = dify.produce_output(
        b"%PDF-1.7 report", name="report.pdf", mime_type="application/pdf", file_type="document"
    )
    dify.script(Transcript(dify_transcripts.chatflow_with_files("Here it is.", [output])))
    _, text = await ask(http, dify, [], stream=True)
    events = [json.loads(b[6:]) for b in text.split("\n\n") if b.startswith("data: ")]
    end = next(e for e in events if e["event"] == "message_end")
    assert end["files"] == [output] and events[-1]["data"]["files"] == [output]
    assert "".join(e["answer"] for e in events if e["event"] == "message") == "Here it is."
