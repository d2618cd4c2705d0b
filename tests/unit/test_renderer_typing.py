"""StreamRenderer's typing indicator: kept up while the chat shows no answer text, dropped once it does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from core.answer import Done, ReplyEvent, TextDelta
from core.render.renderer import StreamRenderer
from core.render.surface import SurfaceLimits
from core.render.throttle import Throttle
from tests.unit.test_renderer import MemorySurface


@dataclass
class TimedTyping(MemorySurface):
    typing_at: list[float] = field(default_factory=list)

    async def typing(self) -> None:
        self.typing_at.append(asyncio.get_running_loop().time())


async def thinking_then_streaming() -> AsyncIterator[ReplyEvent]:
    await asyncio.sleep(0.3)  # Dify thinks: the chat shows typing, then the placeholder
    for _ in range(25):
        yield TextDelta("word ")
        await asyncio.sleep(0.02)
    yield Done("")


async def test_typing_repeats_while_thinking_and_stops_once_text_shows() -> None:
    surface = TimedTyping()
    loop = asyncio.get_running_loop()
    renderer = StreamRenderer(surface, throttle=Throttle(0.05), status_delay=0.1, typing_interval=0.05, clock=loop.time)
    await renderer.render(thinking_then_streaming())
    first_text = next(op.at for op in surface.ops if op.text.startswith("word"))
    assert len([at for at in surface.typing_at if at < first_text]) >= 4
    assert not [at for at in surface.typing_at if at > first_text]


async def test_without_placeholders_typing_goes_on_through_the_answer() -> None:
    surface = TimedTyping(limits=SurfaceLimits(max_length=4000, placeholder=False))
    loop = asyncio.get_running_loop()
    renderer = StreamRenderer(surface, throttle=Throttle(0.05), status_delay=0.1, typing_interval=0.05, clock=loop.time)
    await renderer.render(thinking_then_streaming())
    first_text = surface.ops[0].at
    assert len([at for at in surface.typing_at if at > first_text]) >= 3
