"""The answer journal: answers in flight in Redis, a lease per replica, and exactly-once claims of orphans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from core.answer import ReplyEvent, TaskStarted, TextDelta, TextReplace
from core.conversations import ChatKey
from core.keys import RedisKeys
from core.render.surface import (
    MessageSurface,
    SurfaceBlocked,
    SurfaceBusy,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)

log = logging.getLogger(__name__)

DEFAULT_LEASE = 15.0  # seconds a replica's lease lasts without renewal
ENTRY_TTL = 24 * 3600  # an entry nobody cleared or claimed is dropped after a day
OP_TIMEOUT = 2.0  # seconds a journal write may take before the answer stops waiting for it
FINISH_ATTEMPTS = 5
MAX_FINISH_PAUSE = 30.0

# Take over an entry only from the owner the claimer saw: two claimers can never both succeed.
_CLAIM = (
    "if redis.call('hget', KEYS[1], 'owner') == ARGV[1] then "
    "redis.call('hset', KEYS[1], 'owner', ARGV[2]) return 1 end return 0"
)

Recover = Callable[["JournalEntry"], Awaitable[None]]
Handle = int | str


@dataclass(frozen=True, slots=True)
class JournalMessage:
    """One message the answer put in the chat: its handle and the Markdown it last showed (no cursor)."""

    handle: Handle
    markdown: str
    text: bool  # False: it showed a status line or placeholder, not answer text


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One answer in flight as the journal knows it."""

    answer_id: str
    owner: str
    chat: ChatKey
    origin: Mapping[str, Any]
    task_id: str | None
    dify_user: str | None
    messages: tuple[JournalMessage, ...]

    @property
    def started(self) -> bool:
        """Dify accepted the message (a task id is known)."""
        return self.task_id is not None


def _decode(answer_id: str, raw: Mapping[str, str]) -> JournalEntry | None:
    try:
        head = json.loads(raw["head"])
        chat = ChatKey(platform=str(head["platform"]), scope=str(head["scope"]), user=str(head["user"]))
        indexed = sorted((int(name[1:]), value) for name, value in raw.items() if name.startswith("m"))
        messages = []
        for _, value in indexed:
            handle, markdown, has_text = json.loads(value)
            messages.append(JournalMessage(handle=handle, markdown=str(markdown), text=bool(has_text)))
        return JournalEntry(
            answer_id=answer_id,
            owner=raw.get("owner", ""),
            chat=chat,
            origin=dict(head.get("origin") or {}),
            task_id=raw.get("task") or None,
            dify_user=raw.get("dify_user") or None,
            messages=tuple(messages),
        )
    except (KeyError, ValueError, TypeError):
        log.warning("dropping an unreadable journal entry %s", answer_id)
        return None


