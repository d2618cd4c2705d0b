"""Benchmark: several `dify-bots run` replicas on one Redis behind a round-robin proxy, against one process.

Run: python tests/perf/bench_replicas.py [--replicas 3] [--chats 200] [--threads 100] [--seconds 10]
Quick check (under a minute): python tests/perf/bench_replicas.py --chats 20 --threads 5 --seconds 3
(more Slack threads wait for the workspace's chat.startStream budget, 15 a minute after a burst of 5).

Each run starts its own redis-server on a free port and N bot processes in webhook mode (Telegram and Slack
HTTP mode), all sharing that Redis, behind a small round-robin HTTP proxy: every Telegram webhook delivery
and every signed Slack event goes through the proxy, so consecutive updates land on different replicas (the
fake Telegram only records setWebhook; the bench posts each update with the secret header, as Telegram would).
Telegram gets `--chats` conversations at once: three quarters private chats, the rest forum-group topics
(`--topics-per-group` per group, which share Telegram's 20-per-minute group limit across topics and
replicas); Slack gets `--threads` app_mentions in one channel of one workspace. The fakes keep their default
rate limits. The fake Dify streams a ~1,500-character answer over `--seconds` to every conversation.

The same load is run against one process (`--replicas 1`) first, and both are printed side by side: answers
complete with the exact text, 429s, Slack calls per answer, final-frame latency after Dify's message_end, and
the bots' CPU per answer (all processes together, after one warm-up answer per door and process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bots.telegram.markdown import render_markdown  # noqa: E402
from tests.fakes.dify import FakeDify  # noqa: E402
from tests.fakes.round_robin import RoundRobinProxy  # noqa: E402
from tests.fakes.slack import RATE_WINDOW_SECONDS, FakeSlack, mention_event  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.perf.bench_slack import (  # noqa: E402
    BOT_TOKEN,
    BOT_USER,
    CHANNEL,
    COUNTED,
    WARMUP_CHANNEL,
    WARMUP_QUERY,
    ShiftedClock,
    Timeline,
    free_port,
    log_summary,
    post_event,
    question,
    root_ts,
    streaming_reply,
    thread_complete,
    thread_of,
    thread_state,
)
from tests.perf.bench_telegram import TOKEN, make_answer, percentile, process_stats  # noqa: E402
from tests.perf.replica_fleet import (  # noqa: E402
    WEBHOOK_PATH,
    RedisServer,
    Replica,
    answers_by_platform,
    bot_env,
    post_update,
    progress,
    reset_budgets,
    start_replica,
    stop_all,
    wait_ready,
)

PRIVATE_BASE = 1000  # private chat ids (and user ids) start here
GROUP_BASE = -1001000000000  # forum groups count down from here
WARMUP_CHAT = 900
WARMUP_GROUP = -1009000000000
TELEGRAM_WRITES = ("sendMessage", "editMessageText")
IDLE_SECONDS = 2.0


@dataclass(frozen=True)
class TelegramChat:
    """One Telegram conversation of the bench: a private chat, or one topic of a forum group."""

    n: int  # -1: a warm-up conversation
    chat_id: int
    topic: int | None

    @property
    def query(self) -> str:
        return WARMUP_QUERY if self.n < 0 else f"telegram {self.n}"

    @property
    def text(self) -> str:
        return self.query if self.topic is None else f"@test_bot {self.query}"


def warm_chats(index: int) -> list[TelegramChat]:
    """A replica's warm-up conversations: a private chat and a forum topic (their code paths differ)."""
    return [TelegramChat(-1, WARMUP_CHAT + index, None), TelegramChat(-1, WARMUP_GROUP - index, 10)]


def telegram_chats(count: int, topics_per_group: int) -> list[TelegramChat]:
    """A quarter of `count` in forum groups of `topics_per_group` topics, the rest private."""
    topics = count // 4 if topics_per_group > 0 else 0
    chats = [TelegramChat(n, PRIVATE_BASE + n, None) for n in range(count - topics)]
    for t in range(topics):
        group, topic = divmod(t, topics_per_group)
        chats.append(TelegramChat(count - topics + t, GROUP_BASE - group, 10 + topic))
    return chats


