"""StopRelay: a Stop pressed on one replica reaches the replica running the answer, over Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.controls.stops import StopOutcome, StopRegistry
from core.conversations import ChatKey

log = logging.getLogger(__name__)

REPLY_WAIT = 1.0  # seconds to wait for the replica running the answer to say how the press went
_OUTCOMES = frozenset({"stopped", "not_yours"})


class StopRelay:
    """Publishes presses this replica cannot serve; serves the presses other replicas publish."""

    def __init__(self, redis: Redis, *, channel: str, registry: StopRegistry, wait: float = REPLY_WAIT) -> None:
        self._redis = redis
        self._channel = channel
        self._registry = registry
        self._wait = wait
        self._waiting: dict[str, asyncio.Future[StopOutcome]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._listener = asyncio.create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5.0)  # without Redis, presses stay local
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in (self._listener, *self._handlers):
            if task is not None:
                task.cancel()
        for task in (self._listener, *self._handlers):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def ask(self, *, by: str, token: str | None, chat: ChatKey | None, admin: bool) -> StopOutcome | None:
        """Ask the other replicas to stop the answer; None when none of them runs it (or Redis is away)."""
        request_id = secrets.token_hex(8)
        message: dict[str, Any] = {"id": request_id, "by": by, "admin": admin, "token": token}
        if chat is not None:
            message["chat"] = [chat.platform, chat.scope, chat.user]
        reply: asyncio.Future[StopOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = reply
        try:
            listeners = await self._redis.publish(self._channel, json.dumps(message))
            if listeners <= 1:
                return None  # only this replica listens: nobody else can be running the answer
            return await asyncio.wait_for(reply, self._wait)
        except (RedisError, OSError, TimeoutError) as exc:
            if not isinstance(exc, TimeoutError):
                log.warning("could not relay a stop request: %r", exc)
            return None
        finally:
            self._waiting.pop(request_id, None)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._receive(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarts: subscribe again
                log.info("stop relay lost its subscription: %r", exc)
                await asyncio.sleep(1.0)

    def _receive(self, data: Any) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            return
        if not isinstance(message, dict):
            return
        replied = message.get("reply_to")
        if isinstance(replied, str):
            waiting = self._waiting.get(replied)
            if waiting is not None and not waiting.done() and message.get("outcome") in _OUTCOMES:
                waiting.set_result(message["outcome"])
            return
        task = asyncio.create_task(self._serve(message))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, message: dict[str, Any]) -> None:
        """Stop the answer if it runs here, and say how it went; stay silent otherwise."""
        token, chat = message.get("token"), _chat(message.get("chat"))
        entry = self._registry.find(token=token if isinstance(token, str) else None, chat=chat)
        if entry is None:
            return
        admin = message.get("admin") is True

        async def is_admin() -> bool:
            return admin

        outcome = await self._registry.stop(by=str(message.get("by", "")), token=entry.token, is_admin=is_admin)
        reply = {"reply_to": message.get("id"), "outcome": outcome}
        try:
            await self._redis.publish(self._channel, json.dumps(reply))
        except (RedisError, OSError) as exc:
            log.warning("could not answer a relayed stop request: %r", exc)


def _chat(value: Any) -> ChatKey | None:
    if isinstance(value, list) and len(value) == 3 and all(isinstance(part, str) for part in value):
        return ChatKey(platform=value[0], scope=value[1], user=value[2])
    return None
