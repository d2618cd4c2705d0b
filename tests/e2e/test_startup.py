"""`dify-bots run` that cannot start: one readable stderr line, no traceback, a non-zero exit, no secret."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.slack_harness import BOT_TOKEN as SLACK_TOKEN
from tests.e2e.telegram_harness import TOKEN
from tests.e2e.test_cli import cli_env, run_cli
from tests.fakes.dify import FakeDify
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

WRONG_TELEGRAM_TOKEN = "123456:WRONG-TOKEN-zzzzzzzzzzzzzzzzzzzzzzzzz"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDify, FakeTelegram]]:
    async with FakeDify() as dify, FakeTelegram(token=TOKEN) as telegram:
        yield dify, telegram


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(dify: FakeDify, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DIFY_API_KEY": dify.api_key,
            "DIFY_BASE_URL": dify.url,
            "DATA_DIR": str(tmp_path / "data"),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(free_port()),
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


async def run_fails(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Start `dify-bots run`, which must exit on its own; its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "run",
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


# slack-bolt warns on every start when SLACK_BOT_TOKEN is in the environment (AsyncApp reads it as well as
# the client we give it); that line is not part of the failure.
BOLT_TOKEN_WARNING = "As you gave `client` as well, `token` will be unused."


def one_line(err: str) -> str:
    err = "".join(line for line in err.splitlines(keepends=True) if BOLT_TOKEN_WARNING not in line)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("dify-bots: ") and "Traceback" not in err
    return err.removeprefix("dify-bots: ").rstrip("\n")


async def test_data_dir_that_is_a_file(fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path) -> None:
    dify, telegram = fakes
    (tmp_path / "data").write_text("not a directory")
    env = env_for(dify, tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE=telegram.url)
    code, err = await run_fails(env, tmp_path)
    assert code == 1
    assert one_line(err) == (
        f"DATA_DIR {tmp_path / 'data'} cannot hold the embedded Redis (it is a file, not a directory); "
        "point DATA_DIR at a writable directory or set REDIS_URL"
    )
    assert TOKEN not in err and telegram.count("getMe") == 0


async def test_data_dir_below_a_file(fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path) -> None:
    dify, telegram = fakes
    (tmp_path / "file").write_text("")
    env = env_for(dify, tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE=telegram.url)
    env["DATA_DIR"] = str(tmp_path / "file" / "data")
    code, err = await run_fails(env, tmp_path)
    assert code == 1
    assert "cannot hold the embedded Redis (part of the path is a file)" in one_line(err)


async def test_port_in_use(
    fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    dify, telegram = fakes
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_for(
            dify,
            tmp_path,
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE=telegram.url,
            REDIS_URL=redis_url,
            REDIS_PREFIX=key_prefix,
            HTTP_PORT=str(port),
        )
        code, err = await run_fails(env, tmp_path)
    assert code == 1
    assert one_line(err) == (
        f"cannot listen on 127.0.0.1:{port}: the port is already in use; stop the other program or set HTTP_PORT"
    )
    assert TOKEN not in err


async def test_telegram_refuses_the_token(
    fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    dify, telegram = fakes
    env = env_for(
        dify,
        tmp_path,
        TELEGRAM_BOT_TOKEN=WRONG_TELEGRAM_TOKEN,
        TELEGRAM_API_BASE=telegram.url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=key_prefix,
    )
    code, err = await run_fails(env, tmp_path)
    assert code == 1
    assert one_line(err) == "Telegram refused the bot token (getMe); check TELEGRAM_BOT_TOKEN"
    assert "WRONG-TOKEN" not in err and telegram.count("getUpdates") == 0


async def test_slack_refuses_the_token(
    fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    dify, _ = fakes
    async with FakeSlack(bot_token=SLACK_TOKEN) as slack:
        env = env_for(
            dify,
            tmp_path,
            SLACK_BOT_TOKEN="xoxb-wrong-secret-token",
            SLACK_SIGNING_SECRET="signing-secret-value",
            SLACK_API_BASE=slack.api_url,
            REDIS_URL=redis_url,
            REDIS_PREFIX=key_prefix,
        )
        code, err = await run_fails(env, tmp_path)
    assert code == 1
    assert one_line(err) == "Slack refused the bot token (auth.test: invalid_auth); check SLACK_BOT_TOKEN"
    assert "xoxb-wrong-secret-token" not in err and "signing-secret-value" not in err


async def test_redis_unreachable(fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path) -> None:
    dify, telegram = fakes
    port = free_port()  # nothing listens there
    env = env_for(
        dify,
        tmp_path,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE=telegram.url,
        REDIS_URL=f"redis://:redis-password-123@127.0.0.1:{port}/0",
    )
    code, err = await run_fails(env, tmp_path)
    assert code == 1
    assert one_line(err) == (
        f"cannot reach Redis at REDIS_URL redis://127.0.0.1:{port}/0 (connection refused); "
        "check that Redis is running and REDIS_URL is right"
    )
    assert "redis-password-123" not in err and TOKEN not in err
    assert telegram.count("getMe") == 0


async def test_http_webhook_url_is_refused_by_the_settings(
    fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path
) -> None:
    dify, telegram = fakes
    env = env_for(
        dify,
        tmp_path,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE=telegram.url,
        TELEGRAM_WEBHOOK_URL="http://bot.example.com/telegram/webhook",
    )
    code, err = await run_fails(env, tmp_path)
    assert code == 2
    assert one_line(err).startswith(
        "invalid settings: TELEGRAM_WEBHOOK_URL must be an https:// URL (Telegram only posts updates over HTTPS)"
    )
    assert TOKEN not in err and telegram.count("getMe") == 0


async def test_chat_with_a_data_dir_that_is_a_file(fakes: tuple[FakeDify, FakeTelegram], tmp_path: Path) -> None:
    dify, _ = fakes
    (tmp_path / "data").write_text("not a directory")
    code, out, err = await run_cli("chat", env=cli_env(dify, tmp_path / "data"), stdin=b"hi\n", cwd=tmp_path)
    assert code == 1 and out == ""
    assert "it is a file, not a directory" in one_line(err)
    assert dify.chat_requests() == []
