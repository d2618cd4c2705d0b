"""`dify-bots chat` as a user runs it: answers printed once, logs kept out, input hygiene, Ctrl-C, exit codes."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.files.intake import DEFAULT_QUESTION
from core.question import MAX_QUESTION_CHARS, QuestionTooLong
from core.texts import friendly_error, text
from tests.e2e.test_cli import cli_env, run_cli
from tests.fakes.dify import Answer, FakeDify, FileUpload, HttpError, Transcript
from tests.fakes.dify_transcripts import IMAGE_FILE_URL, TRANSCRIPTS, recorded


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


async def test_two_output_workflow_is_printed_once(dify: FakeDify, tmp_path: Path) -> None:
    dify.mode = "workflow"
    dify.script(recorded("41_wf_stream"), recorded("44_wf_stream_with_file"))
    code, out, err = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=b"hello\nfile\n", cwd=tmp_path)
    assert code == 0, err
    link = "http://127.0.0.1:5801/files/95150c75-e9f2-4828-8b9f-0a5744c73107/file-preview?"
    lines = out.splitlines()
    assert lines[:3] == ["hello workflow", "**bold** 你好", "with file"]
    assert len(lines) == 4 and lines[3].startswith(f"[image: {link}") and lines[3].endswith("]")
    assert out.count("hello workflow") == 1 and "![pixel.png]" not in out


async def test_logs_go_to_the_log_file_not_the_conversation(dify: FakeDify, tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = await run_cli("chat", env=cli_env(dify, data, LOG_LEVEL="DEBUG"), stdin=b"hi\n", cwd=tmp_path)
    assert code == 0
    assert out == "echo: hi\n" and err == ""
    assert "answered: done" in (data / "chat.log").read_text()
    code, out, err = await run_cli("chat", "-v", env=cli_env(dify, data), stdin=b"hi\n", cwd=tmp_path)
    assert code == 0 and out == "echo: hi\n" and "answered: done" in err


async def test_exit_code_is_1_when_every_line_failed(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    dify.script(HttpError(400, "invalid_param", "nope"), HttpError(400, "invalid_param", "nope"))
    code, out, _ = await run_cli("chat", env=env, stdin=b"one\ntwo\n", cwd=tmp_path)
    assert code == 1 and out.count("The assistant could not accept this message.") == 2
    dify.script(HttpError(400, "invalid_param", "nope"))
    code, out, _ = await run_cli("chat", env=env, stdin=b"one\ntwo\n", cwd=tmp_path)
    assert code == 0 and out.endswith("echo: two\n")


async def test_invalid_utf8_is_replaced_before_it_reaches_dify(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    code, out, _ = await run_cli("chat", env=env, stdin=b"caf\xe9 \xff\xfeok\n", cwd=tmp_path)
    assert code == 0
    assert [request["query"] for request in dify.chat_requests()] == ["caf\ufffd \ufffd\ufffdok"]
    assert out == "echo: caf\ufffd \ufffd\ufffdok\n"


async def test_an_over_long_question_is_refused_without_asking_dify(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    question = "x" * (MAX_QUESTION_CHARS + 1)
    code, out, _ = await run_cli("chat", env=env, stdin=question.encode() + b"\nshort\n", cwd=tmp_path)
    assert code == 0
    assert out == friendly_error(QuestionTooLong()) + "\necho: short\n"
    assert "16,000" in out
    assert [request["query"] for request in dify.chat_requests()] == ["short"]


async def test_relative_file_links_are_absolute_on_their_own_line(dify: FakeDify, tmp_path: Path) -> None:
    dify.mode = "agent-chat"
    dify.script(Transcript(TRANSCRIPTS["agent_with_image_file"]))
    code, out, _ = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=b"chart\n", cwd=tmp_path)
    assert code == 0
    assert out == f"[image: {dify.host_url}{IMAGE_FILE_URL}]\nHere is the sales chart.\n"


async def _read_until(stream: asyncio.StreamReader, marker: str) -> str:
    seen = b""
    while marker.encode() not in seen:
        chunk = await asyncio.wait_for(stream.read(4096), timeout=20)
        assert chunk, f"stdout ended before {marker!r}: {seen!r}"
        seen += chunk
    return seen.decode()


async def test_ctrl_c_stops_the_answer_and_a_second_one_leaves(dify: FakeDify, tmp_path: Path) -> None:
    slow = "one two three four five six seven eight nine ten"
    dify.script(Answer(slow, delay=0.5))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "chat",
        env=cli_env(dify, tmp_path / "data"),
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        process.stdin.write(b"tell me slowly\n")
        await process.stdin.drain()
        first = await _read_until(process.stdout, "one ")
        process.send_signal(signal.SIGINT)
        first += await _read_until(process.stdout, text("stopped"))
        assert first.startswith("one ") and "ten" not in first
        assert first.endswith("\n" + text("stopped")) or first.endswith(text("stopped") + "\n")
        process.stdin.write(b"still there?\n")
        await process.stdin.drain()
        assert "echo: still there?" in await _read_until(process.stdout, "echo: still there?\n")
        assert len(dify.stops) == 1  # Dify's task was stopped too
        process.send_signal(signal.SIGINT)  # at the prompt: leave
        code = await asyncio.wait_for(process.wait(), timeout=20)
        assert code == 130
        assert "Traceback" not in (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_terminal_gets_line_editing_and_history(dify: FakeDify, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "chat_history").write_text("earlier question\n")
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "chat",
        env=cli_env(dify, data, TERM="dumb"),
        cwd=tmp_path,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""

    async def until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            seen += await asyncio.wait_for(asyncio.to_thread(os.read, controller, 4096), timeout=20)

    try:
        await until(b"you> ")
        os.write(controller, b"\x1b[A\n")  # arrow up: the question from the history file
        await until(b"echo: earlier question")
        await until(b"you> ")
        os.write(controller, b"/quit\n")
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(controller)
    assert [request["query"] for request in dify.chat_requests()] == ["earlier question"]
    assert (data / "chat_history").read_text().splitlines()[-2:] == ["earlier question", "/quit"]


# --- /file PATH [question] ------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


async def test_file_command_uploads_the_file_and_asks_the_question(dify: FakeDify, tmp_path: Path) -> None:
    dify.files.config = FileUpload(enabled=True, allowed_file_types=["image", "document"])
    (tmp_path / "my chart.png").write_bytes(PNG)
    (tmp_path / "notes.txt").write_text("refunds within 30 days\n")
    stdin = b'/file "my chart.png" what does it show?\n/file notes.txt\n'
    code, out, err = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=stdin, cwd=tmp_path)
    assert code == 0, err
    first, second = dify.chat_requests()
    assert first["query"] == "what does it show?" and second["query"] == DEFAULT_QUESTION
    assert out == f"echo: what does it show?\necho: {DEFAULT_QUESTION}\n"
    [[chart], [notes]] = dify.received_files
    assert (chart.type, chart.name, chart.data) == ("image", "my chart.png", PNG)
    assert (notes.type, notes.data) == ("document", b"refunds within 30 days\n")
    assert {chart.file.user, notes.file.user} == {first["user"]} == {second["user"]}  # type: ignore[union-attr]


async def test_file_command_problems_are_explained_and_nothing_is_sent(dify: FakeDify, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    stdin = b"/file\n/file missing.pdf what is this?\n/file folder\n/file 'unclosed.pdf\nstill here?\n"
    code, out, err = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=stdin, cwd=tmp_path)
    assert code == 0
    assert out == "echo: still here?\n"
    assert err.splitlines() == [
        "Usage: /file PATH [question]  (quote a path that has spaces)",
        "No such file: missing.pdf",
        "folder is a folder; /file sends one file.",
        "The path has no closing '. Usage: /file PATH [question]  (quote a path that has spaces)",
    ]
    assert [request["query"] for request in dify.chat_requests()] == ["still here?"]
    assert dify.uploads == {}


async def test_a_file_the_app_refuses_is_not_sent(dify: FakeDify, tmp_path: Path) -> None:
    dify.files.config = FileUpload(enabled=True, allowed_file_types=["image"])
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.7\n" + b"x" * 100)
    stdin = b"/file report.pdf summarise this\n"
    code, out, _ = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=stdin, cwd=tmp_path)
    assert code == 1
    assert ".pdf" in out and "summarise" not in out and "echo" not in out
    assert dify.chat_requests() == [] and dify.uploads == {}


async def test_files_off_in_the_app_are_explained(dify: FakeDify, tmp_path: Path) -> None:
    (tmp_path / "pic.png").write_bytes(PNG)
    code, out, _ = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=b"/file pic.png\n", cwd=tmp_path)
    assert code == 1 and out.strip() and "echo" not in out
    assert dify.chat_requests() == [] and dify.uploads == {}


async def test_relative_markdown_images_get_an_absolute_link(dify: FakeDify, tmp_path: Path) -> None:
    url = dify.produce(PNG, name="chart.png")
    answer = f"Here it is: ![chart]({url})"
    dify.script(Answer(answer))
    code, out, _ = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=b"chart\n", cwd=tmp_path)
    assert code == 0
    assert out == f"{answer}\n[image: {dify.host_url}{url}]\n"


async def test_voice_command_transcribes_converts_and_answers(tmp_path: Path) -> None:
    voice = Path(__file__).parents[1] / "data" / "voice.ogg"
    async with FakeDify(speech_to_text=True) as dify:
        dify.script_transcript("when do you open")
        stdin = f"/voice {voice}\n/voice {voice} extra words\n".encode()
        code, out, err = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=stdin, cwd=tmp_path)
    assert code == 0, err
    assert out == f"{text('heard', text='when do you open')}\necho: when do you open\n"
    assert "A recording is its own question." in err
    [call] = dify.files.audio_calls
    assert (call.mime_type, call.detected, call.status) == ("audio/mp3", "mp3", 200)  # OGG/Opus became MP3
    assert [request["query"] for request in dify.chat_requests()] == ["when do you open"]
