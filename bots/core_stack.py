"""Open the shared core (Redis, store, Dify client, ChatService) from settings, owning their lifetimes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from core.conversations import ConversationStore, app_fingerprint
from core.dify.client import DifyClient
from core.dify.parameters import ParametersCache
from core.redis_connection import open_redis
from core.service import ChatService
from core.settings import Settings
from core.shared_budgets import SharedBudgets


@dataclass(frozen=True, slots=True)
class CoreStack:
    settings: Settings
    redis: Redis
    store: ConversationStore
    dify: DifyClient
    service: ChatService
    budgets: SharedBudgets  # platform rate budgets shared by every replica


def dify_client(settings: Settings) -> DifyClient:
    return DifyClient(
        base_url=settings.dify_base_url,
        api_key=settings.dify_api_key.get_secret_value(),
        connect_timeout=settings.dify_connect_timeout,
        read_timeout=settings.dify_read_timeout,
        idle_timeout=settings.dify_idle_timeout,
        app_mode=settings.dify_app_mode,
        workflow_input=settings.dify_workflow_input,
    )


@asynccontextmanager
async def open_core(settings: Settings) -> AsyncIterator[CoreStack]:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis(url=settings.redis_url, data_dir=settings.data_dir))
        store = ConversationStore(
            redis,
            app=app_fingerprint(base_url=settings.dify_base_url, api_key=settings.dify_api_key.get_secret_value()),
            ttl=settings.conversation_ttl,
            prefix=settings.redis_prefix,
        )
        dify = await stack.enter_async_context(dify_client(settings))
        service = ChatService(
            dify=dify,
            store=store,
            workflow_output=settings.dify_workflow_output,
            lock_wait=settings.lock_timeout,
            answer_timeout=settings.answer_timeout,
            parameters=ParametersCache(dify),
            files_url=settings.dify_files_url,
        )
        budgets = SharedBudgets(redis, store.keys)
        yield CoreStack(settings=settings, redis=redis, store=store, dify=dify, service=service, budgets=budgets)
