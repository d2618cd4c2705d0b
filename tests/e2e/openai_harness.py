"""The OpenAI-compatible API on a real socket, wired to the fake Dify and real Redis, plus stream helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
from aiohttp import web

from bots.openai_api.routes import OpenAIApi, chat_key
from core.answering import AnswerPipeline
from core.conversations import ConversationStore
from core.dify.client import DifyClient
from core.service import ChatService
from tests.fakes.dify import FakeDify

KEY = "sk-test-key-1"
OTHER_KEY = "sk-test-key-2"
NOW = 1_700_000_000.0


@dataclass
class Api:
    dify: FakeDify
    store: ConversationStore
    port: int
    pipeline: AnswerPipeline
    api: OpenAIApi

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @asynccontextmanager
    async def client(self, key: str = KEY) -> AsyncIterator[openai.AsyncOpenAI]:
        async with openai.AsyncOpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=20.0) as client:
            yield client

    async def raw(
        self, method: str, path: str, *, body: Any = None, data: bytes | None = None, key: str | None = KEY
    ) -> tuple[int, bytes, str]:
        """One plain HTTP call: status, body and content type."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.url}{path}", json=body, data=data, headers=headers) as response,
        ):
            return response.status, await response.read(), response.content_type

    async def stored_conversations(self) -> list[str]:
        keys: list[str] = await self.store.redis.keys(self.store.key(chat_key("*")))
        return keys


@asynccontextmanager
async def running_api(
    store: ConversationStore,
    *,
    dify: FakeDify | None = None,
    keys: Sequence[str] = (KEY, OTHER_KEY),
    lock_wait: float = 120.0,
    **options: Any,
) -> AsyncIterator[Api]:
    async with (
        dify or FakeDify() as fake,
        DifyClient(base_url=fake.url, api_key=fake.api_key, retry_delays=(0, 0)) as client,
    ):
        pipeline = AnswerPipeline(ChatService(dify=client, store=store, lock_wait=lock_wait))
        api = OpenAIApi(pipeline=pipeline, keys=keys, clock=lambda: NOW, **options)
        app = web.Application()
        api.register(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            yield Api(dify=fake, store=store, port=int(runner.addresses[0][1]), pipeline=pipeline, api=api)
        finally:
            await runner.cleanup()
        assert fake.server_errors == []


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def sse_data(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, checking every frame is one data line and a blank line."""
    frames = body.decode().split("\n\n")
    assert frames[-1] == ""
    payloads = []
    for frame in frames[:-1]:
        assert frame.startswith("data: ") and "\n" not in frame, frame
        payloads.append(frame[len("data: ") :])
    return payloads


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def stream_text(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[str, list[Any]]:
    stream = await client.chat.completions.create(model="dify", stream=True, **kwargs)
    chunks = [chunk async for chunk in stream]
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices), chunks


async def post_stream(
    url: str, body: dict[str, Any], *, key: str = KEY, on_data: Callable[[bytes], None] = lambda data: None
) -> tuple[int, bytes]:
    """POST a streaming completion and read it to the end, calling `on_data(body so far)` after every read."""
    received = b""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        async for data in response.content.iter_any():
            received += data
            on_data(received)
        return response.status, received
