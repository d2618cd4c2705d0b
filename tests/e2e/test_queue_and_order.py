"""A busy chat queues visibly and never drops a message; replicas answer one chat in the order it was sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.telegram_harness import SECRET, TOKEN, TelegramHarness, eventually, telegram_bot
from tests.e2e.test_operations import bot_env, free_port, get, start_bot, stop_bot
from tests.fakes.dify import Answer, FakeDify, ReplyContext
from tests.fakes.telegram import FakeTelegram, StoredMessage

WAITING = "Waiting for the previous answer…"
BUSY = "⚠️ The previous answer in this chat is still running. Please wait for it and send again."
WEBHOOK_PATH = "/telegram/webhook"


def reply_to(bot: TelegramHarness, update: dict[str, Any], chat_id: int = 42) -> StoredMessage:
    message_id = update["message"]["message_id"]
    replies = [m for m in bot.telegram.chat_messages(chat_id) if m.reply_to_message_id == message_id]
    assert len(replies) == 1, replies
    return replies[0]


def quick_queue_notice(bot: TelegramHarness, seconds: float) -> None:
    core = bot.service.core
    assert core is not None
    core.service.queue_notice_after = seconds


async def test_a_queued_message_says_so_in_its_own_message_then_becomes_its_answer(
    redis_url: str, key_prefix: str
) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, status_delay=0.1) as bot:
        quick_queue_notice(bot, 0.2)
        bot.dify.script(Answer("first answer is slow", delay=0.4), Answer("second answer"))
        first = await bot.say("first")
        await eventually(lambda: len(bot.dify.chat_requests()) == 1)
        second = await bot.say("second")
        await eventually(lambda: WAITING in bot.answers(), timeout=10, message=str(bot.answers()))
        assert len(bot.dify.chat_requests()) == 1  # the second waits its turn
        texts = await bot.settled(count=2, timeout=20)
        assert texts == ["first answer is slow", "second answer"]  # no extra message left behind
        queued = reply_to(bot, second)
        assert WAITING in queued.history and queued.text == "second answer"
        assert reply_to(bot, first).text == "first answer is slow"
        assert [r["query"] for r in bot.dify.chat_requests()] == ["first", "second"]
        assert bot.telegram.count("sendMessage", chat_id=42) == 2


async def test_a_message_whose_turn_never_comes_ends_with_a_friendly_line_in_its_placeholder(
    redis_url: str, key_prefix: str
) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, status_delay=0.1, lock_timeout=1.0) as bot:
        quick_queue_notice(bot, 0.2)
        bot.dify.script(Answer("a long first answer takes its time", delay=0.5))
        await bot.say("first")
        await eventually(lambda: len(bot.dify.chat_requests()) == 1)
        second = await bot.say("second")
        await eventually(lambda: BUSY in bot.answers(), timeout=10, message=str(bot.answers()))
        queued = reply_to(bot, second)
        assert WAITING in queued.history and queued.text == BUSY
        texts = await bot.settled(count=2, timeout=20)
        assert sorted(texts) == sorted([BUSY, "a long first answer takes its time"])
        assert [r["query"] for r in bot.dify.chat_requests()] == ["first"]
        assert bot.telegram.count("sendMessage", chat_id=42) == 2
        await bot.say("third")  # the chat is free again
        assert (await bot.settled(count=3))[-1] == "echo: third"


# ---- two real processes -----------------------------------------------------------------------------


async def deliver(port: int, update: dict[str, Any]) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", json=update, headers=headers) as response,
    ):
        return response.status


async def ready(port: int) -> bool:
    try:
        return (await get(f"http://127.0.0.1:{port}/readyz"))[0] == 200
    except aiohttp.ClientError:
        return False


def slow_echo(ctx: ReplyContext) -> Answer:
    return Answer(f"echo: {ctx.query}", chunks=["echo: ", ctx.query], delay=0.3)


async def test_two_replicas_answer_one_chat_in_the_order_it_was_sent(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    # Telegram's per-chat flood limit is not what this test is about (the fake enforces it elsewhere).
    async with FakeDify() as dify, FakeTelegram(token=TOKEN, rate_limits=False) as telegram:
        dify.default_reply = slow_echo
        webhook = {"TELEGRAM_WEBHOOK_URL": f"https://bot.example.com{WEBHOOK_PATH}", "TELEGRAM_WEBHOOK_SECRET": SECRET}
        ports = [free_port(), free_port()]
        processes = [
            await start_bot(bot_env(dify, telegram, redis_url, key_prefix, HTTP_PORT=str(port), **webhook), tmp_path)
            for port in ports
        ]
        try:
            for port in ports:
                for _ in range(300):
                    if await ready(port):
                        break
                    await asyncio.sleep(0.1)
            updates = [telegram.message_update(chat_id=44, user_id=9, text=f"m{n}") for n in range(1, 6)]
            for index, update in enumerate(updates):
                assert await deliver(ports[index % 2], update) == 200
                await asyncio.sleep(0.25)

            def finished() -> bool:
                texts = telegram.visible_texts(44)
                return len(texts) == 5 and all(t.startswith("echo: ") and not t.endswith("▌") for t in texts)

            await eventually(finished, timeout=60, message=str(telegram.visible_texts(44)))
            assert [r["query"] for r in dify.chat_requests()] == ["m1", "m2", "m3", "m4", "m5"]
            replies = {m.reply_to_message_id: m for m in telegram.chat_messages(44)}
            answers = [replies[update["message"]["message_id"]] for update in updates]
            assert [m.text for m in answers] == [f"echo: m{n}" for n in range(1, 6)]
            finished_at = [m.edited_at or m.sent_at for m in answers]
            assert finished_at == sorted(finished_at)  # the user sees them answered 1..5
            conversations = {r["conversation_id"] for r in dify.chat_requests()[1:]}
            assert len(conversations) == 1 and conversations <= set(dify.conversations)
        finally:
            results = [await stop_bot(process) for process in processes]
        assert [code for code, _ in results] == [0, 0], results
