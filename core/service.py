"""ChatService: one answer per message, serialized per conversation, remembered in the store."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from types import TracebackType
from typing import Any

from core.answer import AnswerReducer, ContextReset, Failed, ReplyEvent, TaskStarted
from core.conversations import ChatKey, Conversation, ConversationStore
from core.dify.client import WORKFLOW_MODE, DifyClient
from core.dify.errors import ConversationNotFound, DifyError
from core.errors import BotError, StoreUnavailable
from core.logs import add_log_context

log = logging.getLogger(__name__)


class ChatService:
    """The one entry point adapters use: `async with service.reply(chat, text) as stream: ...`."""

    def __init__(
        self,
        *,
        dify: DifyClient,
        store: ConversationStore,
        workflow_output: str = "",
        lock_wait: float = 120.0,
    ) -> None:
        self.dify = dify
        self.store = store
        self._workflow_output = workflow_output
        self._lock_wait = lock_wait

    def reply(
        self,
        chat: ChatKey,
        text: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        files: Sequence[Mapping[str, Any]] = (),
    ) -> ReplyStream:
        return ReplyStream(self, chat=chat, text=text, inputs=inputs, files=files)

    async def reset(self, chat: ChatKey) -> bool:
        """Forget the chat's conversation; True when there was one."""
        return await self.store.reset(chat) is not None


class ReplyStream:
    """The reply events of one answer, plus `stop()` to cancel the Dify task behind it."""

    def __init__(
        self,
        service: ChatService,
        *,
        chat: ChatKey,
        text: str,
        inputs: Mapping[str, Any] | None,
        files: Sequence[Mapping[str, Any]],
    ) -> None:
        self._service = service
        self.chat = chat
        self._text = text
        self._inputs = inputs
        self._files = files
        self.task_id: str | None = None
        self.user = chat.user
        self._events = self._run()

    async def __aenter__(self) -> ReplyStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._events.aclose()

    def __aiter__(self) -> AsyncIterator[ReplyEvent]:
        return self._events

    async def stop(self) -> None:
        """Ask Dify to stop the running task (best effort)."""
        if self.task_id is None:
            return
        try:
            await self._service.dify.stop(task_id=self.task_id, user=self.user)
        except DifyError as exc:
            log.warning("could not stop task %s: %r", self.task_id, exc)

    async def _run(self) -> AsyncGenerator[ReplyEvent, None]:
        store = self._service.store
        try:
            async with store.lock(self.chat, wait=self._service._lock_wait):
                async for event in self._answer():
                    yield event
        except BotError as exc:  # lock wait exceeded, store down before the answer started
            log.warning("answer for %s:%s failed before starting: %r", self.chat.platform, self.chat.scope, exc)
            yield Failed(error=exc)

    async def _answer(self) -> AsyncGenerator[ReplyEvent, None]:
        service = self._service
        try:
            mode = await service.dify.app_mode()
        except DifyError as exc:
            yield Failed(error=exc)
            return
        stored = None if mode == WORKFLOW_MODE else await service.store.get(self.chat)
        conversation_id = stored.conversation_id if stored else None
        saved_id = conversation_id
        self.user = stored.user if stored else self.chat.user

        for attempt in range(2):
            reducer = AnswerReducer(mode=mode, workflow_output=service._workflow_output)
            retry = False
            try:
                async with aclosing(
                    service.dify.stream(
                        query=self._text,
                        user=self.user,
                        conversation_id=conversation_id,
                        inputs=self._inputs,
                        files=self._files,
                    )
                ) as events:
                    async for event in events:
                        for reply in reducer.feed(event):
                            if isinstance(reply, TaskStarted):
                                self.task_id = reply.task_id
                                add_log_context(task_id=reply.task_id)
                            if (
                                isinstance(reply, Failed)
                                and isinstance(reply.error, ConversationNotFound)
                                and conversation_id
                                and attempt == 0
                                and not reducer.text
                            ):
                                retry = True
                                break
                            yield reply
                        if retry:
                            break
                        returned = reducer.conversation_id
                        if returned and returned != saved_id and mode != WORKFLOW_MODE:
                            await self._remember(returned)
                            saved_id = returned
                            if conversation_id:
                                yield ContextReset()  # chatflows swap an unknown id for a new one silently
            except ConversationNotFound as exc:
                if not conversation_id or attempt > 0:
                    for reply in reducer.fail(exc):
                        yield reply
                    return
                retry = True
            except DifyError as exc:
                log.warning("dify stream for %s:%s failed: %r", self.chat.platform, self.chat.scope, exc)
                for reply in reducer.fail(exc):
                    yield reply
                return
            if retry:
                log.info("conversation %s is gone in Dify; starting a new one", conversation_id)
                await self._forget()
                conversation_id = saved_id = None
                self.user = self.chat.user
                yield ContextReset()
                continue
            for reply in reducer.finish():
                yield reply
            return

    async def _remember(self, conversation_id: str) -> None:
        """Save the id Dify returned (never the one sent); the answer goes on if Redis is down."""
        try:
            await self._service.store.save(self.chat, Conversation(conversation_id=conversation_id, user=self.user))
        except StoreUnavailable as exc:
            log.warning("could not save conversation for %s: %r", self.chat.scope, exc)

    async def _forget(self) -> None:
        try:
            await self._service.store.reset(self.chat)
        except StoreUnavailable as exc:
            log.warning("could not drop stale conversation for %s: %r", self.chat.scope, exc)
