"""After start-up the cycle collector leaves start-up objects alone and collects the young less often."""

from __future__ import annotations

import gc
import weakref

from bots.heap import OLDER_THRESHOLDS, YOUNG_THRESHOLD, settle_after_startup


def test_start_up_objects_are_frozen_and_young_collections_rarer() -> None:
    before = gc.get_threshold()
    try:
        settle_after_startup()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
        cycle = _Node()
        cycle.peer = cycle
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None  # garbage made after start-up is still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Node:
    peer: object = None
