"""Idle and total answer limits against the fake Dify and real Redis, on a fast clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from core.answer import Done, Failed, ReplyEvent, TaskStarted, TextDelta
from core.conversations import ChatKey, ConversationStore
from core.dify.client import DifyClient
from core.errors import AnswerIdle, AnswerTooLong
from core.service import ChatService
from core.texts import friendly_error
from tests.fakes.dify import PING, Delay, Events, FakeDify, ReplyContext, Step, Transcript

CHAT = ChatKey(platform="telegram", scope="tg:1:300", user="tg-7")
SPEED = 1000.0  # the limits run on a clock 1000x faster than real time: 120 s of idling take 0.12 s


def fast_clock() -> float:
    return time.monotonic() * SPEED


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify(mode="advanced-chat") as fake:
        yield fake


@pytest.fixture
async def service(dify: FakeDify, store: ConversationStore) -> AsyncIterator[ChatService]:
    async with DifyClient(
        base_url=dify.url, api_key=dify.api_key, retry_delays=(0, 0), idle_timeout=120.0, clock=fast_clock
    ) as client:
        yield ChatService(dify=client, store=store, lock_wait=10, answer_timeout=900.0, clock=fast_clock)


async def ask(service: ChatService, text: str) -> list[ReplyEvent]:
    async with service.reply(CHAT, text) as stream:
        return [event async for event in stream]


def text_of(events: list[ReplyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def task_of(events: list[ReplyEvent]) -> str:
    return next(e.task_id for e in events if isinstance(e, TaskStarted))


def pings(count: int, every: float) -> list[Step]:
    steps: list[Step] = []
    for _ in range(count):
        steps += [Delay(every), PING]
    return steps


def text_then_pings(ctx: ReplyContext) -> list[Step]:
    ev = Events(ctx)
    return [*ev.flow_head(), ev.message("Hello ", selector=["llm", "text"]), *pings(400, 0.005)]


async def test_only_pings_end_the_answer_with_its_text_and_stop_the_task(service: ChatService, dify: FakeDify) -> None:
    dify.script(Transcript(text_then_pings))
    started = time.monotonic()
    events = await ask(service, "hi")
    assert time.monotonic() - started < 1.5  # the 2 s of pings were cut at the idle limit
    final = events[-1]
    assert isinstance(final, Failed) and isinstance(final.error, AnswerIdle)
    assert text_of(events) == "Hello " and final.partial == "Hello "
    assert dify.stops == [task_of(events)]
    assert friendly_error(final.error) == "The assistant stopped responding, so the answer ends here. Please try again."
    # The chat's lock is free: the next message is answered at once.
    dify.script()
    after = await ask(service, "next")
    assert isinstance(after[-1], Done) and text_of(after) == "echo: next"


def busy_flow(ctx: ReplyContext) -> list[Step]:
    """Node events and text, each gap longer than half the idle limit: pings in between, never idle."""
    ev = Events(ctx)
    node = ev.node("tool", "tool", "Search", 2, ev.start.node_id)
    return [
        *ev.flow_head(),
        *pings(14, 0.005),
        ev.node_started(node),
        *pings(14, 0.005),
        ev.node_finished(node),
        *pings(14, 0.005),
        ev.message("Done ", selector=["llm", "text"]),
        *pings(14, 0.005),
        ev.message("now.", selector=["llm", "text"]),
        *ev.flow_tail("Done now."),
        ev.message_end(files=[]),
        ev.workflow_finished("succeeded", {"answer": "Done now."}),
    ]


async def test_node_and_text_events_count_as_activity(service: ChatService, dify: FakeDify) -> None:
    dify.script(Transcript(busy_flow))
    started = time.monotonic()
    events = await ask(service, "work")
    assert time.monotonic() - started > 0.2  # longer than the idle limit in all, yet never idle
    assert isinstance(events[-1], Done) and events[-1].answer == "Done now."
    assert dify.stops == []


def endless_text(ctx: ReplyContext) -> list[Step]:
    ev = Events(ctx)
    steps: list[Step] = list(ev.flow_head())
    for index in range(300):
        steps += [Delay(0.01), ev.message(f"w{index} ", selector=["llm", "text"])]
    return steps


async def test_total_limit_ends_a_long_answer_and_stops_the_task(
    service: ChatService, dify: FakeDify, store: ConversationStore
) -> None:
    dify.script(Transcript(endless_text))
    started = time.monotonic()
    events = await ask(service, "go on")
    elapsed = time.monotonic() - started
    assert 0.8 < elapsed < 2.5  # 900 fast seconds, well before the 3 s stream ends
    final = events[-1]
    assert isinstance(final, Failed) and isinstance(final.error, AnswerTooLong)
    shown = text_of(events)
    assert shown.startswith("w0 w1 ") and final.partial == shown and "w299" not in shown
    assert dify.stops == [task_of(events)]
    assert friendly_error(final.error, "zh") == "回答用时过长，已在此处停止。请重试，或把问题拆小一些。"
    async with store.lock(CHAT, wait=0.5):  # released: taken at once
        pass
