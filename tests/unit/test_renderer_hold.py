"""StreamRenderer's interim hold: a final arriving just after the chat's slot opens goes out at once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from core.answer import Done, ReplyEvent, TextDelta
from core.render.renderer import HOLD_SHARE, READ_AHEAD, StreamRenderer
from core.render.throttle import Throttle, TokenBucket
from tests.unit.test_renderer import MemorySurface

INTERVAL = 0.3
HOLD = 0.12


def make(surface: MemorySurface, throttle: Throttle, hold: float | None) -> StreamRenderer:
    loop = asyncio.get_running_loop()
    return StreamRenderer(surface, throttle=throttle, status_delay=0.05, interim_hold=hold, clock=loop.time)


async def ending_when_the_slot_opens(
    surface: MemorySurface,
    throttle: Throttle,
    done_at: list[float],
    *,
    quiet: float = 0.0,
    late: float = 0.0,
    lag: float = 0.005,
) -> AsyncIterator[ReplyEvent]:
    """Text every 20 ms until an interim edit went out; then (after `quiet` s) the last text `late` s after
    the slot opens, and message_end `lag` s after it (Dify sends both together or nearly so)."""
    loop = asyncio.get_running_loop()
    while not any(op.kind == "edit" for op in surface.ops):
        yield TextDelta("word ")
        await asyncio.sleep(0.02)
    await asyncio.sleep(quiet)
    # Fixed once: without a hold the writer takes each slot as it opens, so polling for an open slot
    # could go on (and roll the text into a second message) for as long as the two keep meeting.
    opens = loop.time() + max(throttle.delay(), 0.0)
    while loop.time() < opens - 0.02:
        yield TextDelta("word ")
        await asyncio.sleep(0.02)
    await asyncio.sleep(opens - loop.time() + late)
    yield TextDelta("last.")
    await asyncio.sleep(lag)
    done_at.append(loop.time())
    yield Done("")


@pytest.mark.parametrize(
    ("quiet", "late", "lag"),
    [
        (0.0, 0.0, 0.005),  # the last text and message_end together, as the slot opens
        (0.5, 0.0, 0.005),  # ... after a quiet spell
        (0.0, HOLD * 0.7, 0.1),  # message_end lags the last text past the end of the hold
    ],
)
async def test_final_takes_the_open_slot_instead_of_waiting_behind_an_interim_edit(
    quiet: float, late: float, lag: float
) -> None:
    surface = MemorySurface()
    throttle = Throttle(INTERVAL, clock=asyncio.get_running_loop().time)
    done_at: list[float] = []
    events = ending_when_the_slot_opens(surface, throttle, done_at, quiet=quiet, late=late, lag=lag)
    await make(surface, throttle, HOLD).render(events)
    final = surface.ops[-1]
    assert final.final and final.text.endswith("last.")
    assert final.at - done_at[0] < INTERVAL / 3  # no slot spent on an interim frame of the last text
    assert not any(op.text.startswith(final.text) and not op.final for op in surface.ops)


async def test_without_a_hold_the_final_waits_a_slot_behind_the_interim_edit() -> None:
    surface = MemorySurface()
    throttle = Throttle(INTERVAL, clock=asyncio.get_running_loop().time)
    done_at: list[float] = []
    await make(surface, throttle, 0.0).render(ending_when_the_slot_opens(surface, throttle, done_at))
    interim, final = surface.ops[-2:]
    assert interim.kind == "edit" and not interim.final
    assert final.at - done_at[0] > INTERVAL * 0.8


async def test_interim_frames_still_flow_in_a_long_answer_and_the_first_text_is_not_held() -> None:
    loop = asyncio.get_running_loop()
    surface = MemorySurface()
    first_text_at: list[float] = []

    async def long_answer() -> AsyncIterator[ReplyEvent]:
        first_text_at.append(loop.time())
        for _ in range(100):  # 2 s of text
            yield TextDelta("word ")
            await asyncio.sleep(0.02)
        yield Done("")

    throttle = Throttle(INTERVAL, clock=loop.time)
    stats = await make(surface, throttle, HOLD).render(long_answer())
    assert surface.ops[0].kind == "send" and surface.ops[0].at - first_text_at[0] < 0.05
    interim = [op for op in surface.ops if not op.final]
    gaps = [b.at - a.at for a, b in itertools.pairwise(interim)]
    # One interim edit per interval plus hold: still a steady stream of frames, just not back to back.
    assert len(interim) >= 4 and stats.edits >= 4
    assert min(gaps) >= INTERVAL + HOLD * 0.8
    assert max(gaps) < INTERVAL + HOLD + 0.15
    assert surface.shown == {1: "word " * 99 + "word"}


async def test_the_default_hold_is_a_share_of_the_throttle_interval() -> None:
    loop = asyncio.get_running_loop()
    surface = MemorySurface()

    async def answer() -> AsyncIterator[ReplyEvent]:
        for _ in range(60):  # 1.2 s
            yield TextDelta("word ")
            await asyncio.sleep(0.02)
        yield Done("")

    await make(surface, Throttle(INTERVAL, clock=loop.time), None).render(answer())
    interim = [op for op in surface.ops if not op.final]
    gaps = [b.at - a.at for a, b in itertools.pairwise(interim)]
    assert gaps and min(gaps) >= INTERVAL * (1 + HOLD_SHARE * 0.8)


async def test_a_shared_bucket_without_an_interval_is_not_held() -> None:
    surface = MemorySurface()
    bucket = TokenBucket(per_minute=600, burst=1, clock=asyncio.get_running_loop().time)  # one per 0.1 s
    loop = asyncio.get_running_loop()
    renderer = StreamRenderer(surface, throttle=bucket, status_delay=0.05, clock=loop.time)

    async def answer() -> AsyncIterator[ReplyEvent]:
        for _ in range(30):  # 0.6 s
            yield TextDelta("word ")
            await asyncio.sleep(0.02)
        yield Done("")

    await renderer.render(answer())
    assert sum(not op.final for op in surface.ops) >= 4  # about one per 0.1 s, no hold between them


async def test_a_paced_reader_rests_until_just_before_the_slot_and_reads_through_the_hold() -> None:
    loop = asyncio.get_running_loop()
    surface = MemorySurface()
    throttle = Throttle(INTERVAL, clock=loop.time)
    renderer = make(surface, throttle, HOLD)
    rests: list[tuple[str, float]] = []

    async def events() -> AsyncIterator[ReplyEvent]:
        rests.append(("before any text", renderer.read_pause()))
        yield TextDelta("first words ")
        while not surface.ops:
            await asyncio.sleep(0.005)
        rests.append(("just shown", renderer.read_pause()))
        await asyncio.sleep(throttle.delay() + 0.01)
        rests.append(("slot open", renderer.read_pause()))
        yield Done("first words")

    await renderer.render(events())
    assert rests[0] == ("before any text", 0.0)  # the first text must not wait
    assert rests[1][1] == pytest.approx(INTERVAL - READ_AHEAD, abs=0.03)
    assert rests[2][1] <= 0.0  # the hold waits for the end: it is read as it comes
    assert renderer.read_pause() == 0.0  # finished
    assert surface.ops[-1].final and surface.ops[-1].text == "first words"
