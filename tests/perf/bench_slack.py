"""Benchmark: N concurrent channel threads through a real `dify-bots run` process against the fake Slack.

Run: python tests/perf/bench_slack.py [--threads 100] [--seconds 10] [--chars 1500] [--mode native|update|both]

Every thread starts with a signed `app_mention` event (a different user and root message each, all in
channel C1, all posted at once) to the bot's `/slack/events`. The fake Dify streams a ~1,500-character
answer over ~10 s to every thread; channel threads share one Dify user (`slack-T1-C1`), so each question
carries its thread number and the answer is chosen by the question. The bot (a separate process, so its
CPU and memory are its own) answers into one fake Slack workspace with the fake's default per-method rate
limits. Each mode (`SLACK_STREAMING=native`, `=update`) gets a fresh bot process and fresh fakes.

Printed per mode: answers complete with the exact text, Slack Web API calls per answer, first-visible and
final-text latencies, 429s, bot CPU seconds (after a warm-up answer) and peak RSS.

The fake Slack's clock jumps one rate window (61 s) ahead after the warm-up answer, so the measured answers
start with empty rate windows, as if the warm-up had happened a minute earlier; every Slack timestamp and
every Dify mark below is read from that same clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.fakes.dify import Delay, Events, FakeDify, Mark, ReplyContext, Step, Transcript  # noqa: E402
from tests.fakes.slack import RATE_WINDOW_SECONDS, FakeSlack, event_body, mention_event, signed_headers  # noqa: E402
from tests.perf.bench_telegram import make_answer, percentile, process_stats  # noqa: E402

BOT_TOKEN = "xoxb-bench-token"
SIGNING_SECRET = "bench-signing-secret"
CHANNEL = "C1"
WARMUP_CHANNEL = "C0"
WARMUP_QUERY = "warm up"
BOT_USER = "UBOT"
# The Web API methods an answer costs; setStatus is also shown on its own.
COUNTED = (
    "chat.postMessage",
    "chat.update",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "assistant.threads.setStatus",
)
WRITES = frozenset({"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"})
FIRST_WRITES = frozenset({"chat.postMessage", "chat.startStream"})
ANSWERS_METRIC = re.compile(r"^difybots_answers_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$", re.M)

LOG_LINE = re.compile(r"^\S+ \S+ (?P<what>(?:WARNING|ERROR|CRITICAL) [^\[]*)")


@dataclass
class Timeline:
    """When the fake Dify started streaming each question's answer and when it sent message_end."""

    first_chunk: dict[str, float] = field(default_factory=dict)
    message_end: dict[str, float] = field(default_factory=dict)


class ShiftedClock:
    """time.monotonic() plus an offset that can jump forward (see the module docstring)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def question(n: int) -> str:
    return f"question {n}"


def root_ts(n: int) -> str:
    return f"1800000000.{n:06d}"


def streaming_reply(answers: dict[str, str], seconds: float, timeline: Timeline, clock: ShiftedClock) -> Transcript:
    """Each question's own answer, in 10-character chunks spread over `seconds`."""

    def build(ctx: ReplyContext) -> list[Step]:
        answer = answers[ctx.query]
        chunks = [answer[i : i + 10] for i in range(0, len(answer), 10)]
        gap = seconds / max(1, len(chunks))
        ev = Events(ctx)
        steps: list[Step] = [Mark(lambda: timeline.first_chunk.__setitem__(ctx.query, clock()))]
        for chunk in chunks:
            steps += [ev.message(chunk), Delay(gap)]
        steps[-1] = Mark(lambda: timeline.message_end.__setitem__(ctx.query, clock()))
        steps.append(ev.message_end())
        return steps

    return Transcript(build)


def log_summary(text: str) -> Counter[str]:
    """The bot's WARNING and ERROR lines, counted by level, logger and message (numbers and ids hidden)."""
    lines: Counter[str] = Counter()
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if match:
            lines[re.sub(r"\d+(\.\d+)?", "#", match["what"].strip())] += 1
        elif line.strip():
            lines["(other stderr output)"] += 1
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def squeeze(text: str) -> str:
    return "".join(text.split())


