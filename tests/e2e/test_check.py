"""`dify-bots check` and `chat` against wrong Dify URLs, contradicting modes and an app that cannot answer."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.dify.errors import DifyBadBaseUrl, DifyModelUnavailable, DifyUnreachable
from core.texts import friendly_error
from tests.e2e.test_cli import cli_env, run_cli
from tests.fakes.dify import PLUGIN_DAEMON_DOWN, FakeDify

CLASS_NAMES = ("ClientConnectorError", "TokenValidationError", "DifyBadBaseUrl", "Traceback", "HTTP 404")


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


def fail_line(out: str, name: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"FAIL  {name}: ")]
    assert len(lines) == 1, out
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "expected_hint"),
    [("", "/v1"), ("/api", "/v1"), ("/v1/chat-messages", "/v1")],
    ids=["without-v1", "web-app-api", "trailing-path"],
)
async def test_a_wrong_base_url_is_named_with_the_fix(
    dify: FakeDify, tmp_path: Path, path: str, expected_hint: str
) -> None:
    env = cli_env(dify, tmp_path / "data", DIFY_BASE_URL=dify.host_url + path)
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    line = fail_line(out, "Dify /info")
    assert f"DIFY_BASE_URL {dify.host_url}{path} does not lead to Dify's Service API" in line
    assert line.endswith(f"e.g. {dify.host_url}{expected_hint}")
    assert "DIFY_API_KEY" not in line  # a wrong address is not blamed on the key
    assert not any(name in out + err for name in CLASS_NAMES)
    assert dify.api_key not in out + err
    assert dify.chat_requests() == []  # nothing else was tried on a wrong address


async def test_an_unreachable_host_is_named_in_words(dify: FakeDify, tmp_path: Path) -> None:
    port = closed_port()
    env = cli_env(dify, tmp_path / "data", DIFY_BASE_URL=f"http://127.0.0.1:{port}/v1")
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    assert fail_line(out, "Dify /info") == (
        f"FAIL  Dify /info: could not reach 127.0.0.1:{port}: the connection was refused. "
        "Check DIFY_BASE_URL and the network."
    )
    assert not any(name in out + err for name in CLASS_NAMES)


async def test_check_asks_one_real_question_with_the_app_inputs(dify: FakeDify, tmp_path: Path) -> None:
    dify.user_input_form = [
        {"text-input": {"label": "Name", "variable": "name", "required": True, "max_length": 3, "default": ""}},
        {"select": {"label": "Tone", "variable": "tone", "required": True, "options": ["formal", "casual"]}},
        {"number": {"label": "Count", "variable": "count", "required": False}},
    ]
    code, out, _ = await run_cli("check", env=cli_env(dify, tmp_path / "data"), cwd=tmp_path)
    assert code == 0, out
    requests = dify.chat_requests()
    assert len(requests) == 1
    asked = requests[0]
    assert asked["user"].startswith("difybots-check-") and asked["response_mode"] == "streaming"
    assert asked["inputs"] == {"name": "che", "tone": "formal", "count": 1}
    answer = f"echo: {asked['query']}"
    assert f"ok    Dify answer: the app answered a test question ({len(answer)} characters)" in out
    assert dify.conversations == {}  # the throwaway conversation was deleted


async def test_a_model_provider_that_is_down_fails_check_as_a_server_problem(dify: FakeDify, tmp_path: Path) -> None:
    dify.script(PLUGIN_DAEMON_DOWN)
    code, out, err = await run_cli("check", env=cli_env(dify, tmp_path / "data"), cwd=tmp_path)
    assert code == 1
    assert "ok    Dify /info" in out
    line = fail_line(out, "Dify answer")
    assert "the Dify server cannot reach the app's model (a server-side problem" in line
    assert 'Dify said "Failed to request plugin daemon' in line
    assert "Check the model provider and the plugin daemon in Dify." in line
    assert "rephras" not in out + err
    assert "Some checks failed." in err


async def test_a_forced_mode_that_contradicts_the_app_fails_check(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data", DIFY_APP_MODE="workflow")
    code, out, _ = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    assert fail_line(out, "Dify /info") == (
        "FAIL  Dify /info: DIFY_APP_MODE is workflow but the app 'Test App' is chat; "
        "set DIFY_APP_MODE=chat or leave it empty"
    )
    assert dify.chat_requests() == []


async def test_completion_apps_are_refused(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data", DIFY_APP_MODE="completion")
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("dify-bots: invalid settings: DIFY_APP_MODE is completion: completion apps are not supported")
    dify.mode = "completion"  # detected rather than configured
    code, out, _ = await run_cli("check", env=cli_env(dify, tmp_path / "data"), cwd=tmp_path)
    assert code == 1
    assert "FAIL  Dify /info: the app 'Test App' is a completion app, which dify-bots does not support" in out


async def test_chat_names_a_wrong_base_url_before_saying_connected(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data", DIFY_BASE_URL=dify.host_url)
    code, out, err = await run_cli("chat", env=env, stdin=b"hello\n", cwd=tmp_path)
    assert code == 1 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"dify-bots: cannot use the Dify app: DIFY_BASE_URL {dify.host_url} does not lead")
    assert "Connected." not in err and "Traceback" not in err
    assert dify.chat_requests() == []


async def test_the_first_failed_answer_says_the_server_is_at_fault(dify: FakeDify, tmp_path: Path) -> None:
    dify.script(PLUGIN_DAEMON_DOWN)
    code, out, _ = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=b"hello\n", cwd=tmp_path)
    assert out == friendly_error(DifyModelUnavailable()) + "\n"
    assert "rephras" not in out and "not your message's fault" in out
    assert code == 1  # every line asked failed


def test_friendly_sentences_name_the_setting() -> None:
    for lang in ("en", "zh"):
        assert "DIFY_BASE_URL" in friendly_error(DifyBadBaseUrl(), lang)
        assert "/v1" in friendly_error(DifyBadBaseUrl(), lang)
        assert "DIFY_BASE_URL" in friendly_error(DifyUnreachable(), lang)
