"""Per-workspace, per-method Slack Web API budgets, sized to Slack's rate tiers."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.render.throttle import TokenBucket

# (per minute, burst) per workspace. Slack counts in sliding minutes, so burst + rate stays within the
# tier: chat.postMessage ~60 (special tier), chat.update Tier 3 (~50), chat.startStream and
# chat.stopStream ~20 (not documented firmly), chat.appendStream Tier 4 (~100).
METHOD_BUDGETS: dict[str, tuple[float, int]] = {
    "chat.postMessage": (45.0, 15),
    "chat.update": (40.0, 10),
    "chat.startStream": (15.0, 5),
    "chat.stopStream": (15.0, 5),
    "chat.appendStream": (80.0, 20),
}


class SlackBudgets:
    """One token bucket per (workspace, method), shared by every answer in that workspace."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def bucket(self, team: str, method: str) -> TokenBucket | None:
        """The bucket for `method` in `team`; None for methods without a budget of ours."""
        limits = METHOD_BUDGETS.get(method)
        if limits is None:
            return None
        bucket = self._buckets.get((team, method))
        if bucket is None:
            per_minute, burst = limits
            bucket = self._buckets[(team, method)] = TokenBucket(per_minute=per_minute, burst=burst, clock=self._clock)
        return bucket

    def available(self, team: str, method: str) -> bool:
        bucket = self.bucket(team, method)
        return bucket is None or bucket.delay() == 0