def telegram_update(telegram: FakeTelegram, chat: TelegramChat) -> dict[str, Any]:
    if chat.topic is None:
        return telegram.message_update(chat_id=chat.chat_id, user_id=chat.chat_id, text=chat.text)
    return telegram.message_update(
        chat_id=chat.chat_id,
        user_id=7,
        text=chat.text,
        chat_type="supergroup",
        message_thread_id=chat.topic,
        is_topic_message=True,
    )


def telegram_frames(telegram: FakeTelegram, chat: TelegramChat, since: int) -> list[Any]:
    """The successful sends and edits of one conversation (a topic's edits found through their message)."""
    frames = []
    for call in telegram.calls[since:]:
        if call.chat_id != chat.chat_id or not call.ok or call.method not in TELEGRAM_WRITES:
            continue
        if chat.topic is not None:
            stored = telegram.messages.get((chat.chat_id, int(call.params.get("message_id") or 0)))
            topic = call.params.get("message_thread_id") if call.method == "sendMessage" else None
            if topic is None and stored is not None:
                topic = stored.message_thread_id
            if topic != chat.topic:
                continue
        frames.append(call)
    return frames


def telegram_shown(telegram: FakeTelegram, chat: TelegramChat) -> str | None:
    shown = [
        m.text for m in telegram.chat_messages(chat.chat_id) if chat.topic is None or m.message_thread_id == chat.topic
    ]
    return shown[-1] if len(shown) == 1 else None


async def warm_up(
    session: aiohttp.ClientSession, replicas: list[Replica], telegram: FakeTelegram, slack: FakeSlack
) -> None:
    """One Telegram and one Slack answer per replica, straight to its port: aiogram, bolt and pydantic build
    things on first use, a one-off cost per process that would otherwise be charged to the measured answers."""
    warm_answer = make_answer(200, 999)
    for index, replica in enumerate(replicas):
        for chat in warm_chats(index):
            update = telegram_update(telegram, chat)
            if await post_update(session, replica.base + WEBHOOK_PATH, update) != 200:
                raise RuntimeError("the Telegram warm-up update was refused")
        ts = f"1799999999.{index + 1:06d}"
        event = mention_event(channel=WARMUP_CHANNEL, user=f"U09{index}", text=f"<@{BOT_USER}> {WARMUP_QUERY}", ts=ts)
        if await post_event(session, replica.base + "/slack/events", event) != 200:
            raise RuntimeError("the Slack warm-up event was refused")
    started = time.monotonic()
    while True:
        counts = [await answers_by_platform(session, replica) for replica in replicas]
        if all(c["telegram"] >= 2 and c["slack"] >= 1 for c in counts):
            break
        if time.monotonic() - started > 120:
            raise RuntimeError(f"no warm-up answers:\n{replicas[0].stderr.read_text()[-3000:]}")
        await asyncio.sleep(0.1)
    for index in range(len(replicas)):
        ts = f"1799999999.{index + 1:06d}"
        if not thread_complete(slack, WARMUP_CHANNEL, ts, warm_answer):
            raise RuntimeError("a Slack warm-up answer is not the expected text")
        for chat in warm_chats(index):
            if telegram_shown(telegram, chat) != render_markdown(warm_answer).text.strip():
                raise RuntimeError("a Telegram warm-up answer is not the expected text")


