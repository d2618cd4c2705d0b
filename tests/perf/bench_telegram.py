"""Benchmark: N concurrent private chats through a real `dify-bots run` process against the fake Telegram.

Run: python tests/perf/bench_telegram.py [--chats 200] [--seconds 10] [--chars 1500] [--spread 0] [--vary 0]

The fake Dify streams a ~1,500-character answer over ~10 s to every chat at once; the bot (a separate
process, so its CPU and memory are its own) long-polls the fake Telegram, whose flood rules are
Telegram's. Prints edits per answer, latencies, 429s, CPU seconds and peak RSS of the bot.

BENCH_PROFILE=out.txt samples the bot with py-spy (`pip install py-spy`) over the measured answers only and
writes collapsed stacks there (one "frame;frame;... count" line each; feed them to a flame graph tool).
py-spy cannot follow uvloop's C loop: add EVENT_LOOP=asyncio to profile Python's frames.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bots.telegram.markdown import render_markdown  # noqa: E402
from tests.fakes.dify import Delay, Events, FakeDify, Mark, ReplyContext, Step, Transcript  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402

TOKEN = "123456:BENCH-TOKEN-abcdefghijklmnopqrstuvwxyz"
WORDS = (
    "refund",
    "delivery",
    "policy",
    "receipt",
    "window",
    "customer",
    "support",
    "Telegram",
    "answer",
    "**bold**",
    "`code`",
    "退款",
    "🌏",
)


@dataclass
class Timeline:
    """When the fake Dify started streaming to each user and when it sent message_end."""

    first_chunk: dict[str, float] = field(default_factory=dict)
    message_end: dict[str, float] = field(default_factory=dict)


def make_answer(chars: int, seed: int) -> str:
    words, total, i = [], 0, seed
    while total < chars:
        word = WORDS[i % len(WORDS)]
        words.append(word)
        total += len(word) + 1
        i += 7
        if i % 23 == 0:
            words.append("\n\n")
    return " ".join(words).strip()


def streaming_reply(answers: dict[str, str], seconds: dict[str, float], timeline: Timeline) -> Transcript:
    """Each user's own answer, in 10-character chunks spread over that user's `seconds`."""

    def build(ctx: ReplyContext) -> list[Step]:
        answer = answers[ctx.user]
        chunks = [answer[i : i + 10] for i in range(0, len(answer), 10)]
        gap = seconds[ctx.user] / max(1, len(chunks))
        ev = Events(ctx)
        steps: list[Step] = [Mark(lambda: timeline.first_chunk.__setitem__(ctx.user, time.monotonic()))]
        for chunk in chunks:
            steps += [ev.message(chunk), Delay(gap)]
        steps[-1] = Mark(lambda: timeline.message_end.__setitem__(ctx.user, time.monotonic()))
        steps.append(ev.message_end())
        return steps

    return Transcript(build)


def process_stats(pid: int, field: str = "VmHWM:") -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS (or another /proc status `field`) in bytes, from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field):
                peak = int(line.split()[1]) * 1024
    return cpu, peak


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def start_profiler(pid: int) -> asyncio.subprocess.Process | None:
    """py-spy sampling the bot into BENCH_PROFILE, when that is set."""
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return None
    spy = await asyncio.create_subprocess_exec(
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "250",
        "--nonblocking",  # sample without pausing the bot, so its latencies stay close to real ones
        "--output",
        out,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)  # let it attach
    return spy


async def stop_profiler(spy: asyncio.subprocess.Process | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    await asyncio.wait_for(spy.wait(), 30)


def length_factor(n: int, chats: int, vary: float) -> float:
    """Chat `n`'s answer length (and streaming time) as a share of the nominal one: evenly from 1 - vary to
    1 + vary across the chats, so with vary > 0 the answers end at every phase of the edit cadence."""
    return 1.0 - vary + 2 * vary * (n + 0.5) / chats


async def run(chats: int, seconds: float, chars: int, spread: float = 0.0, vary: float = 0.0) -> dict[str, Any]:
    timeline = Timeline()
    factors = {f"tg-{1000 + n}": length_factor(n, chats, vary) for n in range(chats)}
    answers = {user: make_answer(round(chars * factor), n) for n, (user, factor) in enumerate(factors.items())}
    durations = {user: seconds * factor for user, factor in factors.items()}
    async with FakeDify() as dify, FakeTelegram(token=TOKEN) as telegram:
        reply = streaming_reply(answers, durations, timeline)
        dify.default_reply = lambda ctx: reply
        data_dir = tempfile.mkdtemp(prefix="bench-telegram-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
        env.update(
            DIFY_API_KEY=dify.api_key,
            DIFY_BASE_URL=dify.url,
            DIFY_APP_MODE="chat",
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE=telegram.url,
            DATA_DIR=data_dir,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT="0",
            LOG_LEVEL="WARNING",
            REDIS_PREFIX=f"bench-{os.getpid()}",
        )
        bot = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            "run",
            env=env,
            cwd=data_dir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            while telegram.count("getUpdates") == 0 and telegram.count("deleteWebhook") == 0:
                await asyncio.sleep(0.05)
            # One warm-up answer first: aiogram builds its pydantic models lazily on first use, a one-off
            # cost per process that would otherwise be charged to the measured answers.
            answers["tg-999"] = make_answer(200, 999)
            durations["tg-999"] = seconds
            telegram.push_update(telegram.message_update(chat_id=999, user_id=999, text="warm up"))
            while not (telegram.visible_texts(999) and not telegram.visible_texts(999)[-1].endswith("▌")):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            expected = {1000 + n: render_markdown(answers[f"tg-{1000 + n}"]).text.strip() for n in range(chats)}
            profiler = await start_profiler(bot.pid)
            cpu_before, idle_rss = process_stats(bot.pid, "VmRSS:")
            harness_before = time.process_time()
            pushed_at = time.monotonic()
            for n in range(chats):
                telegram.push_update(telegram.message_update(chat_id=1000 + n, user_id=1000 + n, text="question"))
                if spread:
                    await asyncio.sleep(spread / chats)

            def final_texts() -> dict[int, str]:
                # One pass over the fake's messages per poll: the harness should not compete with the bot
                # for the CPU it measures (rendering every answer again on each poll did).
                shown: dict[int, str] = {}
                for message in telegram.messages.values():
                    if not message.deleted:
                        shown[message.chat_id] = message.text
                return {chat: text for chat, text in shown.items() if expected.get(chat) == text}

            deadline = pushed_at + seconds * 4 + 30
            while len(final_texts()) < chats and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            cpu_after, peak_rss = process_stats(bot.pid)
            harness_cpu = time.process_time() - harness_before
            await stop_profiler(profiler)
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bot.wait(), 30)
            except TimeoutError:
                bot.kill()
        complete = final_texts()
        first_visible: list[float] = []
        final_frame: list[float] = []
        edits: list[int] = []
        slot_gap: list[float] = []  # final frame after the chat's previous call: ~1 s means it waited a slot
        last_interim: list[float] = []  # last interim frame after message_end (< 0: before it)
        for n in range(chats):
            chat_id, user = 1000 + n, f"tg-{1000 + n}"
            calls = [
                c
                for c in telegram.calls
                if c.chat_id == chat_id and c.ok and c.method in ("sendMessage", "editMessageText")
            ]
            if not calls or user not in timeline.first_chunk:
                continue
            edits.append(sum(c.method == "editMessageText" for c in calls))
            first_visible.append(calls[0].at - timeline.first_chunk[user])
            final_frame.append(calls[-1].at - timeline.message_end[user])
            if len(calls) > 1:
                slot_gap.append(calls[-1].at - calls[-2].at)
                last_interim.append(calls[-2].at - timeline.message_end[user])
        return {
            "chats": chats,
            "complete": len(complete),
            "edits": edits,
            "first": first_visible,
            "final": final_frame,
            "slot_gap": slot_gap,
            "last_interim": last_interim,
            "rate_limited": telegram.rate_limited,
            "cpu": cpu_after - cpu_before,
            "harness_cpu": harness_cpu,
            "rss": peak_rss,
            "idle_rss": idle_rss,
            "exit": bot.returncode,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chars", type=int, default=1500)
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="seconds over which the questions arrive (0: all at once, so every answer streams in step and "
        "the final-frame latencies of one run all share one phase of the edit cadence)",
    )
    parser.add_argument(
        "--vary",
        type=float,
        default=0.0,
        help="spread of answer lengths as a share of --chars (0.1: from 90 %% to 110 %%, streamed at the same pace), "
        "so the answers end at every phase of the edit cadence and the final-frame latencies sample all of them",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.chats, args.seconds, args.chars, args.spread, args.vary))
    n = result["chats"]
    print(
        f"chats: {n}, answer ≈{args.chars} chars over {args.seconds:g} s each (±{100 * args.vary:g} %), "
        f"private chats, polling, questions over {args.spread:g} s"
    )
    print(f"complete and exact:           {result['complete']}/{n} ({100 * result['complete'] / n:.0f} %)")
    print(f"429 answered by fake Telegram: {result['rate_limited']}")
    edits = result["edits"]
    print(f"edits per answer:             mean {statistics.mean(edits):.1f}, max {max(edits)}")
    for label, key in (
        ("first visible text after Dify's first chunk", "first"),
        ("final frame after message_end", "final"),
        ("  final frame after the chat's previous call", "slot_gap"),
        ("  last interim frame after message_end", "last_interim"),
    ):
        values = result[key]
        print(f"{label}: p50 {percentile(values, 50):.3f} s, p99 {percentile(values, 99):.3f} s")
    print(f"bot CPU: {result['cpu']:.2f} s total, {1000 * result['cpu'] / n:.1f} ms per answer")
    ratio = result["cpu"] / result["harness_cpu"] if result["harness_cpu"] else float("nan")
    print(
        f"  this harness's own CPU meanwhile: {result['harness_cpu']:.2f} s (bot/harness {ratio:.2f}); its work is "
        "the same every run, so on a machine running slower both rise together"
    )
    print(f"bot peak RSS: {result['rss'] / 2**20:.0f} MB (before the answers: {result['idle_rss'] / 2**20:.0f} MB)")
    print(f"bot exit code after SIGTERM: {result['exit']}")


if __name__ == "__main__":
    main()
