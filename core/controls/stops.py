"""The running answers a Stop button or /stop can end: who asked each one and how to stop it."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.conversations import ChatKey
from core.errors import Stopped

log = logging.getLogger(__name__)

StopOutcome = Literal["stopped", "not_yours", "ended"]
IsAdmin = Callable[[], Awaitable[bool]]


class Stoppable(Protocol):
    """The two ends of a running answer: the sink that shows it and the Dify task that writes it."""

    def interrupt(self, error: Stopped) -> None: ...

    async def stop_task(self) -> None: ...


@dataclass(slots=True)
class RunningAnswer:
    token: str
    chat: ChatKey
    asker: str  # the platform's id of the person who asked ('' = anyone may stop it)
    target: Stoppable
    stopping: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)


class StopRegistry:
    """Answers in flight in this process, by stop token and by chat."""

    def __init__(self) -> None:
        self._by_token: dict[str, RunningAnswer] = {}
        self._by_chat: dict[ChatKey, RunningAnswer] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def add(self, *, chat: ChatKey, asker: str, target: Stoppable) -> RunningAnswer:
        """Register an answer that starts; its token goes into the Stop button's data."""
        entry = RunningAnswer(token=secrets.token_urlsafe(9), chat=chat, asker=asker, target=target)
        self._by_token[entry.token] = entry
        self._by_chat[chat] = entry
        return entry

    def remove(self, entry: RunningAnswer) -> None:
        self._by_token.pop(entry.token, None)
        if self._by_chat.get(entry.chat) is entry:
            del self._by_chat[entry.chat]

    def running(self, chat: ChatKey) -> RunningAnswer | None:
        return self._by_chat.get(chat)

    def find(self, *, token: str | None = None, chat: ChatKey | None = None) -> RunningAnswer | None:
        """The answer a button's `token` names, else the one running in `chat`."""
        if token is not None:
            return self._by_token.get(token)
        return self._by_chat.get(chat) if chat is not None else None

    async def stop(
        self, *, by: str, token: str | None = None, chat: ChatKey | None = None, is_admin: IsAdmin | None = None
    ) -> StopOutcome:
        """Stop the answer with `token` (a button) or the one running in `chat` (/stop) for user `by`.
        Only its asker or, when `is_admin` says so, a chat admin may; the Dify task is stopped at once."""
        entry = self.find(token=token, chat=chat)
        if entry is None:
            return "ended"
        if entry.asker and by != entry.asker and not (is_admin is not None and await is_admin()):
            return "not_yours"
        if entry.stopping:
            return "stopped"
        entry.stopping = True
        log.info("answer stopped by its %s", "asker" if by == entry.asker else "chat admin")
        entry.target.interrupt(Stopped("stopped by the user"))
        task = asyncio.create_task(entry.target.stop_task())
        entry._tasks.add(task)  # stopped in the background: the press is answered at once
        task.add_done_callback(entry._tasks.discard)
        return "stopped"
