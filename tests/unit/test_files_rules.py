"""What the app accepts (GET /parameters) and the checks made before any file is downloaded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.dify.parameters import MB, AppParameters, FileRules
from core.files.kinds import kind_of, mime_for, proper_name
from core.files.links import absolute_url, dify_images
from core.files.model import FileProblem, IncomingFile
from core.files.rules import SPEECH_LIMIT, check_downloaded, plan

RECORDED = Path(__file__).parents[1] / "fakes" / "real_dify_1_15"
CHATFLOW_PARAMETERS = {
    "opening_statement": "Hi! I repeat what you say.",
    "suggested_questions": ["hello", "what can you do?"],
    "suggested_questions_after_answer": {"enabled": False},
    "speech_to_text": {"enabled": False},
    "file_upload": {
        "allowed_file_extensions": [],
        "allowed_file_types": ["image", "document"],
        "allowed_file_upload_methods": ["local_file", "remote_url"],
        "enabled": True,
        "fileUploadConfig": {"audio_file_size_limit": 50, "file_size_limit": 15, "image_file_size_limit": 10},
        "number_limits": 3,
    },
    "system_parameters": {
        "image_file_size_limit": 10,
        "video_file_size_limit": 100,
        "audio_file_size_limit": 50,
        "file_size_limit": 15,
        "workflow_file_upload_limit": 10,
    },
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24
PDF = b"%PDF-1.7\n"


async def _never() -> AsyncIterator[bytes]:
    raise AssertionError("nothing is downloaded while planning")
    yield b""  # pragma: no cover


def incoming(name: str, mime: str = "", size: int | None = 1000, **kwargs: object) -> IncomingFile:
    return IncomingFile(name=name, mime=mime, size=size, fetch=_never, **kwargs)  # type: ignore[arg-type]


def params(speech: bool = False, **rules: object) -> AppParameters:
    base = {"enabled": True, "allowed_types": frozenset({"image", "document"}), "local_file": True}
    base.update(rules)
    return AppParameters(files=FileRules(**base), speech_to_text=speech)  # type: ignore[arg-type]


def test_chatflow_parameters_as_real_dify_sends_them() -> None:
    parsed = AppParameters.parse(CHATFLOW_PARAMETERS)
    rules = parsed.files
    assert rules.enabled and rules.local_file
    assert rules.allowed_types == {"image", "document"} and rules.allowed_extensions == frozenset()
    assert rules.number_limit == 3 and rules.image_number_limit == 3
    assert rules.size_limits["image"] == 10 * MB and rules.size_limits["document"] == 15 * MB
    assert rules.size_limits["video"] == 100 * MB and rules.size_limits["custom"] == 15 * MB
    assert parsed.suggested_questions == ("hello", "what can you do?") and not parsed.speech_to_text
    assert parsed.opening_statement == "Hi! I repeat what you say."


def recorded_body(name: str) -> object:
    return json.loads((RECORDED / name).read_bytes().split(b"\r\n\r\n", 1)[1])


def test_the_recorded_real_dify_bodies_parse() -> None:
    assert AppParameters.parse(recorded_body("25_cf_parameters.raw")) == AppParameters.parse(CHATFLOW_PARAMETERS)
    chat = AppParameters.parse(recorded_body("56_chat_parameters.raw"))
    assert not chat.files.enabled and chat.files.allowed_types == {"image"} and chat.files.local_file


def test_old_chat_app_image_block_means_images_only() -> None:
    parsed = AppParameters.parse(
        {"file_upload": {"image": {"enabled": True, "number_limits": 2, "transfer_methods": ["remote_url"]}}}
    )
    assert parsed.files.enabled and parsed.files.allowed_types == {"image"}
    assert parsed.files.number_limit == 2 and not parsed.files.local_file


@pytest.mark.parametrize("odd", [None, [], "x", {"file_upload": "x", "system_parameters": {"file_size_limit": "a"}}])
def test_odd_parameters_fall_back_to_no_files(odd: object) -> None:
    parsed = AppParameters.parse(odd)
    assert not parsed.files.enabled and not parsed.speech_to_text
    assert parsed.files.size_limits["document"] == 15 * MB


def test_top_level_switch_wins_over_the_image_block() -> None:
    parsed = AppParameters.parse(
        {"file_upload": {"enabled": False, "image": {"enabled": True}, "allowed_file_types": ["image"]}}
    )
    assert not parsed.files.enabled


def test_kinds_follow_the_bytes_then_difys_extension_lists() -> None:
    assert kind_of("photo.jpg", "image/jpeg", b"\xff\xd8\xff\xe0") == "image"
    assert kind_of("scan", "", PDF) == "document"
    assert kind_of("notes.md", "", b"# hi") == "document"
    assert kind_of("voice.oga", "audio/ogg", b"OggS\0") == "audio"
    assert kind_of("clip.mov", "video/quicktime", b"") == "video"
    assert kind_of("data.parquet", "", b"PAR1") == "custom"
    assert proper_name("scan", PDF) == "scan.pdf"
    assert proper_name("fake.jpg", PNG) == "fake.png"
    assert proper_name("a.jpeg", b"\xff\xd8\xff\xe0") == "a.jpeg"
    assert mime_for("x.png", PNG) == "image/png" and mime_for("notes.txt") == "text/plain"


def test_links_resolve_against_the_host_not_v1() -> None:
    host = "http://dify.local:5001"
    assert absolute_url("/files/tools/a.png?sign=x", host) == "http://dify.local:5001/files/tools/a.png?sign=x"
    assert absolute_url("https://cdn.example/x.png", host) == "https://cdn.example/x.png"
    text = (
        "![chart](/files/tools/a.png?sign=1) and ![b](http://dify.local:5001/files/b.png) "
        '![ext](https://elsewhere.example/c.png) ![f](https://files.example/d.png "t") '
        "![chart](/files/tools/a.png?sign=1)"
    )
    assert dify_images(text, host, extra_hosts=("https://files.example",)) == [
        "http://dify.local:5001/files/tools/a.png?sign=1",
        "http://dify.local:5001/files/b.png",
        "https://files.example/d.png",
    ]


def test_files_disabled_is_refused_before_download() -> None:
    with pytest.raises(FileProblem) as caught:
        plan(params(enabled=False), [incoming("a.pdf")])
    assert caught.value.reason == "files_disabled"
    with pytest.raises(FileProblem) as caught:
        plan(params(local_file=False), [incoming("a.pdf")])
    assert caught.value.reason == "files_disabled"


def test_type_count_and_size_checks_in_order() -> None:
    with pytest.raises(FileProblem) as caught:
        plan(params(), [incoming("song.mp3", "audio/mpeg")])
    assert caught.value.reason == "type_refused" and caught.value.values["what"] == ".mp3"
    with pytest.raises(FileProblem) as caught:
        plan(params(number_limit=2), [incoming(f"{n}.pdf") for n in range(3)])
    assert caught.value.reason == "too_many" and caught.value.values["limit"] == "2"
    with pytest.raises(FileProblem) as caught:
        plan(params(image_number_limit=1), [incoming("a.png"), incoming("b.png")])
    assert caught.value.reason == "too_many" and caught.value.values["limit"] == "1"
    with pytest.raises(FileProblem) as caught:
        plan(params(), [incoming("big.pdf", size=25 * MB, platform_limit=20 * MB)])
    assert caught.value.reason == "too_large" and caught.value.values["limit_mb"] == "15"
    with pytest.raises(FileProblem) as caught:
        plan(params(), [incoming("clip.png", size=12 * MB)])
    assert caught.value.values["limit_mb"] == "10"


def test_custom_extensions_are_matched_with_their_dot() -> None:
    rules = params(allowed_types=frozenset({"custom"}), allowed_extensions=frozenset({".parquet", ".pdf"}))
    planned = plan(rules, [incoming("data.PARQUET"), incoming("r.pdf")])
    assert [p.use for p in planned] == ["upload", "upload"]
    assert check_downloaded(rules.files, planned[1], name="r.pdf", head=PDF, size=10) == "custom"
    with pytest.raises(FileProblem):
        plan(rules, [incoming("a.zip")])


def test_the_bytes_decide_after_download() -> None:
    rules = params(allowed_types=frozenset({"image"}))
    [item] = plan(rules, [incoming("photo.jpg", "image/jpeg")])
    assert check_downloaded(rules.files, item, name="photo.png", head=PNG, size=10) == "image"
    with pytest.raises(FileProblem) as caught:
        check_downloaded(rules.files, item, name="photo.pdf", head=PDF, size=10)
    assert caught.value.reason == "type_refused"


def test_voice_is_transcribed_uploaded_or_refused() -> None:
    voice = incoming("voice.oga", "audio/ogg", voice=True)
    [item] = plan(params(speech=True, enabled=False), [voice])
    assert item.use == "transcribe" and item.cap == SPEECH_LIMIT
    audio_app = params(allowed_types=frozenset({"audio"}))
    assert [p.use for p in plan(audio_app, [voice])] == ["upload"]
    with pytest.raises(FileProblem) as caught:
        plan(params(), [voice])
    assert caught.value.reason == "voice_unsupported"
    with pytest.raises(FileProblem) as caught:
        plan(params(enabled=False), [voice])
    assert caught.value.reason == "voice_unsupported"
