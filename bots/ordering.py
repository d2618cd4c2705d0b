"""Per-chat FIFO gate: one chat's updates start in the order they arrived, taken before any await."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from types import TracebackType


class ChatGate:
    """`async with gate.turn(key):` — the slot is queued when turn() is called, not when awaited."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[asyncio.Future[None]]] = {}

    def turn(self, key: Hashable) -> _Turn:
        queue = self._queues.setdefault(key, deque())
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not queue:
            ticket.set_result(None)
        queue.append(ticket)
        return _Turn(self, key, ticket)

    def _leave(self, key: Hashable, ticket: asyncio.Future[None]) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        was_head = bool(queue) and queue[0] is ticket
        try:
            queue.remove(ticket)
        except ValueError:
            pass
        if was_head and queue and not queue[0].done():
            queue[0].set_result(None)
        if not queue:
            del self._queues[key]

    def __len__(self) -> int:
        return len(self._queues)


class _Turn:
    def __init__(self, gate: ChatGate, key: Hashable, ticket: asyncio.Future[None]) -> None:
        self._gate = gate
        self._key = key
        self._ticket = ticket

    async def __aenter__(self) -> None:
        try:
            await asyncio.shield(self._ticket)
        except BaseException:
            self._gate._leave(self._key, self._ticket)
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._gate._leave(self._key, self._ticket)

    def release(self) -> None:
        """Let the chat's next update go now (e.g. once this one has its place in the answer queue)."""
        self._gate._leave(self._key, self._ticket)