def thread_of(slack: FakeSlack, method: str, args: dict[str, Any]) -> str | None:
    """The thread a call belongs to: its thread_ts, or the thread of the message it names."""
    if args.get("thread_ts"):
        return str(args["thread_ts"])
    msg = slack.messages.get((str(args.get("channel") or ""), str(args.get("ts") or "")))
    return msg.thread_ts if msg is not None else None


def thread_state(slack: FakeSlack, channel: str, ts: str, answer: str) -> str:
    """'complete' when the thread's replies, joined, show exactly the answer and none is still an open
    stream; otherwise what is wrong: 'no reply', 'exact text, stream left open', 'partial text' or 'wrong text'."""
    replies = slack.thread(channel, ts)
    if not replies:
        return "no reply"
    shown, wanted = squeeze("".join(m.text for m in replies)), squeeze(answer)
    if shown == wanted:
        if any(slack.stream_active(channel, m.ts) for m in replies):
            return "exact text, stream left open"
        return "complete"
    return "partial text" if wanted.startswith(shown) else "wrong text"


def thread_complete(slack: FakeSlack, channel: str, ts: str, answer: str) -> bool:
    return thread_state(slack, channel, ts, answer) == "complete"


async def answers_finished(session: aiohttp.ClientSession, base: str) -> Counter[str]:
    """The bot's finished Slack answers by outcome, from its /metrics."""
    async with session.get(f"{base}/metrics") as response:
        body = await response.text()
    outcomes: Counter[str] = Counter()
    for match in ANSWERS_METRIC.finditer(body):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("platform") == "slack":
            outcomes[labels.get("outcome", "?")] += int(float(match["value"]))
    return outcomes


async def post_event(session: aiohttp.ClientSession, url: str, event: dict[str, Any]) -> int:
    body = event_body(event=event)
    async with session.post(url, data=body, headers=signed_headers(SIGNING_SECRET, body, "application/json")) as r:
        await r.read()
        return r.status


