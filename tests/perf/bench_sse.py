"""Throughput benchmark: SSEDecoder against a naive line splitter and aiohttp's line iterator.

Run with ``python tests/perf/bench_sse.py [--messages N] [--big-lines N] [--big-line-mb MB]``
(``--help`` lists the rest). Every parser receives the same bytes in the same chunks and runs
``json.loads`` on each data payload, as a consumer of Dify's stream would. The table shows the
best of ``--repeat`` runs; the status column flags a parser that raised or miscounted events.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import LineTooLong

from core.dify.sse import SSEDecoder

_ASCII_WORDS = (
    "the refund request for ticket 42 was approved after review by the billing team "
    "please check the attached invoice and confirm the shipping address before Friday"
).split()
_CJK_WORDS = "退款 申请 已经 批准 请 检查 发票 地址 我们 会 尽快 处理 。 ，".split()
_EMOJI = ["😀", "👍", "🚀", "✅", "🎉", "🙏", "📦", "🇨🇳"]


def _dumps(obj: Any) -> bytes:
    """Compact JSON with raw UTF-8, like the orjson output of Dify >= 1.8.1."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _token(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return " " + rng.choice(_ASCII_WORDS)
    if roll < 0.93:
        return "".join(rng.choice(_CJK_WORDS) for _ in range(rng.randint(1, 3)))
    return rng.choice(_EMOJI)


def _document(rng: random.Random, size: int) -> str:
    """Mixed ASCII/Chinese/emoji text of roughly ``size`` UTF-8 bytes, with paragraph breaks."""
    parts: list[str] = []
    total = 0
    while total < size:
        para = "".join(_token(rng) for _ in range(rng.randint(20, 80))) + "\n\n"
        parts.append(para)
        total += len(para.encode())
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Stream:
    body: bytes
    events: int  # number of data payloads in ``body``


def build_streams(*, messages: int, big_lines: int, big_line_mb: float, seed: int = 1) -> tuple[Stream, Stream]:
    """A Dify advanced-chat stream, with and without its huge lines.

    ``messages`` ``message`` events (a few tokens of mixed ASCII/Chinese/emoji each) with
    ``event: ping`` blocks and ``node_started``/``node_finished`` pairs (2-64 KiB outputs) among
    them, between ``workflow_started`` and ``message_end``/``workflow_finished``. The first
    stream also holds ``big_lines`` ``node_finished`` events of ``big_line_mb`` MB each, spread
    evenly; the second is the same stream without them.
    """
    rng = random.Random(seed)
    conv, msg, task, run = (str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(4))
    head = {"conversation_id": conv, "message_id": msg, "created_at": 1751364000, "task_id": task}

    def data(payload: dict[str, Any]) -> bytes:
        return b"data: " + _dumps(payload) + b"\n\n"

    def node(kind: str, index: int, outputs: dict[str, Any] | None) -> bytes:
        body: dict[str, Any] = {
            "id": f"NE{index}",
            "node_id": f"node{index}",
            "node_type": "llm",
            "title": f"LLM {index}",
            "index": index,
            "predecessor_node_id": None,
            "inputs": {"sys.query": "Summarise ticket 42"},
            "inputs_truncated": False,
            "created_at": 1751364000,
            "extras": {},
            "iteration_id": None,
            "loop_id": None,
        }
        if kind == "node_finished":
            body |= {"outputs": outputs, "outputs_truncated": False, "status": "succeeded"}
            body |= {"error": None, "elapsed_time": 2.41, "finished_at": 1751364003, "files": []}
        return data({"event": kind, **head, "workflow_run_id": run, "data": body})

    ping = b"event: ping\n\n"
    blocks = [ping, data({"event": "workflow_started", **head, "workflow_run_id": run, "data": {"id": run}})]
    node_index = 1
    for _ in range(messages):
        roll = rng.random()
        if roll < 0.02:
            blocks.append(ping)
        elif roll < 0.022:
            blocks.append(node("node_started", node_index, None))
            text = _document(rng, rng.randint(2, 64) * 1024)
            blocks.append(node("node_finished", node_index, {"text": text}))
            node_index += 1
        answer = "".join(_token(rng) for _ in range(rng.randint(1, 4)))
        fields = {"id": msg, "answer": answer, "from_variable_selector": ["llm", "text"]}
        blocks.append(data({"event": "message", **head, **fields}))
    tail = [
        data({"event": "message_end", **head, "id": msg, "metadata": {"usage": {}}, "files": []}),
        data({"event": "workflow_finished", **head, "workflow_run_id": run, "data": {"id": run}}),
    ]
    big = [
        node("node_finished", node_index + i, {"text": _document(rng, int(big_line_mb * 1024 * 1024))})
        for i in range(big_lines)
    ]
    with_big = list(blocks)
    step = len(blocks) // (big_lines + 1)
    for i in range(big_lines, 0, -1):  # from the back, so earlier positions stay put
        with_big.insert(i * step, big[i - 1])
    return _stream(with_big + tail), _stream(blocks + tail)


def _stream(blocks: list[bytes]) -> Stream:
    return Stream(b"".join(blocks), sum(block.startswith(b"data: ") for block in blocks))


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


# --- parsers: each returns the number of JSON payloads it decoded ----------------------------


