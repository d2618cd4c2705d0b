"""Per-workspace, per-method Slack Web API budgets, sized to Slack's rate tiers and shared by replicas."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.render.throttle import TokenBucket
from core.shared_budgets import Bucket, SharedBudgets

# (per minute, burst) per workspace. Slack counts in sliding minutes, so burst + rate stays within the
# tier: chat.postMessage ~60 (special tier), chat.update Tier 3 (~50), chat.startStream and
# chat.stopStream ~20 (not documented firmly), chat.appendStream and the files.* methods Tier 4 (~100),
# chat.delete Tier 3, assistant.threads.setStatus "special" (unpublished; kept like Tier 4).
METHOD_BUDGETS: dict[str, tuple[float, int]] = {
    "chat.postMessage": (45.0, 15),
    "chat.update": (40.0, 10),
    "chat.startStream": (15.0, 5),
    "chat.stopStream": (15.0, 5),
    "chat.appendStream": (80.0, 20),
    "files.info": (80.0, 20),
    "files.getUploadURLExternal": (80.0, 20),
    "files.completeUploadExternal": (80.0, 20),
    "chat.delete": (40.0, 10),
    "assistant.threads.setStatus": (80.0, 20),
}


class WorkspaceBucket(TokenBucket):
    """This replica's bucket for one method in one workspace; `take_shared` and `pause_shared` keep every
    replica's calls together inside the same budget in Redis (without Redis they allow everything)."""

    def __init__(
        self, *, scope: str, per_minute: float, burst: int, shared: SharedBudgets | None, clock: Callable[[], float]
    ) -> None:
        super().__init__(per_minute=per_minute, burst=burst, clock=clock)
        self.scope = scope
        self._shared_rate = Bucket(per_minute=per_minute, burst=burst)
        self._shared = shared

    async def take_shared(self, *, reserve: int = 0) -> int:
        """0 when a call may go now (one shared token spent), else the milliseconds to wait."""
        if self._shared is None:
            return 0
        return await self._shared.take(self.scope, self._shared_rate, reserve=reserve)

    async def pause_shared(self, seconds: float) -> None:
        """Slack said "retry after": every replica leaves this method alone in the workspace that long."""
        if self._shared is not None:
            await self._shared.pause(self.scope, round(seconds * 1000))


class SlackBudgets:
    """One token bucket per (workspace, method), shared by every answer in that workspace."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, shared: SharedBudgets | None = None) -> None:
        self._clock = clock
        self._shared = shared
        self._buckets: dict[tuple[str, str], WorkspaceBucket] = {}

    def bucket(self, team: str, method: str) -> WorkspaceBucket | None:
        """The bucket for `method` in `team`; None for methods without a budget of ours."""
        limits = METHOD_BUDGETS.get(method)
        if limits is None:
            return None
        bucket = self._buckets.get((team, method))
        if bucket is None:
            per_minute, burst = limits
            bucket = self._buckets[(team, method)] = WorkspaceBucket(
                scope=f"slack:{team}:{method}",
                per_minute=per_minute,
                burst=burst,
                shared=self._shared,
                clock=self._clock,
            )
        return bucket

    def available(self, team: str, method: str) -> bool:
        bucket = self.bucket(team, method)
        return bucket is None or bucket.delay() == 0
