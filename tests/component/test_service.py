"""ChatService with the fake Dify and real Redis: conversations saved, resent, serialized, reset, recovered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.answer import ContextReset, Done, Failed, ReplyEvent, TextDelta
from core.conversations import ChatKey, Conversation, ConversationStore
from core.dify.client import DifyClient
from core.errors import StoreUnavailable
from core.service import ChatService
from tests.fakes.dify import Answer, FakeDify, HttpError

CHAT = ChatKey(platform="telegram", scope="tg:1:100", user="tg-7")


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


@pytest.fixture
async def service(dify: FakeDify, store: ConversationStore) -> AsyncIterator[ChatService]:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, retry_delays=(0, 0)) as client:
        yield ChatService(dify=client, store=store, lock_wait=10)


async def ask(service: ChatService, text: str, chat: ChatKey = CHAT) -> list[ReplyEvent]:
    async with service.reply(chat, text) as stream:
        return [event async for event in stream]


def answer_of(events: list[ReplyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_returned_conversation_is_saved_and_resent_with_the_same_user(
    service: ChatService, dify: FakeDify, store: ConversationStore
) -> None:
    first = await ask(service, "hello")
    assert answer_of(first) == "echo: hello"
    saved = await store.get(CHAT)
    assert saved is not None and saved.user == "tg-7" and dify.conversations[saved.conversation_id] == "tg-7"
    await ask(service, "again")
    requests = dify.chat_requests()
    assert requests[0]["conversation_id"] == "" and requests[0]["user"] == "tg-7"
    assert requests[1]["conversation_id"] == saved.conversation_id and requests[1]["user"] == "tg-7"
    assert len(dify.conversations) == 1


async def test_stored_user_wins_over_the_current_sender(service: ChatService, dify: FakeDify) -> None:
    await ask(service, "one")
    other_sender = ChatKey(platform=CHAT.platform, scope=CHAT.scope, user="tg-8")
    events = await ask(service, "two", other_sender)
    assert isinstance(events[-1], Done)
    assert [r["user"] for r in dify.chat_requests()] == ["tg-7", "tg-7"]


async def test_concurrent_messages_share_one_conversation_in_order(service: ChatService, dify: FakeDify) -> None:
    dify.script(Answer("first answer", delay=0.05), Answer("second answer"))
    results = await asyncio.gather(ask(service, "first"), ask(service, "second"))
    assert [answer_of(r) for r in results] == ["first answer", "second answer"]
    assert [r["query"] for r in dify.chat_requests()] == ["first", "second"]
    assert len(dify.conversations) == 1


async def test_reset_starts_a_new_conversation(service: ChatService, dify: FakeDify) -> None:
    await ask(service, "one")
    assert await service.reset(CHAT) is True
    assert await service.reset(CHAT) is False
    await ask(service, "two")
    assert dify.chat_requests()[1]["conversation_id"] == ""
    assert len(dify.conversations) == 2


async def test_stale_conversation_recovers_by_itself(
    service: ChatService, dify: FakeDify, store: ConversationStore
) -> None:
    await store.save(CHAT, Conversation(conversation_id="0e4b6c1e-2a5d-4f3b-9c8a-7d6e5f4a3b2c", user="tg-7"))
    events = await ask(service, "hello")
    assert any(isinstance(e, ContextReset) for e in events)
    assert answer_of(events) == "echo: hello" and isinstance(events[-1], Done)
    saved = await store.get(CHAT)
    assert saved is not None and saved.conversation_id in dify.conversations
    assert [r["conversation_id"] for r in dify.chat_requests()] == [
        "0e4b6c1e-2a5d-4f3b-9c8a-7d6e5f4a3b2c",
        "",
    ]


async def test_chatflow_silently_replacing_the_id_is_noticed(
    service: ChatService, dify: FakeDify, store: ConversationStore
) -> None:
    dify.mode = "advanced-chat"
    await store.save(CHAT, Conversation(conversation_id="0e4b6c1e-2a5d-4f3b-9c8a-7d6e5f4a3b2c", user="tg-7"))
    events = await ask(service, "hello")
    assert sum(isinstance(e, ContextReset) for e in events) == 1
    saved = await store.get(CHAT)
    assert saved is not None and saved.conversation_id in dify.conversations


async def test_dify_error_is_a_failed_event(service: ChatService, dify: FakeDify) -> None:
    dify.script(HttpError(400, "provider_quota_exceeded", "quota"))
    events = await ask(service, "hello")
    assert isinstance(events[-1], Failed)


async def test_redis_outage_fails_politely_and_loses_nothing(dify: FakeDify) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    store = ConversationStore(dead, app="a", ttl=60, prefix="x")
    try:
        async with DifyClient(base_url=dify.url, api_key=dify.api_key) as client:
            events = await ask(ChatService(dify=client, store=store), "hello")
    finally:
        await dead.aclose()
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert isinstance(events[0].error, StoreUnavailable)
    assert dify.chat_requests() == []  # nothing half-done in Dify


async def test_stop_reaches_dify_with_the_same_user(service: ChatService, dify: FakeDify) -> None:
    dify.script(Answer("a b c d e f g h", delay=0.05))
    async with service.reply(CHAT, "long") as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                await stream.stop()
                break
    assert dify.stops == [stream.task_id]
