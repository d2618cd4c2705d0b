"""Delivering an answer's files after its final frame, through rate limits and outages until the deadline."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.files.model import ProducedFile
from core.render.stats import RenderStats
from core.render.surface import MessageSurface, SurfaceBusy, SurfaceRateLimited, SurfaceTransient
from core.render.throttle import Budget, Clock, Sleep

log = logging.getLogger(__name__)

FINAL_DEADLINE = 600.0  # seconds a final frame keeps trying through rate limits and outages
RETRY_MARGIN = 0.15  # seconds after a platform's retry_after before trying again
BACKOFF_FIRST = 0.5  # first wait after a transient failure of a final frame; doubles up to the cap
BACKOFF_CAP = 5.0


async def deliver_files(
    surface: MessageSurface,
    files: Sequence[ProducedFile],
    *,
    throttle: Budget,
    stats: RenderStats,
    clock: Clock,
    sleep: Sleep,
) -> None:
    """`surface.attach(files)` once, in a throttle slot, retried on rate limits and outages (if it can attach)."""
    attach = getattr(surface, "attach", None)
    if attach is None or not files:
        return
    deadline = clock() + FINAL_DEADLINE
    backoff = BACKOFF_FIRST
    while True:
        await throttle.take(sleep)
        wait = 0.0
        try:
            await attach(files)
            return
        except (SurfaceRateLimited, SurfaceBusy) as exc:
            stats.rate_limited += isinstance(exc, SurfaceRateLimited)
            throttle.pause(exc.retry_after + RETRY_MARGIN)
        except SurfaceTransient as exc:
            stats.errors.append(repr(exc))
            wait, backoff = backoff, min(backoff * 2, BACKOFF_CAP)
        except Exception as exc:  # a refused file must not turn a delivered answer into a failure
            log.warning("could not deliver the answer's files: %r", exc)
            stats.errors.append(repr(exc))
            return
        finally:
            throttle.release()
        if clock() + throttle.delay() + wait > deadline:
            log.error("giving up on delivering the answer's files")
            return
        if wait:
            await sleep(wait)