async def run(mode: str, threads: int, seconds: float, chars: int, deadline_after: float) -> dict[str, Any]:
    timeline = Timeline()
    clock = ShiftedClock()
    answers = {question(n): make_answer(chars, n) for n in range(threads)}
    answers[WARMUP_QUERY] = make_answer(200, 999)
    async with FakeDify() as dify, FakeSlack(bot_token=BOT_TOKEN, clock=clock) as slack:
        reply = streaming_reply(answers, seconds, timeline, clock)
        dify.default_reply = lambda ctx: reply
        data_dir = tempfile.mkdtemp(prefix=f"bench-slack-{mode}-")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
        env.pop("REDIS_URL", None)
        env.update(
            DIFY_API_KEY=dify.api_key,
            DIFY_BASE_URL=dify.url,
            DIFY_APP_MODE="chat",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_BASE=slack.api_url,
            SLACK_STREAMING=mode,
            DATA_DIR=data_dir,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            LOG_LEVEL="WARNING",
            REDIS_PREFIX=f"bench-{os.getpid()}-{mode}",
        )
        stderr_path = Path(data_dir) / "bot.stderr"
        with stderr_path.open("wb") as stderr:  # a file, not a pipe nobody reads: warnings must never block the bot
            bot = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots",
                "run",
                env=env,
                cwd=data_dir,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        connector = aiohttp.TCPConnector(limit=0)
        session = aiohttp.ClientSession(connector=connector)
        outcomes: Counter[str] = Counter()
        try:
            started = time.monotonic()
            while True:
                if bot.returncode is not None or time.monotonic() - started > 60:
                    raise RuntimeError(f"the bot did not start:\n{stderr_path.read_text()[-3000:]}")
                try:
                    async with session.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            events_url = f"{base}/slack/events"
            # One warm-up answer first: bolt, slack_sdk and pydantic build things lazily on first use, a
            # one-off cost per process that would otherwise be charged to the measured answers.
            warm_ts = "1799999999.000001"
            warm = mention_event(channel=WARMUP_CHANNEL, user="U0999", text=f"<@{BOT_USER}> {WARMUP_QUERY}", ts=warm_ts)
            if await post_event(session, events_url, warm) != 200:
                raise RuntimeError("the warm-up event was refused")
            while not thread_complete(slack, WARMUP_CHANNEL, warm_ts, answers[WARMUP_QUERY]):
                if time.monotonic() - started > 120:
                    raise RuntimeError(f"no warm-up answer:\n{stderr_path.read_text()[-3000:]}")
                await asyncio.sleep(0.05)
            while sum((await answers_finished(session, base)).values()) < 1:
                await asyncio.sleep(0.05)
            # Let the bot's per-workspace budgets refill, then start the fake's rate windows afresh.
            await asyncio.sleep(3.0)
            clock.offset += RATE_WINDOW_SECONDS + 1
            warm_calls = len(slack.calls)
            warm_limited = slack.rate_limited
            cpu_before, _ = process_stats(bot.pid)

            events = [
                mention_event(
                    channel=CHANNEL, user=f"U{1000 + n}", text=f"<@{BOT_USER}> {question(n)}", ts=root_ts(n + 1)
                )
                for n in range(threads)
            ]
            pushed_at = time.monotonic()
            statuses = await asyncio.gather(*(post_event(session, events_url, event) for event in events))
            refused = sum(status != 200 for status in statuses)
            deadline = pushed_at + deadline_after
            while time.monotonic() < deadline:
                outcomes = await answers_finished(session, base)
                if sum(outcomes.values()) >= threads + 1 - refused:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)
            elapsed = time.monotonic() - pushed_at
            cpu_after, peak_rss = process_stats(bot.pid)
            outcomes = await answers_finished(session, base)
            outcomes["done"] -= 1  # the warm-up answer
            outcomes = +outcomes
            # Everything below is the fake's state when the wait ended (before the shutdown).
            states = {n: thread_state(slack, CHANNEL, root_ts(n + 1), answers[question(n)]) for n in range(threads)}
            complete = {n for n, state in states.items() if state == "complete"}
            calls = slack.calls[warm_calls:]
            limited = slack.rate_limited - warm_limited
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bot.wait(), 60)
            except TimeoutError:
                bot.kill()
                await bot.wait()
            await session.close()
    bot_log = log_summary(stderr_path.read_text(errors="replace"))
    shutil.rmtree(data_dir, ignore_errors=True)

    per_thread: dict[str, list[Any]] = {root_ts(n + 1): [] for n in range(threads)}
    other_methods: Counter[str] = Counter()
    for call in calls:
        thread = thread_of(slack, call.method, call.args)
        if thread in per_thread and call.method in COUNTED:
            per_thread[thread].append(call)
        elif thread in per_thread:
            other_methods[call.method] += 1
    limited_by_method = Counter(c.method for c in calls if c.status == 429)
    api_calls: list[int] = []
    set_status: list[int] = []
    first_visible: list[float] = []
    final_text: list[float] = []
    hit_429 = 0
    hit_429_complete = 0
    for n in range(threads):
        query, thread_calls = question(n), per_thread[root_ts(n + 1)]
        api_calls.append(len(thread_calls))
        set_status.append(sum(c.method == "assistant.threads.setStatus" for c in thread_calls))
        if any(c.status == 429 for c in thread_calls):
            hit_429 += 1
            hit_429_complete += n in complete
        writes = [c for c in thread_calls if c.ok and c.method in WRITES]
        first = next((c for c in writes if c.method in FIRST_WRITES), None)
        if first is not None and query in timeline.first_chunk:
            first_visible.append(first.at - timeline.first_chunk[query])
        if n in complete and writes and query in timeline.message_end:
            final_text.append(writes[-1].at - timeline.message_end[query])
    by_method = {m: statistics.mean(sum(c.method == m for c in made) for made in per_thread.values()) for m in COUNTED}
    return {
        "mode": mode,
        "threads": threads,
        "refused": refused,
        "complete": len(complete),
        "incomplete": Counter(state for state in states.values() if state != "complete"),
        "calls": api_calls,
        "by_method": by_method,
        "other_methods": other_methods,
        "set_status": set_status,
        "first": first_visible,
        "final": final_text,
        "rate_limited": limited,
        "limited_by_method": limited_by_method,
        "hit_429": hit_429,
        "hit_429_complete": hit_429_complete,
        "outcomes": outcomes,
        "elapsed": elapsed,
        "cpu": cpu_after - cpu_before,
        "rss": peak_rss,
        "exit": bot.returncode,
        "log": bot_log,
    }