class Journal:
    """Answers in flight, shared by every replica on the same Redis (decode_responses=True) and prefix."""

    def __init__(
        self,
        redis: Redis,
        *,
        keys: RedisKeys,
        lease: float = DEFAULT_LEASE,
        owner: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lease = lease
        self.owner = owner or secrets.token_hex(8)
        self._renewer: asyncio.Task[None] | None = None
        self._claimer: asyncio.Task[None] | None = None
        self._recoveries: set[asyncio.Task[None]] = set()
        self._dirty: dict[JournalWriter, None] = {}  # answers with frames to write, in order
        self._flusher: asyncio.Task[None] | None = None

    # ---- lease ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take this replica's lease and keep renewing it (a Redis outage only logs)."""
        await self._renew_once()
        self._renewer = asyncio.create_task(self._renew(), name="journal lease")

    async def _renew_once(self) -> None:
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                await self.redis.set(self.keys.journal_owner(self.owner), "1", px=int(self.lease * 1000))
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            log.warning("could not renew the journal lease: %r", exc)

    async def _renew(self) -> None:
        # Python 3.11's wait_for (redis-py sends through it) can swallow a cancellation: the loop also ends
        # once it is no longer this journal's renewer, so stopping it never waits forever.
        while self._renewer is asyncio.current_task():
            await asyncio.sleep(self.lease / 3)
            await self._renew_once()

    async def close(self) -> None:
        """Stop claiming and renewing, and give the lease up (answers left are then orphans)."""
        await self.stop_claiming()
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), OP_TIMEOUT)
            self._flusher.cancel()
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(RedisError, RedisClusterException, OSError, TimeoutError):
                await asyncio.wait_for(self.redis.delete(self.keys.journal_owner(self.owner)), OP_TIMEOUT)

    # ---- writing --------------------------------------------------------------------------------

    def open(self, *, chat: ChatKey, origin: Mapping[str, Any]) -> JournalWriter:
        """Start journaling one answer (the write happens in the background)."""
        return JournalWriter(self, chat=chat, origin=origin)

    def _schedule(self, writer: JournalWriter) -> None:
        self._dirty[writer] = None
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="journal writes")

    async def _flush(self) -> None:
        """Write the pending fields of every answer, one pipeline per round trip: the frames of all answers
        in flight share it instead of taking a round trip each."""
        await asyncio.sleep(0)  # frames delivered at the same moment go together
        while self._dirty:
            writers, self._dirty = list(self._dirty), {}
            landed = asyncio.get_running_loop().create_future()
            batch = [(writer, fields) for writer in writers if (fields := writer._take(landed))]
            if not batch:
                landed.set_result(None)
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for writer, fields in batch:
                        pipe.hset(writer._key, mapping=cast("Mapping[Any, Any]", fields))
                    await asyncio.wait_for(pipe.execute(), OP_TIMEOUT)
            except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
                log.warning("answer journal unavailable for %d answers: %r", len(batch), exc)
                for writer, _ in batch:
                    writer._broken = True
            finally:
                landed.set_result(None)

    # ---- claiming -------------------------------------------------------------------------------

    def start_claiming(self, recover: Recover, *, platforms: Collection[str], interval: float | None = None) -> None:
        """Look for orphans now and every `interval` seconds; `recover` finishes each one claimed."""
        every = interval if interval is not None else max(0.2, min(5.0, self.lease / 2))
        self._claimer = asyncio.create_task(self._claim_loop(recover, frozenset(platforms), every), name="journal")

    async def stop_claiming(self) -> None:
        claimer, self._claimer = self._claimer, None
        if claimer is not None:
            claimer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claimer
        if self._recoveries:
            await asyncio.wait(self._recoveries, timeout=OP_TIMEOUT * 5)
        for task in list(self._recoveries):
            task.cancel()

    async def _claim_loop(self, recover: Recover, platforms: frozenset[str], every: float) -> None:
        while self._claimer is asyncio.current_task():  # see _renew
            try:
                for entry in await self.claim_orphans(platforms=platforms):
                    task = asyncio.create_task(self._finish(entry, recover), name=f"recover {entry.answer_id}")
                    self._recoveries.add(task)
                    task.add_done_callback(self._recoveries.discard)
            except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
                log.warning("could not look for interrupted answers: %r", exc)
            await asyncio.sleep(every)

    async def _finish(self, entry: JournalEntry, recover: Recover) -> None:
        log.info("finishing answer %s left by replica %s in %s", entry.answer_id, entry.owner, entry.chat.scope)
        if not entry.started:
            await self.clear(entry.answer_id)  # answered again now, under a new entry of its own
        try:
            await recover(entry)
        except Exception:
            log.exception("could not finish interrupted answer %s", entry.answer_id)
        if entry.started:
            await self.clear(entry.answer_id)

    async def claim_orphans(self, *, platforms: Collection[str]) -> list[JournalEntry]:
        """Entries whose owner's lease expired, now owned by this replica (each claimed by exactly one)."""
        index = self.keys.journal_index()
        ids = sorted(str(answer_id) for answer_id in await self.redis.smembers(index))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for answer_id in ids:
                pipe.hget(self.keys.journal_entry(answer_id), "owner")
            owners = [None if owner is None else str(owner) for owner in await pipe.execute()]
        gone = [answer_id for answer_id, owner in zip(ids, owners, strict=True) if owner is None]
        if gone:
            await self.redis.srem(index, *gone)
        others = sorted({owner for owner in owners if owner is not None and owner != self.owner})
        if not others:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for owner in others:
                pipe.exists(self.keys.journal_owner(owner))
            alive = {owner for owner, exists in zip(others, await pipe.execute(), strict=True) if exists}
        claimed: list[JournalEntry] = []
        for answer_id, seen in zip(ids, owners, strict=True):
            if seen is None or seen == self.owner or seen in alive:
                continue
            entry = await self.claim(answer_id, previous=seen)
            if entry is not None and entry.chat.platform in platforms:
                claimed.append(entry)
            elif entry is not None:
                await self._give_back(entry)
        return claimed

    async def claim(self, answer_id: str, *, previous: str) -> JournalEntry | None:
        """Take the entry over from `previous` (atomically); None when another replica was first."""
        key = self.keys.journal_entry(answer_id)
        won = await self.redis.eval(_CLAIM, 1, key, previous, self.owner)
        if not won:
            return None
        raw = {str(name): str(value) for name, value in (await self.redis.hgetall(key)).items()}
        entry = _decode(answer_id, raw)
        if entry is None:
            await self.clear(answer_id)
            return None
        return replace(entry, owner=previous)

    async def _give_back(self, entry: JournalEntry) -> None:
        """This replica has no door for the entry's platform: leave it to one that has."""
        await self.redis.eval(_CLAIM, 1, self.keys.journal_entry(entry.answer_id), self.owner, entry.owner)

    async def clear(self, answer_id: str) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.keys.journal_entry(answer_id))
                pipe.srem(self.keys.journal_index(), answer_id)
                await asyncio.wait_for(pipe.execute(), OP_TIMEOUT)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            log.warning("could not clear journal entry %s: %r", answer_id, exc)


