"""A replica killed mid-answer (SIGKILL) loses nothing: a restarted replica finishes or re-answers, exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.texts import text
from tests.e2e.telegram_harness import SECRET, TOKEN, eventually
from tests.e2e.test_operations import bot_env, free_port, get, start_bot, stop_bot
from tests.fakes.dify import Answer, FakeDify
from tests.fakes.telegram import FakeTelegram

NOTE = "⚠️ " + text("interrupted_resend")
WEBHOOK_PATH = "/telegram/webhook"
WEBHOOK = {"TELEGRAM_WEBHOOK_URL": f"https://bot.example.com{WEBHOOK_PATH}", "TELEGRAM_WEBHOOK_SECRET": SECRET}
FAST_LEASE = {"JOURNAL_LEASE": "1"}
WORDS = [f"word{i} " for i in range(300)]


class HeldDify(FakeDify):
    """Fake Dify that keeps the first chat request waiting before any response header (Dify never started)."""

    def __init__(self) -> None:
        super().__init__()
        self.to_hold = 1
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def _chat_messages(self, request: web.Request) -> web.StreamResponse:
        if self.to_hold > 0:
            self.to_hold -= 1
            self.holding.set()
            await self.release.wait()
            return web.Response(status=503)  # nobody is listening any more
        return await super()._chat_messages(request)


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


async def kill(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()


async def ready(port: int) -> None:
    async def up() -> bool:
        try:
            return (await get(f"http://127.0.0.1:{port}/readyz"))[0] == 200
        except aiohttp.ClientError:
            return False

    for _ in range(300):
        if await up():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the bot on port {port} never became ready")


async def deliver(port: int, update: dict[str, Any]) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", json=update, headers=headers) as response,
    ):
        assert response.status == 200


def shown(telegram: FakeTelegram, chat_id: int) -> str:
    texts = telegram.visible_texts(chat_id)
    return texts[-1] if texts else ""


async def test_killed_mid_answer_the_next_replica_ends_the_message_and_stops_dify(
    telegram: FakeTelegram, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    async with FakeDify() as dify:
        dify.script(Answer("".join(WORDS), chunks=WORDS, delay=0.1))
        port = free_port()
        env = bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port), **WEBHOOK, **FAST_LEASE)
        first = await start_bot(env, tmp_path)
        try:
            await ready(port)
            await deliver(port, telegram.message_update(chat_id=42, user_id=7, text="long story"))
            # A few frames in: the journal is at most the frame in flight behind what the chat shows.
            await eventually(lambda: "word25" in shown(telegram, 42), timeout=30)
        finally:
            await kill(first)
        at_kill = telegram.visible_texts(42)
        assert len(at_kill) == 1 and at_kill[0].endswith("▌")  # nothing else would ever finish it
        calls_before = len(dify.requests)

        port = free_port()
        second = await start_bot(env | {"HTTP_PORT": str(port)}, tmp_path)
        try:
            await ready(port)
            await eventually(lambda: shown(telegram, 42).endswith(NOTE), timeout=30)
        finally:
            code, err = await stop_bot(second)
    assert code == 0, err
    [final] = telegram.visible_texts(42)
    partial = final.removesuffix("\n\n" + NOTE)
    assert "▌" not in final and partial.startswith("word0 word1 word2 word3")
    assert at_kill[0].removesuffix(" ▌").startswith(partial)  # the text so far, at most one frame behind
    [request] = dify.chat_requests()  # no second question to Dify
    assert request["query"] == "long story"
    assert len(dify.stops) == 1
    stop = [r for r in dify.requests[calls_before:] if r.path.endswith("/stop")]
    assert [r.json for r in stop] == [{"user": "tg-7"}]
    assert TOKEN not in err


async def test_killed_before_dify_started_the_question_is_answered_again(
    telegram: FakeTelegram, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    dify = HeldDify()
    async with dify:
        port = free_port()
        env = bot_env(
            dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port), LOG_LEVEL="INFO", **WEBHOOK, **FAST_LEASE
        )
        first = await start_bot(env, tmp_path)
        try:
            await ready(port)
            update = telegram.message_update(chat_id=42, user_id=7, text="are you there?")
            await deliver(port, update)
            await asyncio.wait_for(dify.holding.wait(), timeout=30)
        finally:
            await kill(first)
        dify.release.set()

        port = free_port()
        second = await start_bot(env | {"HTTP_PORT": str(port)}, tmp_path)
        try:
            await ready(port)
            # The new answer waits for the dead replica's conversation lock to expire (its 30 s lease).
            answered = True
            try:
                await eventually(lambda: shown(telegram, 42) == "echo: are you there?", timeout=60)
            except AssertionError:
                answered = False
            await asyncio.sleep(0.3)
        finally:
            code, err = await stop_bot(second)
    _, first_err = await first.communicate()
    assert answered, (telegram.visible_texts(42), err, first_err.decode())
    assert code == 0, err
    assert [r["query"] for r in dify.chat_requests()] == ["are you there?", "are you there?"]
    [message] = telegram.chat_messages(42)
    assert message.text == "echo: are you there?"
    assert message.reply_to_message_id == update["message"]["message_id"]
    assert dify.stops == []


async def test_two_replicas_restarted_together_finish_an_orphan_once(
    telegram: FakeTelegram, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    async with FakeDify() as dify:
        dify.script(Answer("".join(WORDS), chunks=WORDS, delay=0.1))
        port = free_port()
        first = await start_bot(
            bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port), **WEBHOOK, **FAST_LEASE), tmp_path
        )
        try:
            await ready(port)
            await deliver(port, telegram.message_update(chat_id=43, user_id=8, text="long story"))
            await eventually(lambda: "word3" in shown(telegram, 43), timeout=30)
        finally:
            await kill(first)

        ports = [free_port(), free_port()]
        replicas = await asyncio.gather(
            *(
                start_bot(
                    bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(p), **WEBHOOK, **FAST_LEASE), tmp_path
                )
                for p in ports
            )
        )
        finished = True
        try:
            for replica_port in ports:
                await ready(replica_port)
            await eventually(lambda: shown(telegram, 43).endswith(NOTE), timeout=30)
            await asyncio.sleep(2.5)  # more than a lease and a claim interval: a second finisher would show
        except AssertionError:
            finished = False
        finally:
            results = [await stop_bot(process) for process in replicas]
    assert finished, (telegram.visible_texts(43), results)
    assert [code for code, _ in results] == [0, 0], results
    [message] = telegram.chat_messages(43)
    assert sum(NOTE in version for version in message.history) == 1  # one edit added the line
    assert len(dify.stops) == 1