def report(result: dict[str, Any], seconds: float, chars: int) -> None:
    n = result["threads"]
    short = {m: m.split(".")[-1] for m in COUNTED}
    print(f"mode: SLACK_STREAMING={result['mode']}")
    print(
        f"threads: {n} app_mentions in {CHANNEL}, answer ≈{chars} chars over {seconds:g} s each, "
        "one workspace, default fake Slack rate limits"
    )
    if result["refused"]:
        print(f"events refused by the bot:    {result['refused']}")
    print(f"complete and exact:           {result['complete']}/{n} ({100 * result['complete'] / n:.0f} %)")
    calls, statuses = result["calls"], result["set_status"]
    print(f"Slack calls per answer:       mean {statistics.mean(calls):.1f}, max {max(calls)} (429-refused included)")
    print("  by method (mean):           " + ", ".join(f"{short[m]} {v:.2f}" for m, v in result["by_method"].items()))
    print(f"  assistant.threads.setStatus: mean {statistics.mean(statuses):.2f}, max {max(statuses)}")
    if result["other_methods"]:
        print("  other calls (not counted):  " + json.dumps(dict(result["other_methods"])))
    limited = ", ".join(f"{m} {c}" for m, c in result["limited_by_method"].most_common()) or "none"
    print(f"429 answered by fake Slack:   {result['rate_limited']} ({limited})")
    print(
        f"answers that met a 429:       {result['hit_429']}, still complete {result['hit_429_complete']}; "
        f"unrecovered (not complete): {n - result['complete']}"
    )
    if result["incomplete"]:
        print("  not complete:               " + ", ".join(f"{k} {v}" for k, v in result["incomplete"].most_common()))
    for label, key in (
        ("first visible text after Dify's first chunk", "first"),
        ("final text after message_end (complete answers)", "final"),
    ):
        values = result[key]
        print(f"{label}: p50 {percentile(values, 50):.3f} s, p99 {percentile(values, 99):.3f} s (n={len(values)})")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items())) or "none"
    print(f"bot outcomes (/metrics):      {outcomes}; waited {result['elapsed']:.0f} s")
    print(f"bot CPU: {result['cpu']:.2f} s total, {1000 * result['cpu'] / n:.1f} ms per answer")
    print(f"bot peak RSS: {result['rss'] / 2**20:.0f} MB")
    print(f"bot exit code after SIGTERM: {result['exit']}")
    for line, count in result["log"].most_common(5):
        print(f"bot log: {count} x {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chars", type=int, default=1500)
    parser.add_argument("--mode", choices=("native", "update", "both"), default="both")
    parser.add_argument(
        "--deadline", type=float, default=None, help="seconds to wait for every answer (default: 4 x seconds + 600)"
    )
    args = parser.parse_args()
    deadline = args.seconds * 4 + 600 if args.deadline is None else args.deadline
    modes = ("native", "update") if args.mode == "both" else (args.mode,)
    for index, mode in enumerate(modes):
        if index:
            print()
        result = asyncio.run(run(mode, args.threads, args.seconds, args.chars, deadline))
        report(result, args.seconds, args.chars)


if __name__ == "__main__":
    main()