def parse_ours(chunks: Sequence[bytes]) -> int:
    decoder = SSEDecoder()
    loads = json.loads
    count = 0
    for chunk in chunks:
        for msg in decoder.feed(chunk):
            if msg.data:
                loads(msg.data)
                count += 1
    for msg in decoder.flush():
        if msg.data:
            loads(msg.data)
            count += 1
    return count


def parse_naive(chunks: Sequence[bytes]) -> int:
    loads = json.loads
    count = 0
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode().rstrip("\r")
            if line.startswith("data:"):
                loads(line[5:])
                count += 1
    return count


def parse_aiohttp(chunks: Sequence[bytes]) -> int:
    return asyncio.run(_parse_aiohttp(chunks))


class _NoTransportProtocol(BaseProtocol):
    """Stands in for the connection: always connected, and flow control does nothing."""

    @property
    def connected(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


async def _parse_aiohttp(chunks: Sequence[bytes]) -> int:
    loop = asyncio.get_running_loop()
    # 2**16 is ClientSession's default read_bufsize, the limit behind `resp.content`.
    reader = aiohttp.StreamReader(_NoTransportProtocol(loop), 2**16, loop=loop)

    async def produce() -> None:
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)  # let the consumer drain, as a socket read would
        reader.feed_eof()

    producer = asyncio.create_task(produce())
    loads = json.loads
    count = 0
    try:
        async for raw in reader:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                loads(line[5:])
                count += 1
    finally:
        producer.cancel()
        try:
            await producer
        except asyncio.CancelledError:
            pass
    return count


# --- driver ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    parser: str
    stream: str
    seconds: float | None
    mb: float
    events: int
    status: str

    @property
    def mb_per_s(self) -> float | None:
        return None if self.seconds is None else self.mb / self.seconds

    @property
    def events_per_s(self) -> float | None:
        return None if self.seconds is None else self.events / self.seconds


def _failure(exc: Exception) -> str:
    if isinstance(exc, ValueError) and str(exc) == "Chunk too big":
        return "FAILED (Chunk too big)"  # aiohttp before the LineTooLong change
    if isinstance(exc, LineTooLong):
        return f"FAILED (LineTooLong: line over {exc.args[1]} bytes)"
    text = " ".join(str(exc).split())
    if len(text) > 60:
        text = text[:57] + "..."
    return f"FAILED ({type(exc).__name__}: {text})"


def measure(
    name: str,
    stream_name: str,
    parse: Callable[[Sequence[bytes]], int],
    stream: Stream,
    chunks: Sequence[bytes],
    repeat: int,
) -> Result:
    mb = len(stream.body) / (1024 * 1024)
    best: float | None = None
    status = "ok"
    count = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        try:
            count = parse(chunks)
        except Exception as exc:  # aiohttp's line limit is the expected one
            return Result(name, stream_name, None, mb, stream.events, _failure(exc))
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    if count != stream.events:
        status = f"WRONG COUNT ({count} != {stream.events})"
    return Result(name, stream_name, best, mb, stream.events, status)


def format_table(results: Sequence[Result]) -> str:
    header = f"{'parser':<10} {'stream':<16} {'MB':>7} {'MB/s':>9} {'events/s':>11}  status"
    rows = [header, "-" * len(header)]
    for r in results:
        mbs = "-" if r.mb_per_s is None else f"{r.mb_per_s:.1f}"
        eps = "-" if r.events_per_s is None else f"{r.events_per_s:,.0f}"
        rows.append(f"{r.parser:<10} {r.stream:<16} {r.mb:>7.1f} {mbs:>9} {eps:>11}  {r.status}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=60_000, help="message events (default 60000)")
    ap.add_argument("--big-lines", type=int, default=5, help="number of single huge lines (default 5)")
    ap.add_argument("--big-line-mb", type=float, default=5.0, help="size of each huge line in MB (default 5)")
    ap.add_argument("--chunk-kib", type=int, default=64, help="feed size in KiB (default 64)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per parser, best time kept (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    full, small = build_streams(
        messages=args.messages, big_lines=args.big_lines, big_line_mb=args.big_line_mb, seed=args.seed
    )
    size = args.chunk_kib * 1024
    full_chunks, small_chunks = chunked(full.body, size), chunked(small.body, size)
    print(
        f"built streams in {time.perf_counter() - t0:.1f}s: "
        f"with big lines {len(full.body) / 2**20:.1f} MB / {full.events} events, "
        f"without {len(small.body) / 2**20:.1f} MB / {small.events} events; "
        f"fed in {args.chunk_kib} KiB chunks; aiohttp {aiohttp.__version__}"
    )

    parsers: list[tuple[str, Callable[[Sequence[bytes]], int]]] = [
        ("ours", parse_ours),
        ("naive", parse_naive),
        ("aiohttp", parse_aiohttp),
    ]
    results: list[Result] = []
    for stream_name, stream, chunks in (
        ("with big lines", full, full_chunks),
        ("no big lines", small, small_chunks),
    ):
        for name, parse in parsers:
            results.append(measure(name, stream_name, parse, stream, chunks, args.repeat))
    print()
    print(format_table(results))
    print()
    by_key = {(r.parser, r.stream): r for r in results}
    for stream_name in ("with big lines", "no big lines"):
        ours, naive = by_key[("ours", stream_name)], by_key[("naive", stream_name)]
        if ours.seconds and naive.seconds:
            print(f"ours/naive throughput ({stream_name}): {naive.seconds / ours.seconds:.2f}x")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
