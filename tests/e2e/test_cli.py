"""The `dify-bots` command as a user runs it: chat over a pipe, check, settings errors."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.dify import FakeDify, Transcript
from tests.fakes.dify_transcripts import TRANSCRIPTS


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


def cli_env(dify: FakeDify, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
    env.pop("REDIS_URL", None)  # the embedded Redis under DATA_DIR, as on a fresh machine
    env.update({"DIFY_API_KEY": dify.api_key, "DIFY_BASE_URL": dify.url, "DATA_DIR": str(data_dir)})
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str], stdin: bytes = b"", cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_chat_reads_lines_and_keeps_the_conversation_across_runs(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    code, out, err = await run_cli("chat", env=env, stdin=b"hi\nmore\n", cwd=tmp_path)
    assert code == 0, err
    assert out == "echo: hi\necho: more\n"
    code, out, _ = await run_cli("chat", env=env, stdin=b"still there?\n", cwd=tmp_path)
    assert code == 0 and out == "echo: still there?\n"
    ids = [r["conversation_id"] for r in dify.chat_requests()]
    assert ids[0] == "" and ids[1] == ids[2] != ""  # one conversation, kept across runs


async def test_chat_reset_starts_over(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data")
    code, _, err = await run_cli("chat", env=env, stdin=b"one\n/reset\ntwo\n", cwd=tmp_path)
    assert code == 0 and "Conversation cleared" in err
    assert [r["conversation_id"] for r in dify.chat_requests()] == ["", ""]


async def test_chat_shows_progress_and_friendly_errors(dify: FakeDify, tmp_path: Path) -> None:
    dify.mode = "agent-chat"
    dify.script(Transcript(TRANSCRIPTS["agent_with_tool"]), Transcript(TRANSCRIPTS["chat_error_mid_stream"]))
    env = cli_env(dify, tmp_path / "data")
    code, out, err = await run_cli("chat", env=env, stdin=b"time?\nexplain\n", cwd=tmp_path)
    assert code == 0
    assert "[Using Current Time…]" in err
    assert out == (
        "It is 10:00 UTC.\nThe answer is\n"
        "The AI model behind the assistant did not answer. Please try again in a moment.\n"
    )


async def test_check_passes_against_a_working_setup(dify: FakeDify, tmp_path: Path) -> None:
    code, out, _ = await run_cli("check", env=cli_env(dify, tmp_path / "data"), cwd=tmp_path)
    assert code == 0
    assert "ok    Dify /info: app 'Test App', mode chat" in out
    assert "ok    conversation store" in out


async def test_check_with_a_wrong_key_fails_clearly(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data", DIFY_API_KEY="app-wrong-key-123")
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 1
    assert "FAIL  Dify /info: the API key was refused (HTTP 401). Check DIFY_API_KEY." in out
    assert "app-wrong-key-123" not in out + err


async def test_malformed_setting_prints_one_line(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data", CONVERSATION_TTL="a week")
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dify-bots: invalid settings: CONVERSATION_TTL is invalid")
    assert "Traceback" not in err


async def test_missing_key_prints_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFY_")}
    code, _, err = await run_cli("chat", env=env, cwd=tmp_path)
    assert code == 2
    assert err == (
        "dify-bots: invalid settings: DIFY_API_KEY is not set; expected the Dify app's API key (starts with 'app-')\n"
    )


async def test_run_with_nothing_configured_says_what_to_set(dify: FakeDify, tmp_path: Path) -> None:
    code, _, err = await run_cli("run", env=cli_env(dify, tmp_path / "data"), cwd=tmp_path)
    assert code == 2 and "TELEGRAM_BOT_TOKEN" in err and "SLACK_BOT_TOKEN" in err and "OPENAI_API_KEYS" in err


async def test_check_verifies_platform_tokens(dify: FakeDify, tmp_path: Path) -> None:
    from tests.e2e.slack_harness import BOT_TOKEN
    from tests.e2e.telegram_harness import TOKEN
    from tests.fakes.slack import FakeSlack
    from tests.fakes.telegram import FakeTelegram

    async with FakeTelegram(token=TOKEN) as telegram, FakeSlack(bot_token=BOT_TOKEN) as slack:
        env = cli_env(
            dify,
            tmp_path / "data",
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE=telegram.url,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_API_BASE=slack.api_url,
            SLACK_SIGNING_SECRET="s",
        )
        code, out, err = await run_cli("check", env=env, cwd=tmp_path)
        assert code == 0, out + err
        assert "ok    Telegram getMe: @test_bot (id 123456), long polling" in out
        assert "ok    Slack auth.test: team T1, bot user UBOT, HTTP mode at /slack/events" in out
        env["TELEGRAM_BOT_TOKEN"] = "123456:WRONG-TOKEN-zzzzzzzzzzzzzzzzzzzzzzzzz"
        env["SLACK_BOT_TOKEN"] = "xoxb-wrong"
        code, out, err = await run_cli("check", env=env, cwd=tmp_path)
        assert code == 1
        assert "FAIL  Telegram getMe: Telegram refused the token. Check TELEGRAM_BOT_TOKEN." in out
        assert "FAIL  Slack auth.test: Slack refused the token (invalid_auth). Check SLACK_BOT_TOKEN." in out
        assert "WRONG-TOKEN" not in out + err and "xoxb-wrong" not in out + err


async def test_check_says_when_no_front_door_is_configured(dify: FakeDify, tmp_path: Path) -> None:
    code, out, _ = await run_cli("check", env=cli_env(dify, tmp_path / "data"), cwd=tmp_path)
    assert code == 0
    assert "warn  front doors: none is configured" in out and "TELEGRAM_BOT_TOKEN" in out


async def test_check_warns_about_a_half_configured_front_door(dify: FakeDify, tmp_path: Path) -> None:
    env = cli_env(dify, tmp_path / "data", SLACK_APP_TOKEN="xapp-1-A1-123-abcdef")
    code, out, err = await run_cli("check", env=env, cwd=tmp_path)
    assert code == 0
    assert "warn  slack: SLACK_APP_TOKEN set but SLACK_BOT_TOKEN is not: Slack stays off" in out
    assert "xapp-1-A1-123-abcdef" not in out + err


async def test_version_and_subcommand_help(tmp_path: Path) -> None:
    code, out, _ = await run_cli("--version", env=dict(os.environ), cwd=tmp_path)
    assert code == 0 and out.startswith("dify-bots 0.")
    code, out, _ = await run_cli("run", "--help", env=dict(os.environ), cwd=tmp_path)
    assert code == 0 and "SHUTDOWN_GRACE" in out and "--only" in out and "telegram, slack, openai" in out


async def test_env_file_after_the_subcommand(dify: FakeDify, tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env(dify, tmp_path / "data").items() if k != "DIFY_API_KEY"}
    settings = tmp_path / "bot.env"
    settings.write_text(f"DIFY_API_KEY={dify.api_key}\n")
    code, out, _ = await run_cli("check", "--env-file", str(settings), env=env, cwd=tmp_path)
    assert code == 0 and "ok    Dify /info" in out
    code, out, err = await run_cli("check", "--env-file", str(tmp_path / "missing.env"), env=env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert err == f"dify-bots: invalid settings: the settings file {tmp_path / 'missing.env'} does not exist\n"
