"""Keeping the chat's typing indicator (and, without placeholders, its progress line) up during an answer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from core.render.flags import Flag, wait_any
from core.render.layout import FrameLayout
from core.render.surface import MessageSurface

__all__ = ["keep_typing", "wait_either"]


async def wait_either(event: Flag, finished: Flag, limit: float | None) -> None:
    """Wait for `event` or `finished`, at most `limit` seconds."""
    await wait_any((event, finished), limit)


async def keep_typing(
    surface: MessageSurface,
    frames: FrameLayout,
    *,
    finished: Flag,
    status_changed: Flag,
    interval: float,
    text_shown: Callable[[], bool],
) -> None:
    """Show typing every `interval` until the answer ends; on placeholder surfaces only until the chat
    shows answer text (the message with its cursor shows progress from then on)."""
    placeholder = surface.limits.placeholder
    while not finished.is_set():
        if placeholder and text_shown():
            return
        with contextlib.suppress(Exception):
            await surface.typing()
        if placeholder:
            await wait_either(finished, finished, interval)
            continue
        # Surfaces without placeholder messages show progress lines through status().
        await wait_either(status_changed, finished, interval)
        if status_changed.is_set() and not finished.is_set():
            status_changed.clear()
            status = frames.status
            if status is not None and not frames.has_text:
                with contextlib.suppress(Exception):
                    await surface.status(status)
