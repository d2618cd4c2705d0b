"""Reply events read on a task of their own, so an answer can end at once even while Dify is silent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from typing import Any

from core.answer import Failed, ReplyEvent
from core.errors import BotError

log = logging.getLogger(__name__)


class Feed:
    """`await feed.next()` until None (the end, or `interrupt()`); then `await feed.close()`."""

    def __init__(self, events: AsyncIterable[ReplyEvent]) -> None:
        # One slot: Dify is read no faster than the caller takes the answer.
        self._inbox: asyncio.Queue[ReplyEvent | None] = asyncio.Queue(maxsize=1)
        self._interrupted = asyncio.Event()
        self._interrupt_wait: asyncio.Task[Any] | None = None
        self._reader = asyncio.create_task(self._read(events))

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def interrupt(self) -> None:
        """Make `next()` return None now, whatever Dify is doing."""
        self._interrupted.set()

    async def next(self) -> ReplyEvent | None:
        """The next reply event; None once the events end or the feed is interrupted."""
        if self._interrupted.is_set():
            return None
        if self._interrupt_wait is None:
            self._interrupt_wait = asyncio.create_task(self._interrupted.wait())
        get: asyncio.Task[ReplyEvent | None] = asyncio.create_task(self._inbox.get())
        try:
            await asyncio.wait((get, self._interrupt_wait), return_when=asyncio.FIRST_COMPLETED)
        finally:
            get.cancel()  # no-op when it has an event; a pending get leaves the queue as it was
        if get.done() and not get.cancelled():
            return get.result()  # an event that arrived with the interrupt still counts
        return None

    async def close(self) -> None:
        """Stop reading; the reply stream is left for its owner to close."""
        if self._interrupt_wait is not None:
            self._interrupt_wait.cancel()
        if not self._reader.done():
            self._reader.cancel()
            await asyncio.wait((self._reader,))

    async def _read(self, events: AsyncIterable[ReplyEvent]) -> None:
        try:
            async for event in events:
                await self._inbox.put(event)
        except Exception as exc:  # a bug or an unexpected failure still ends the answer with an outcome
            log.exception("reply stream failed")
            await self._inbox.put(Failed(error=exc if isinstance(exc, BotError) else BotError(repr(exc))))
        await self._inbox.put(None)