class JournalWriter:
    """One answer's entry: written when it starts, on each delivered frame (coalesced), deleted at the end.

    Frames are written in the background by the journal, in one pipeline with other answers' frames; a
    failing Redis disables the entry, never the answer."""

    def __init__(self, journal: Journal, *, chat: ChatKey, origin: Mapping[str, Any]) -> None:
        self._journal = journal
        self.answer_id = secrets.token_hex(10)
        self._key = journal.keys.journal_entry(self.answer_id)
        head = {"platform": chat.platform, "scope": chat.scope, "user": chat.user, "origin": dict(origin)}
        self._pending: dict[str, str] = {"owner": journal.owner, "head": json.dumps(head, ensure_ascii=False)}
        self._created = False
        self._broken = False
        self._closed = False
        self._has_text = False
        self._landing: asyncio.Future[None] | None = None  # the journal's write holding our last fields

    async def begin(self) -> None:
        """Write the entry before Dify is asked, so that a crash from here on finds it."""
        fields, self._pending = self._pending, {}
        try:
            async with self._journal.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self._key, mapping=cast("Mapping[Any, Any]", fields))
                pipe.expire(self._key, ENTRY_TTL)
                pipe.sadd(self._journal.keys.journal_index(), self.answer_id)
                await asyncio.wait_for(pipe.execute(), OP_TIMEOUT)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            log.warning("answer journal unavailable for this answer: %r", exc)
            self._broken = True
            return
        self._created = True
        self._kick()  # anything noted meanwhile

    def frame(self, index: int, handle: Any, markdown: str, final: bool) -> None:
        """The renderer delivered a frame to message `index` (the renderer's on_frame hook)."""
        handle_id = handle if isinstance(handle, int | str) else str(handle)
        self._pending[f"m{index}"] = json.dumps([handle_id, markdown, self._has_text], ensure_ascii=False)
        self._kick()

    def task_started(self, task_id: str, user: str) -> None:
        self._pending["task"] = task_id
        self._pending["dify_user"] = user
        self._kick()

    async def watch(self, events: AsyncIterable[ReplyEvent], user: Callable[[], str]) -> AsyncIterator[ReplyEvent]:
        """Pass the answer's events on, noting Dify's task id and whether text has arrived."""
        async for event in events:
            if isinstance(event, TaskStarted):
                self.task_started(event.task_id, user())
            elif isinstance(event, TextDelta | TextReplace):
                self._has_text = True
            yield event

    def _kick(self) -> None:
        if self._created and not self._broken and not self._closed and self._pending:
            self._journal._schedule(self)  # before begin() there is nothing to update; after a failure, no journal

    def _take(self, landing: asyncio.Future[None]) -> dict[str, str]:
        """The fields to write now (none once closed or broken); `landing` completes when they are written."""
        if self._closed or self._broken:
            return {}
        fields, self._pending = self._pending, {}
        if fields:
            self._landing = landing
        return fields

    async def close(self) -> None:
        """The answer reached its final frame: drop the entry."""
        self._closed = True
        self._pending = {}
        landing = self._landing
        if landing is not None and not landing.done():  # a write still on its way must not revive the entry
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(landing), OP_TIMEOUT)
        if self._created:
            await self._journal.clear(self.answer_id)


async def end_interrupted(surface: MessageSurface, messages: Sequence[JournalMessage], *, note: str) -> None:
    """End a half-written answer on `surface`: its last message shows its text so far plus `note`, no cursor
    (a status placeholder is replaced by `note`; with nothing shown yet, `note` is sent)."""
    last = messages[-1] if messages else None
    body = last.markdown.rstrip() if last is not None and last.text else ""
    for _ in range(FINISH_ATTEMPTS):
        try:
            if last is None:
                await surface.send(note, final=True)
                return
            try:
                await surface.edit(last.handle, f"{body}\n\n{note}" if body else note, final=True)
            except SurfaceTooLong:
                await surface.edit(last.handle, body, final=True)
                await surface.send(note, final=True)
            return
        except SurfaceMessageGone:
            last, body = None, ""
        except SurfaceBlocked:
            return  # the bot may not write here any more
        except SurfaceRateLimited as exc:
            await asyncio.sleep(min(exc.retry_after, MAX_FINISH_PAUSE))
        except SurfaceBusy as exc:
            await asyncio.sleep(min(exc.retry_after, MAX_FINISH_PAUSE))
        except SurfaceTransient:
            await asyncio.sleep(0.5)
    log.warning("could not end an interrupted answer after %d attempts", FINISH_ATTEMPTS)
