"""Answers in flight: each adapter registers its running renderers so shutdown can finish them."""

from __future__ import annotations

import asyncio
from typing import Any

from core.render.renderer import RenderStats, StreamRenderer
from core.service import ReplyStream

ActiveAnswers = dict[StreamRenderer, asyncio.Task[Any]]


async def render_tracked(renderer: StreamRenderer, stream: ReplyStream, active: ActiveAnswers) -> RenderStats:
    """Render one answer while it is listed in `active` (the task to wait for, the renderer to interrupt)."""
    task = asyncio.current_task()
    if task is not None:
        active[renderer] = task
    try:
        return await renderer.render(stream)
    finally:
        active.pop(renderer, None)
