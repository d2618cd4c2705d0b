"""ChatService: one answer per message, serialized per conversation, remembered in the store."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from core.answer import (
    AnswerReducer,
    ContextReset,
    Failed,
    Heard,
    Progress,
    ReplyEvent,
    TaskStarted,
    TextDelta,
)
from core.conversations import ChatKey, Conversation, ConversationStore
from core.dify.client import WORKFLOW_MODE, DifyClient, ReadPause
from core.dify.errors import ConversationNotFound, DifyError
from core.dify.events import StreamEvent
from core.dify.parameters import ParametersCache
from core.errors import AnswerTimedOut, AnswerTooLong, BotError, StoreUnavailable
from core.files.intake import FileIntake, default_question
from core.files.model import FileProblem, IncomingFile
from core.logs import add_log_context

log = logging.getLogger(__name__)

QUEUE_NOTICE_AFTER = 3.0  # seconds a message waits for its turn before it says it is queued


def joined_text(replies: list[ReplyEvent]) -> list[ReplyEvent]:
    """`replies` with each run of text deltas joined into one: what one read of the stream added."""
    if len(replies) < 2:
        return replies
    out: list[ReplyEvent] = []
    for reply in replies:
        if type(reply) is TextDelta and out and type(last := out[-1]) is TextDelta:
            out[-1] = TextDelta(text=last.text + reply.text)
        else:
            out.append(reply)
    return out


class ChatService:
    """The one entry point adapters use: `async with service.reply(chat, text) as stream: ...`."""

    def __init__(
        self,
        *,
        dify: DifyClient,
        store: ConversationStore,
        workflow_output: str = "",
        lock_wait: float = 120.0,
        answer_timeout: float = 900.0,
        queue_notice_after: float = QUEUE_NOTICE_AFTER,
        clock: Callable[[], float] = time.monotonic,
        parameters: ParametersCache | None = None,
        files_url: str = "",
    ) -> None:
        self.dify = dify
        self.files_url = files_url  # where Dify's FILES_URL points when it is not the API host
        self.parameters = parameters if parameters is not None else ParametersCache(dify)
        self.store = store
        self._workflow_output = workflow_output
        self._lock_wait = lock_wait
        self.answer_timeout = answer_timeout
        self.queue_notice_after = queue_notice_after
        self.clock = clock

    @property
    def workflow_output(self) -> str:
        """The workflow output variable shown as the answer of a workflow app ('' picks one)."""
        return self._workflow_output

    @property
    def lock_wait(self) -> float:
        """Seconds an answer waits for the previous one in the same conversation to finish."""
        return self._lock_wait

    def reply(
        self,
        chat: ChatKey,
        text: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        files: Sequence[Mapping[str, Any]] = (),
        order: float | None = None,
        attachments: Sequence[IncomingFile] = (),
    ) -> ReplyStream:
        """The answer to `text` (with the user's `attachments`); `order` is the platform's number for the
        message (answered lowest first)."""
        intake = FileIntake(self.dify, self.parameters, attachments) if attachments else None
        return ReplyStream(self, chat=chat, text=text, inputs=inputs, files=files, order=order, intake=intake)

    async def reset(self, chat: ChatKey) -> bool:
        """Forget the chat's conversation; True when there was one."""
        return await self.store.reset(chat) is not None


@dataclass(slots=True)
class _Attempt:
    """One Dify call of an answer: the conversation it continues and how it went."""

    mode: str
    conversation_id: str | None  # sent to Dify
    saved_id: str | None  # the id the store holds for this chat
    reducer: AnswerReducer
    stale: bool = False  # Dify no longer knows conversation_id: start over in a new conversation

    @property
    def can_start_over(self) -> bool:
        """Only a call that continued a conversation may start over, and only once, in a new one."""
        return bool(self.conversation_id)


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
        order: float | None = None,
        intake: FileIntake | None = None,
    ) -> None:
        self._service = service
        self.chat = chat
        self._text = text
        self._inputs = inputs
        self._given_files = files
        self._files = files
        self._order = order
        self._intake = intake
        self._deadline = float("inf")
        self.task_id: str | None = None
        self._stop_sent = False
        self.user = chat.user
        # Set by the sink that shows the answer: how long Dify's stream may rest unread (see stream_batches).
        self.read_pause: ReadPause | None = None
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
        """Ask Dify to stop the running task (best effort, once)."""
        if self.task_id is None or self._stop_sent:
            return
        self._stop_sent = True
        try:
            await self._service.dify.stop(task_id=self.task_id, user=self.user)
        except DifyError as exc:
            log.warning("could not stop task %s: %r", self.task_id, exc)

    async def _run(self) -> AsyncGenerator[ReplyEvent, None]:
        service = self._service
        try:
            lock = service.store.lock(self.chat, wait=service.lock_wait, order=self._order)
            try:
                if not await lock.acquire(until=service.clock() + service.queue_notice_after):
                    yield Progress(kind="queued", label="")
                    await lock.acquire()
                    yield Progress(kind="thinking", label="")
                self._deadline = service.clock() + service.answer_timeout
                async for event in self._answer():
                    yield event
            finally:
                if self._intake is not None:
                    self._intake.close()
                await lock.release()
        except BotError as exc:  # lock wait exceeded, store down before the answer started
            log.warning("answer for %s:%s failed before starting: %r", self.chat.platform, self.chat.scope, exc)
            yield Failed(error=exc)

    async def _answer(self) -> AsyncGenerator[ReplyEvent, None]:
        """Continue the stored conversation; start over once in a new one if Dify no longer knows it."""
        try:
            mode = await self._service.dify.app_mode()
        except DifyError as exc:
            yield Failed(error=exc)
            return
        conversation_id = await self._resume(mode)
        if self._intake is not None:
            try:
                heard = await self._intake.prepare(user=self.user)
                if heard is not None:
                    yield Heard(text=heard)
                    self._text = f"{self._text.strip()}\n\n{heard}" if self._text.strip() else heard
                elif not self._text.strip():
                    self._text = default_question(self._intake.count)
                await self._attach_files(self._intake)
            except (FileProblem, DifyError) as exc:
                log.info("files for %s:%s refused: %r", self.chat.platform, self.chat.scope, exc)
                yield Failed(error=exc)
                return
        first = self._new_attempt(mode, conversation_id)
        async with aclosing(self._stream(first)) as replies:
            async for reply in replies:
                yield reply
        if not first.stale:
            return
        log.info("conversation %s is gone in Dify; starting a new one", first.conversation_id)
        await self._forget()
        self.user = self.chat.user
        if self._intake is not None:
            try:
                await self._attach_files(self._intake)  # uploads belong to a user: the new conversation's needs its own
            except FileProblem as exc:
                yield Failed(error=exc)
                return
        yield ContextReset()
        async with aclosing(self._stream(self._new_attempt(mode, None))) as replies:
            async for reply in replies:
                yield reply

    async def _attach_files(self, intake: FileIntake) -> None:
        self._files = [*self._given_files, *await intake.files_for(self.user)]

    async def _resume(self, mode: str) -> str | None:
        """The stored conversation to continue (none for workflows); sets the user it belongs to."""
        stored = None if mode == WORKFLOW_MODE else await self._service.store.get(self.chat)
        self.user = stored.user if stored else self.chat.user
        return stored.conversation_id if stored else None

    def _new_attempt(self, mode: str, conversation_id: str | None) -> _Attempt:
        reducer = AnswerReducer(mode=mode, workflow_output=self._service.workflow_output)
        return _Attempt(mode=mode, conversation_id=conversation_id, saved_id=conversation_id, reducer=reducer)

    async def _stream(self, attempt: _Attempt) -> AsyncGenerator[ReplyEvent, None]:
        """Reply events of one Dify call; a conversation Dify no longer knows marks the attempt stale."""
        try:
            async with aclosing(
                self._service.dify.stream_batches(
                    query=self._text,
                    user=self.user,
                    conversation_id=attempt.conversation_id,
                    inputs=self._inputs,
                    files=self._files,
                    pause=self.read_pause,
                )
            ) as batches:
                async for batch in batches:
                    replies: list[ReplyEvent] = []
                    for event in batch:
                        replies.extend(self._replies(attempt, event))
                        if attempt.stale:
                            break
                    # Saved before the replies go out: a reader may stop at the answer's end in this batch.
                    if not attempt.stale and await self._save_returned_id(attempt):
                        yield ContextReset()  # chatflows swap an unknown id for a new one silently
                    for reply in joined_text(replies):
                        yield reply
                    if attempt.stale:
                        return
                    if self._service.clock() >= self._deadline and not attempt.reducer.finished:
                        raise AnswerTooLong(f"the answer ran longer than {self._service.answer_timeout:g}s")
        except ConversationNotFound as exc:
            if attempt.can_start_over:
                attempt.stale = True
                return
            for reply in attempt.reducer.fail(exc):
                yield reply
            return
        except AnswerTimedOut as exc:
            log.warning("answer for %s:%s timed out: %r", self.chat.platform, self.chat.scope, exc)
            await self.stop()
            for reply in attempt.reducer.fail(exc):
                yield reply
            return
        except DifyError as exc:
            log.warning("dify stream for %s:%s failed: %r", self.chat.platform, self.chat.scope, exc)
            for reply in attempt.reducer.fail(exc):
                yield reply
            return
        for reply in attempt.reducer.finish():
            yield reply

    def _replies(self, attempt: _Attempt, event: StreamEvent) -> Iterator[ReplyEvent]:
        """Reply events for one Dify event, up to a sign that the conversation is gone."""
        reducer = attempt.reducer
        for reply in reducer.feed(event):
            if isinstance(reply, TaskStarted):
                self.task_id = reply.task_id
                add_log_context(task_id=reply.task_id)
            if (
                isinstance(reply, Failed)
                and isinstance(reply.error, ConversationNotFound)
                and attempt.can_start_over
                and not reducer.text
            ):
                attempt.stale = True
                return
            yield reply

    async def _save_returned_id(self, attempt: _Attempt) -> bool:
        """Remember a new conversation id Dify returned; True when it replaced the one sent."""
        returned = attempt.reducer.conversation_id
        if not returned or returned == attempt.saved_id or attempt.mode == WORKFLOW_MODE:
            return False
        await self._remember(returned)
        attempt.saved_id = returned
        return bool(attempt.conversation_id)

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