async def run(replica_count: int, args: argparse.Namespace) -> dict[str, Any]:
    chats, threads, seconds, chars = args.chats, args.threads, args.seconds, args.chars
    topics_per_group, deadline_after = args.topics_per_group, args.deadline
    timeline = Timeline()
    clock = ShiftedClock()
    tg_chats = telegram_chats(chats, topics_per_group)
    answers = {chat.query: make_answer(chars, chat.n) for chat in tg_chats}
    answers.update({question(n): make_answer(chars, 5000 + n) for n in range(threads)})
    answers[WARMUP_QUERY] = make_answer(200, 999)
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-replicas-{replica_count}-"))
    redis = RedisServer(data_dir)
    replicas: list[Replica] = []
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        await redis.ready()
        async with (
            FakeDify() as dify,
            FakeTelegram(token=TOKEN, clock=clock) as telegram,
            FakeSlack(bot_token=BOT_TOKEN, clock=clock) as slack,
        ):
            reply = streaming_reply(answers, seconds, timeline, clock)
            dify.default_reply = lambda ctx: reply
            run_id = f"bench-replicas-{os.getpid()}-{replica_count}"
            started = time.monotonic()
            for index in range(replica_count):
                env = bot_env(dify, telegram, slack, redis.url, free_port(), run_id, args.slack_mode)
                replicas.append(await start_replica(env, data_dir, index))
            try:
                for replica in replicas:
                    await wait_ready(session, replica, started)
                progress(f"{replica_count} process(es) listening after {time.monotonic() - started:.1f} s")
                await warm_up(session, replicas, telegram, slack)
                progress(f"warmed up after {time.monotonic() - started:.1f} s")
                async with RoundRobinProxy([replica.base for replica in replicas]) as proxy:
                    # The warm-ups spent shared budget (one answer per replica, so more with more replicas):
                    # empty the budgets in Redis, let any local ones refill, measure what idle replicas cost,
                    # then start the fakes' rate windows afresh (see bench_slack).
                    await reset_budgets(redis.url, run_id)
                    idle_from = time.monotonic()
                    idle_cpu = [process_stats(r.process.pid or 0)[0] for r in replicas]
                    await asyncio.sleep(IDLE_SECONDS)
                    for replica, cpu_was in zip(replicas, idle_cpu, strict=True):
                        replica.idle = (process_stats(replica.process.pid or 0)[0] - cpu_was) / (
                            time.monotonic() - idle_from
                        )
                    clock.offset += RATE_WINDOW_SECONDS + 1
                    tg_since, slack_since = len(telegram.calls), len(slack.calls)
                    tg_limited, slack_limited = telegram.rate_limited, slack.rate_limited
                    before = [await answers_by_platform(session, replica) for replica in replicas]
                    for replica in replicas:
                        replica.cpu_before, _ = process_stats(replica.process.pid or 0)
                    updates = [telegram_update(telegram, chat) for chat in tg_chats]
                    events = [
                        mention_event(
                            channel=CHANNEL, user=f"U{1000 + n}", text=f"<@{BOT_USER}> {question(n)}", ts=root_ts(n + 1)
                        )
                        for n in range(threads)
                    ]
                    pushed_at = time.monotonic()
                    statuses = await asyncio.gather(
                        *(post_update(session, proxy.url + WEBHOOK_PATH, update) for update in updates),
                        *(post_event(session, proxy.url + "/slack/events", event) for event in events),
                    )
                    refused = sum(status != 200 for status in statuses)
                    tg_refused = sum(status != 200 for status in statuses[: len(updates)])
                    expected = chats + threads - refused
                    tg_phase: tuple[float, float] | None = None  # (seconds, CPU) until every Telegram answer ended
                    while time.monotonic() < pushed_at + deadline_after:
                        done = [
                            (await answers_by_platform(session, r)) - b for r, b in zip(replicas, before, strict=True)
                        ]
                        if tg_phase is None and sum(d["telegram"] for d in done) >= chats - tg_refused:
                            cpu_now = sum(process_stats(r.process.pid or 0)[0] - r.cpu_before for r in replicas)
                            tg_phase = (time.monotonic() - pushed_at, cpu_now)
                        if sum(sum(d.values()) for d in done) >= expected:
                            break
                        await asyncio.sleep(0.25)
                    await asyncio.sleep(0.5)
                    elapsed = time.monotonic() - pushed_at
                    progress(f"answers finished (or deadline) {elapsed:.1f} s after the updates went out")
                    for replica, was in zip(replicas, before, strict=True):
                        cpu, replica.rss = process_stats(replica.process.pid or 0)
                        replica.cpu = cpu - replica.cpu_before
                        replica.answers = (await answers_by_platform(session, replica)) - was
                    slack_calls = len(slack.calls)
                    result = measure(telegram, slack, tg_chats, threads, answers, timeline, tg_since, slack_since)
                    result.update(
                        tg_phase=tg_phase,
                        replicas=replica_count,
                        refused=refused,
                        elapsed=elapsed,
                        tg_429=telegram.rate_limited - tg_limited,
                        slack_429=slack.rate_limited - slack_limited,
                        slack_429_methods=Counter(
                            c.method for c in slack.calls[slack_since:slack_calls] if c.status == 429
                        ),
                    )
            finally:
                await stop_all(replicas)
    finally:
        await session.close()
        redis.stop()
    result.update(
        cpu=[r.cpu for r in replicas],
        idle=[r.idle for r in replicas],
        rss=[r.rss for r in replicas],
        per_replica=[dict(r.answers) for r in replicas],
        exits=[r.process.returncode for r in replicas],
        log=sum((log_summary(r.stderr.read_text(errors="replace")) for r in replicas), Counter()),
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def measure(
    telegram: FakeTelegram,
    slack: FakeSlack,
    tg_chats: list[TelegramChat],
    threads: int,
    answers: dict[str, str],
    timeline: Timeline,
    tg_since: int,
    slack_since: int,
) -> dict[str, Any]:
    """What users saw, from the fakes' state when the wait ended (before the shutdown)."""
    tg_complete = {"private": 0, "topic": 0}
    tg_final: dict[str, list[float]] = {"private": [], "topic": []}
    tg_edits: list[int] = []
    for chat in tg_chats:
        kind = "private" if chat.topic is None else "topic"
        exact = telegram_shown(telegram, chat) == render_markdown(answers[chat.query]).text.strip()
        tg_complete[kind] += exact
        frames = telegram_frames(telegram, chat, tg_since)
        if exact and frames and chat.query in timeline.message_end:
            tg_final[kind].append(frames[-1].at - timeline.message_end[chat.query])
            tg_edits.append(sum(c.method == "editMessageText" for c in frames))
    per_thread: dict[str, list[Any]] = {root_ts(n + 1): [] for n in range(threads)}
    for call in slack.calls[slack_since:]:
        thread = thread_of(slack, call.method, call.args)
        if thread in per_thread and call.method in COUNTED:
            per_thread[thread].append(call)
    states = [thread_state(slack, CHANNEL, root_ts(n + 1), answers[question(n)]) for n in range(threads)]
    slack_final: list[float] = []
    for n, state in enumerate(states):
        writes = [c for c in per_thread[root_ts(n + 1)] if c.ok and c.method != "assistant.threads.setStatus"]
        if state == "complete" and writes and question(n) in timeline.message_end:
            slack_final.append(writes[-1].at - timeline.message_end[question(n)])
    return {
        "chats": len(tg_chats),
        "topics": sum(chat.topic is not None for chat in tg_chats),
        "threads": threads,
        "tg_complete": tg_complete,
        "tg_final": tg_final,
        "tg_edits": tg_edits,
        "slack_complete": states.count("complete"),
        "slack_incomplete": Counter(s for s in states if s != "complete"),
        "slack_calls": [len(calls) for calls in per_thread.values()],
        "slack_final": slack_final,
    }


def lines(result: dict[str, Any]) -> dict[str, str]:
    """One printable value per row of the side-by-side table."""
    private, topics, threads = result["chats"] - result["topics"], result["topics"], result["threads"]
    answers = result["chats"] + threads
    tg_all = result["tg_final"]["private"] + result["tg_final"]["topic"]
    cpu = sum(result["cpu"])

    def lat(values: list[float]) -> str:
        return f"{percentile(values, 50):.2f} / {percentile(values, 99):.2f} s" if values else "-"

    calls = result["slack_calls"]
    return {
        "Telegram private exact": f"{result['tg_complete']['private']}/{private}",
        "Telegram forum topics exact": f"{result['tg_complete']['topic']}/{topics}",
        "Slack threads exact": f"{result['slack_complete']}/{threads}",
        "updates refused": str(result["refused"]),
        "429 from Telegram": str(result["tg_429"]),
        "429 from Slack": str(result["slack_429"]),
        "Slack calls per answer (mean/max)": f"{statistics.mean(calls):.1f} / {max(calls)}" if calls else "-",
        "Telegram edits per answer (mean)": f"{statistics.mean(result['tg_edits']):.1f}" if result["tg_edits"] else "-",
        "final after message_end p50/p99, TG all": lat(tg_all),
        "  TG private chats": lat(result["tg_final"]["private"]),
        "  TG forum topics": lat(result["tg_final"]["topic"]),
        "  Slack threads": lat(result["slack_final"]),
        "CPU per answer, all processes": f"{1000 * cpu / answers:.1f} ms",
        "idle CPU per process": ", ".join(f"{1000 * i:.0f} ms/s" for i in result["idle"]),
        "CPU s, all: until TG done / after": phases(result),
        "CPU s per process": ", ".join(f"{c:.1f}" for c in result["cpu"]),
        "CPU per answer per process": ", ".join(
            f"{1000 * c / max(1, sum(a.values())):.1f} ms"
            for c, a in zip(result["cpu"], result["per_replica"], strict=True)
        ),
        "answers per process (tg+slack)": ", ".join(
            f"{a.get('telegram', 0)}+{a.get('slack', 0)}" for a in result["per_replica"]
        ),
        "peak RSS per process": ", ".join(f"{r / 2**20:.0f} MB" for r in result["rss"]),
        "waited for answers": f"{result['elapsed']:.0f} s",
        "exit codes after SIGTERM": ", ".join(str(code) for code in result["exits"]),
    }


def phases(result: dict[str, Any]) -> str:
    """All processes' CPU while Telegram answers ran (Slack's too) and after (Slack answers waiting their turn)."""
    if result["tg_phase"] is None:
        return "-"
    seconds, cpu = result["tg_phase"]
    return f"{cpu:.1f} in {seconds:.0f} s / {sum(result['cpu']) - cpu:.1f} in {result['elapsed'] - seconds:.0f} s"


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    first = results[0]
    print(
        f"load: {first['chats']} Telegram chats ({first['chats'] - first['topics']} private, {first['topics']} "
        f"forum topics, {args.topics_per_group} per group) and {first['threads']} Slack threads in one workspace; "
        f"answers ≈{args.chars} chars over {args.seconds:g} s; SLACK_STREAMING={args.slack_mode}; webhooks through a "
        "round-robin proxy, one Redis"
    )
    columns = [lines(result) for result in results]
    heads = [f"{r['replicas']} process{'es' if r['replicas'] != 1 else ''}" for r in results]
    width = max(len(row) for row in columns[0]) + 2
    cell = max(24, *(len(v) + 2 for column in columns for v in column.values()))
    print("".ljust(width) + "".join(head.ljust(cell) for head in heads))
    for row in columns[0]:
        print(row.ljust(width) + "".join(column[row].ljust(cell) for column in columns))
    for result in results:
        limited = ", ".join(f"{m} {c}" for m, c in result["slack_429_methods"].most_common())
        if limited:
            print(f"{result['replicas']} process(es): Slack 429 by method: {limited}")
        if result["slack_incomplete"]:
            print(f"{result['replicas']} process(es): Slack not complete: {dict(result['slack_incomplete'])}")
        for line, count in result["log"].most_common(5):
            print(f"{result['replicas']} process(es): bot log: {count} x {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3, help="bot processes behind the proxy (default 3)")
    parser.add_argument("--chats", type=int, default=200, help="Telegram conversations (default 200)")
    parser.add_argument("--threads", type=int, default=100, help="Slack threads (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds each answer streams (default 10)")
    parser.add_argument("--chars", type=int, default=1500, help="characters per answer (default 1500)")
    parser.add_argument("--topics-per-group", type=int, default=2, help="forum topics per group (0: no groups)")
    parser.add_argument("--deadline", type=float, default=None, help="seconds to wait (default: 4 x seconds + 600)")
    parser.add_argument("--slack-mode", choices=("auto", "native", "update"), default="auto", help="SLACK_STREAMING")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-process run")
    args = parser.parse_args()
    if args.deadline is None:
        args.deadline = args.seconds * 4 + 600
    counts = [args.replicas] if args.replicas == 1 or args.no_baseline else [1, args.replicas]
    results = [asyncio.run(run(n, args)) for n in counts]
    report(results, args)


if __name__ == "__main__":
    main()
