"""StreamRenderer under platform faults, on a virtual clock: outages, retry_after as given, unmapped errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from core.answer import Done, ReplyEvent, TextDelta
from core.render.renderer import BACKOFF_CAP, FINAL_DEADLINE, RETRY_MARGIN, StreamRenderer
from core.render.surface import SurfaceLimits, SurfaceRateLimited, SurfaceTransient
from core.render.throttle import Throttle

ANSWER = "Step 4 of 27 is done. Step 5 is next."


class VirtualTime:
    """A clock that only moves when the renderer sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@dataclass
class FaultySurface:
    """A chat that is down until `down_until`, answers `rate_limits` first, or raises `unmapped` once."""

    clock: VirtualTime
    limits: SurfaceLimits = field(default_factory=lambda: SurfaceLimits(max_length=4000))
    down_until: float = 0.0
    rate_limits: list[float] = field(default_factory=list)
    unmapped: list[Exception] = field(default_factory=list)
    shown: dict[int, str] = field(default_factory=dict)
    attempts: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)  # when each 429 was answered
    delivered_at: float | None = None

    def measure(self, markdown: str) -> int:
        return len(markdown)

    def _check(self) -> None:
        self.attempts.append(self.clock.now)
        if self.unmapped:
            raise self.unmapped.pop(0)
        if self.clock.now < self.down_until:
            raise SurfaceTransient("502 Bad Gateway")
        if self.rate_limits:
            self.refused.append(self.clock.now)
            raise SurfaceRateLimited(self.rate_limits.pop(0))

    def _show(self, handle: int, markdown: str, final: bool) -> int:
        self.shown[handle] = markdown if final else markdown + " ▌"
        if final:
            self.delivered_at = self.clock.now
        return handle

    async def send(self, markdown: str, *, final: bool) -> int:
        self._check()
        return self._show(len(self.shown) + 1, markdown, final)

    async def edit(self, handle: int, markdown: str, *, final: bool) -> int:
        self._check()
        return self._show(handle, markdown, final)

    async def delete(self, handle: int) -> None:
        raise OSError("connection refused")

    async def typing(self) -> None:
        raise RuntimeError("typing failed")  # best effort: must never reach the user

    async def status(self, text: str) -> None:
        raise RuntimeError("status failed")


async def events(items: Iterable[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
    for item in items:
        yield item


def answer_events() -> list[ReplyEvent]:
    return [TextDelta(ANSWER[:20]), TextDelta(ANSWER[20:]), Done(ANSWER)]


def renderer(surface: FaultySurface, clock: VirtualTime, interval: float = 1.0) -> StreamRenderer:
    return StreamRenderer(
        surface, throttle=Throttle(interval, clock=clock), status_delay=0.0, clock=clock, sleep=clock.sleep
    )


async def test_final_frame_outlasts_a_20_second_outage_and_arrives_soon_after() -> None:
    clock = VirtualTime()
    surface = FaultySurface(clock=clock, down_until=20.0)
    stats = await renderer(surface, clock).render(events(answer_events()))
    assert stats.outcome == "done"
    assert surface.shown == {1: ANSWER}  # the first send itself waited the outage out
    assert surface.delivered_at is not None and 20.0 <= surface.delivered_at <= 20.0 + BACKOFF_CAP
    # backoff: 0.5, 1, 2, 4, then every 5 s; not a request per interval
    assert 6 <= len(surface.attempts) <= 10


async def test_final_frame_gives_up_only_at_the_deadline() -> None:
    clock = VirtualTime()
    surface = FaultySurface(clock=clock, down_until=float("inf"))
    stats = await renderer(surface, clock).render(events(answer_events()))
    assert stats.outcome == "undelivered"
    assert FINAL_DEADLINE <= clock.now <= FINAL_DEADLINE + BACKOFF_CAP + 1
    assert len(surface.attempts) <= FINAL_DEADLINE / BACKOFF_CAP + 10


async def test_five_429s_are_waited_out_as_given() -> None:
    clock = VirtualTime()
    surface = FaultySurface(clock=clock, rate_limits=[2.0] * 5)
    stats = await renderer(surface, clock).render(events(answer_events()))
    assert stats.outcome == "done" and stats.rate_limited == 5
    assert surface.shown == {1: ANSWER}
    assert surface.delivered_at is not None
    # every retry comes as soon as Telegram's window has passed, never later than retry_after + 1 s
    tries = [*surface.refused, surface.delivered_at]
    gaps = [later - earlier for earlier, later in pairwise(tries)]
    assert all(2.0 <= gap <= 2.0 + 1.0 for gap in gaps), gaps
    assert surface.delivered_at - surface.refused[-1] <= 2.0 + RETRY_MARGIN + 0.01


async def test_unmapped_platform_errors_do_not_leave_the_answer_stuck() -> None:
    clock = VirtualTime()
    surface = FaultySurface(clock=clock, unmapped=[ValueError("Failed to decode object"), OSError("reset")])
    stats = await renderer(surface, clock).render(events(answer_events()))
    assert stats.outcome == "done"
    assert surface.shown == {1: ANSWER}
    assert len(stats.errors) == 2


async def test_failing_typing_and_status_never_escape() -> None:
    clock = VirtualTime()
    surface = FaultySurface(clock=clock, limits=SurfaceLimits(max_length=4000, placeholder=False))
    stats = await renderer(surface, clock).render(events(answer_events()))
    assert stats.outcome == "done" and surface.shown == {1: ANSWER}
