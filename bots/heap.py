"""The cycle collector tuned for a long-running service: start-up objects frozen, fewer young collections."""

from __future__ import annotations

import gc

# Collect the youngest generation after this many new container objects instead of Python's 700: every
# answer allocates thousands of short-lived dicts and tuples, and each collection also walks the objects
# of every answer still in flight.
YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLDS = (20, 20)


def settle_after_startup() -> None:
    """Start-up is over: what it built (modules, models, clients) lives as long as the process, so full
    collections stop walking it; answers then pay only for their own objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
