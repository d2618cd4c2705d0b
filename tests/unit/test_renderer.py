"""StreamRenderer against an in-memory surface: cadence, rollover, errors, placeholders, final frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import pytest

from core.answer import ContextReset, Done, Failed, Progress, ReplyEvent, TextDelta, TextReplace
from core.dify.errors import DifyProviderError
from core.errors import Interrupted
from core.render.renderer import StreamRenderer
from core.render.surface import (
    SurfaceBlocked,
    SurfaceBusy,
    SurfaceError,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
)
from core.render.throttle import Throttle, TokenBucket
from core.texts import friendly_error, text

INTERVAL = 0.05


@dataclass
class Op:
    kind: str
    handle: int
    text: str
    final: bool
    at: float


@dataclass
class MemorySurface:
    limits: SurfaceLimits = field(default_factory=lambda: SurfaceLimits(max_length=4000))
    faults: list[SurfaceError] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    shown: dict[int, str] = field(default_factory=dict)
    typing_calls: int = 0
    statuses: list[str] = field(default_factory=list)

    def measure(self, markdown: str) -> int:
        return len(markdown)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def send(self, markdown: str, *, final: bool) -> int:
        if self.faults:
            raise self.faults.pop(0)
        markdown = markdown if final else markdown + " ▌"
        handle = len(self.shown) + 1
        self.shown[handle] = markdown
        self.ops.append(Op("send", handle, markdown, final, self._now()))
        return handle

    async def edit(self, handle: int, markdown: str, *, final: bool) -> int:
        if self.faults:
            raise self.faults.pop(0)
        markdown = markdown if final else markdown + " ▌"
        assert len(markdown) <= self.limits.max_length
        self.shown[handle] = markdown
        self.ops.append(Op("edit", handle, markdown, final, self._now()))
        return handle

    async def delete(self, handle: int) -> None:
        self.shown.pop(handle, None)

    async def typing(self) -> None:
        self.typing_calls += 1

    async def status(self, text: str) -> None:
        self.statuses.append(text)


async def script(items: Iterable[ReplyEvent | float]) -> AsyncIterator[ReplyEvent]:
    for item in items:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


def renderer(surface: MemorySurface, **kwargs: object) -> StreamRenderer:
    return StreamRenderer(surface, throttle=Throttle(INTERVAL), status_delay=0.1, **kwargs)  # type: ignore[arg-type]


async def test_short_answer_is_one_final_send() -> None:
    surface = MemorySurface()
    stats = await renderer(surface).render(script([TextDelta("Hello"), TextDelta(" world"), Done("Hello world")]))
    assert [(op.kind, op.text, op.final) for op in surface.ops] == [("send", "Hello world", True)]
    assert stats.outcome == "done" and stats.sends == 1 and stats.edits == 0


async def test_streamed_answer_edits_in_place_with_cursor_then_final() -> None:
    surface = MemorySurface()
    words = [f"w{i} " for i in range(30)]
    events: list[ReplyEvent | float] = []
    for word in words:
        events += [TextDelta(word), 0.01]
    events.append(Done("".join(words)))
    await renderer(surface).render(script(events))
    assert surface.shown == {1: "".join(words).rstrip()}
    interim = [op for op in surface.ops if not op.final]
    assert interim and all(op.text.endswith(" ▌") for op in interim)
    assert surface.ops[-1].final and not surface.ops[-1].text.endswith("▌")
    gaps = [b.at - a.at for a, b in zip(surface.ops, surface.ops[1:], strict=False)]
    assert min(gaps) >= INTERVAL * 0.9
    # ~0.3 s of streaming at one op per 0.05 s: coalesced, not one edit per chunk
    assert len(surface.ops) < len(words)


async def test_long_answer_continues_in_new_messages_within_the_limit() -> None:
    surface = MemorySurface(limits=SurfaceLimits(max_length=120))
    paragraphs = [f"Paragraph {i} " + "word " * 12 for i in range(8)]
    answer = "\n\n".join(p.strip() for p in paragraphs)
    events: list[ReplyEvent | float] = [TextDelta(answer[i : i + 40]) for i in range(0, len(answer), 40)]
    events.append(Done(answer))
    await renderer(surface).render(script(events))
    parts = [surface.shown[h] for h in sorted(surface.shown)]
    assert len(parts) >= 3
    assert all(len(p) <= 120 for p in parts)
    assert "".join(p.replace("\n", "").replace(" ", "") for p in parts) == answer.replace("\n", "").replace(" ", "")


async def test_rate_limit_pauses_interim_frames_and_final_still_arrives() -> None:
    surface = MemorySurface(faults=[SurfaceRateLimited(0.2)])
    events: list[ReplyEvent | float] = [TextDelta("a"), 0.02, TextDelta("b"), 0.3, Done("ab")]
    stats = await renderer(surface).render(script(events))
    assert stats.rate_limited == 1
    assert surface.shown == {1: "ab"}


async def test_three_strikes_stop_interim_edits() -> None:
    surface = MemorySurface(faults=[SurfaceRateLimited(0.01)] * 3)
    events: list[ReplyEvent | float] = []
    for i in range(20):
        events += [TextDelta(f"{i} "), 0.01]
    events.append(Done("x"))
    stats = await renderer(surface).render(script(events))
    assert stats.rate_limited == 3
    assert [op.final for op in surface.ops] == [True]
    assert surface.shown[1] == "".join(f"{i} " for i in range(20)).rstrip()


async def test_vanished_message_continues_in_a_new_one() -> None:
    surface = MemorySurface()
    events: list[ReplyEvent | float] = [TextDelta("first part"), 0.1]
    stream = renderer(surface)

    async def delete_then_continue() -> AsyncIterator[ReplyEvent]:
        async for event in script(events):
            yield event
        surface.faults.append(SurfaceMessageGone("message to edit not found"))
        yield TextDelta(", second part")
        yield Done("")

    await stream.render(delete_then_continue())
    assert list(surface.shown.values())[-1] == "first part, second part"


async def test_failure_keeps_partial_text_and_adds_friendly_line() -> None:
    surface = MemorySurface()
    error = DifyProviderError("[openai] Server Unavailable Error")
    await renderer(surface).render(script([TextDelta("The answer is"), Failed(error, partial="The answer is")]))
    assert surface.shown[1] == "The answer is\n\n⚠️ " + friendly_error(error)
    assert "openai" not in surface.shown[1]


async def test_status_placeholder_is_replaced_by_the_answer() -> None:
    surface = MemorySurface()
    events: list[ReplyEvent | float] = [
        Progress("retrieval", "Knowledge"),
        0.3,
        TextDelta("Found it."),
        Done(""),
    ]
    await renderer(surface).render(script(events))
    assert surface.ops[0].text == text("progress_retrieval")
    assert surface.shown == {1: "Found it."}


async def test_context_reset_is_noted_once() -> None:
    surface = MemorySurface()
    await renderer(surface).render(script([ContextReset(), TextDelta("Hi"), Done("Hi")]))
    assert surface.shown[1] == "Hi\n\n_" + text("context_reset") + "_"


async def test_replace_rewrites_the_whole_answer() -> None:
    surface = MemorySurface()
    events: list[ReplyEvent | float] = [
        TextDelta("Sure, here is how"),
        0.1,
        TextReplace("Sorry, I can't help."),
        Done(""),
    ]
    await renderer(surface).render(script(events))
    assert surface.shown == {1: "Sorry, I can't help."}


async def test_blocked_bot_stops_the_source() -> None:
    surface = MemorySurface(faults=[SurfaceBlocked("bot was blocked by the user")])
    stopped = asyncio.Event()

    async def stop() -> None:
        stopped.set()

    events: list[ReplyEvent | float] = [TextDelta("x"), 0.2, TextDelta("y"), 5.0, Done("")]
    stats = await asyncio.wait_for(renderer(surface, stop_source=stop).render(script(events)), 2)
    assert stats.outcome == "blocked" and stopped.is_set()


async def test_interrupt_finishes_with_partial_text() -> None:
    surface = MemorySurface()
    stopped = asyncio.Event()

    async def stop() -> None:
        stopped.set()

    stream = renderer(surface, stop_source=stop)
    task = asyncio.create_task(stream.render(script([TextDelta("partial"), 10.0, Done("")])))
    await asyncio.sleep(0.2)
    stream.interrupt(Interrupted("shutdown"))
    stats = await asyncio.wait_for(task, 2)
    assert stats.outcome == "interrupted" and stopped.is_set()
    assert surface.shown[1] == "partial\n\n⚠️ " + friendly_error(Interrupted())


@pytest.mark.parametrize("answer", ["", "   "])
async def test_empty_answer_says_so(answer: str) -> None:
    surface = MemorySurface()
    await renderer(surface).render(script([TextDelta(answer), Done(answer)]))
    assert surface.shown == {1: text("empty_answer")}


async def test_surfaces_without_placeholders_get_status_lines_and_no_message_until_text() -> None:
    surface = MemorySurface(limits=SurfaceLimits(max_length=4000, cursor_length=0, placeholder=False))
    events: list[ReplyEvent | float] = [Progress("retrieval", "KB"), 0.3, TextDelta("Found."), Done("")]
    await renderer(surface).render(script(events))
    assert surface.statuses == [text("progress_retrieval")]
    assert surface.ops[0].text.startswith("Found.")
    assert surface.shown == {1: "Found."}


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(per_minute=60, burst=3, clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.delay() == pytest.approx(1.0)
    now[0] = 1.0
    assert bucket.try_take() and not bucket.try_take()
    bucket.pause(5)
    now[0] = 3.0
    assert bucket.delay() == pytest.approx(3.0)
    now[0] = 10.0  # full again: 3 tokens, of which 2 are kept back from frames that can wait
    assert bucket.try_take(reserve=2) and not bucket.try_take(reserve=2) and bucket.try_take()


async def test_own_budget_spent_skips_interim_frames_without_strikes() -> None:
    surface = MemorySurface(faults=[SurfaceBusy(0.05)] * 4)
    events: list[ReplyEvent | float] = []
    for i in range(30):
        events += [TextDelta(f"{i} "), 0.02]
    events.append(Done(""))
    stats = await renderer(surface).render(script(events))
    assert stats.rate_limited == 0
    assert any(not op.final for op in surface.ops)  # interim frames resumed: no strikes were counted
    assert surface.shown[1] == "".join(f"{i} " for i in range(30)).rstrip()


async def test_final_frame_waits_out_a_long_rate_limit_storm() -> None:
    surface = MemorySurface(faults=[SurfaceRateLimited(0.01)] * 9)
    stats = await renderer(surface).render(script([TextDelta("survives"), Done("survives")]))
    assert stats.outcome == "done" and stats.rate_limited == 9
    assert surface.shown == {1: "survives"}
