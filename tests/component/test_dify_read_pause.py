"""Dify's stream read in batches: a reader that cannot show text sooner lets the stream rest, nothing is lost."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from core.answer import Progress, ReplyEvent, TextDelta
from core.dify.client import MAX_READ_PAUSE, DifyClient
from core.dify.events import StreamEvent
from core.service import joined_text
from tests.fakes.dify import Delay, Events, FakeDify, ReplyContext, Step, Transcript

CHUNKS = [f"part {n} " for n in range(20)]


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        fake.script(Transcript(_trickle))
        yield fake


def _trickle(ctx: ReplyContext) -> list[Step]:
    ev = Events(ctx)
    steps: list[Step] = []
    for chunk in CHUNKS:
        steps += [ev.message(chunk), Delay(0.02)]
    steps.append(ev.message_end())
    return steps


async def _batches(client: DifyClient, pause: float | None) -> tuple[list[list[StreamEvent]], float]:
    started = time.monotonic()
    batches = [
        batch
        async for batch in client.stream_batches(
            query="hi", user="u1", pause=None if pause is None else (lambda: pause)
        )
    ]
    return batches, time.monotonic() - started


def _text(batches: list[list[StreamEvent]]) -> str:
    return "".join(event.answer or "" for batch in batches for event in batch if event.name == "message")


async def test_without_a_pause_every_token_is_read_as_it_comes(dify: FakeDify) -> None:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, app_mode="chat") as client:
        batches, _ = await _batches(client, None)
    assert _text(batches) == "".join(CHUNKS)
    assert len(batches) >= 15  # 20 tokens 20 ms apart: (nearly) one read each


async def test_a_resting_reader_gets_the_same_events_in_few_reads(dify: FakeDify) -> None:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, app_mode="chat") as client:
        batches, took = await _batches(client, 0.15)
    events = [event for batch in batches for event in batch]
    assert _text(batches) == "".join(CHUNKS)
    assert events[-1].name == "message_end"
    assert len(batches) <= 6  # ~0.45 s of tokens in rests of 0.15 s
    assert took < 0.45 + 2 * 0.15 + 0.5  # at most one rest after the last read


async def test_a_long_pause_is_capped(dify: FakeDify) -> None:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, app_mode="chat") as client:
        batches, took = await _batches(client, 60.0)
    assert _text(batches) == "".join(CHUNKS)
    assert took < 0.45 + 2 * MAX_READ_PAUSE + 0.5


def test_text_of_one_read_is_joined_and_other_events_keep_their_place() -> None:
    replies: list[ReplyEvent] = [
        TextDelta("a"),
        TextDelta("b"),
        Progress(kind="tool", label="x"),
        TextDelta("c"),
        TextDelta("d"),
    ]
    assert joined_text(replies) == [TextDelta("ab"), Progress(kind="tool", label="x"), TextDelta("cd")]
    single: list[ReplyEvent] = [TextDelta("a")]
    assert joined_text(single) is single
