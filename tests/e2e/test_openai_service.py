"""The OpenAI door inside `dify-bots run`: answers in /metrics, SIGTERM mid-stream, a cheap plug-in import."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import openai
import pytest

from bots.app import BotService
from bots.config import load
from core.errors import Interrupted
from core.texts import friendly_error
from tests.e2e.openai_harness import KEY, post_stream, sse_data, stream_text, user
from tests.fakes.dify import Answer, Events, FakeDify, HttpError, ReplyContext, Step, Transcript, spaced

GRACE = 1.0
EXIT_WITHIN = GRACE + 5.0


@asynccontextmanager
async def openai_service(dify: FakeDify, redis_url: str, key_prefix: str) -> AsyncIterator[BotService]:
    config = load(
        None,
        dify_api_key=dify.api_key,
        dify_base_url=dify.url,
        redis_url=redis_url,
        redis_prefix=key_prefix,
        openai_api_keys=KEY,
        http_host="127.0.0.1",
        http_port=0,
    )
    async with BotService(config, only=frozenset({"openai"})) as service:
        yield service


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_openai_answers_are_counted_in_metrics_by_outcome(redis_url: str, key_prefix: str) -> None:
    async with FakeDify() as dify, openai_service(dify, redis_url, key_prefix) as service:
        base = f"http://127.0.0.1:{service.port}"
        dify.script(
            Answer("A streamed answer.", delay=0.01),
            Answer("A whole answer."),
            HttpError(400, "provider_quota_exceeded", "quota used up"),
        )
        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0) as client:
            text, _ = await stream_text(client, messages=[user("one")])
            completion = await client.chat.completions.create(model="dify", messages=[user("two")])
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="dify", messages=[user("three")])
        assert (text, completion.choices[0].message.content) == ("A streamed answer.", "A whole answer.")
        status, metrics = await get(f"{base}/metrics")
    assert status == 200
    assert 'difybots_answers_total{outcome="done",platform="openai"} 2.0' in metrics
    assert 'difybots_answers_total{outcome="failed",platform="openai"} 1.0' in metrics
    assert 'difybots_first_text_seconds_count{platform="openai"} 2.0' in metrics
    assert 'difybots_answer_seconds_count{platform="openai"} 3.0' in metrics
    assert 'difybots_dify_errors_total{code="provider_quota_exceeded"} 1.0' in metrics
    assert 'difybots_answers_in_flight{platform="openai"} 0.0' in metrics


# ---- a real process ----------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def words_with_task(words: list[str], tasks: list[str]) -> Transcript:
    """A slow chat answer, one word every 0.1 s, that notes its Dify task id."""

    def build(ctx: ReplyContext) -> list[Step]:
        tasks.append(ctx.task_id)
        ev = Events(ctx)
        return spaced([*(ev.message(word) for word in words), ev.message_end()], 0.1)

    return Transcript(build)


async def wait_until_ready(url: str, process: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(30):
        while True:
            assert process.returncode is None, "the service exited while starting"
            try:
                if (await get(f"{url}/readyz"))[0] == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_sigterm_mid_stream_ends_it_with_a_final_chunk_and_stops_dify(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    words = [f"word{i} " for i in range(300)]
    tasks: list[str] = []
    port = free_port()
    async with FakeDify() as dify:
        dify.script(words_with_task(words, tasks))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFY_", "TELEGRAM_", "SLACK_", "OPENAI_"))}
        env.update(
            DIFY_API_KEY=dify.api_key,
            DIFY_BASE_URL=dify.url,
            OPENAI_API_KEYS=KEY,
            REDIS_URL=redis_url,
            REDIS_PREFIX=key_prefix,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            SHUTDOWN_GRACE=str(GRACE),
            LOG_LEVEL="WARNING",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "run", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
        )
        try:
            await wait_until_ready(f"http://127.0.0.1:{port}", process)
            loop = asyncio.get_running_loop()
            signalled: list[float] = []

            def on_data(received: bytes) -> None:
                if not signalled and b"word3 " in received:
                    process.send_signal(signal.SIGTERM)
                    signalled.append(loop.time())

            async with asyncio.timeout(EXIT_WITHIN + 10):
                status, body = await post_stream(
                    f"http://127.0.0.1:{port}/v1",
                    {"model": "dify", "messages": [user("a long story")], "stream": True},
                    on_data=on_data,
                )
            _, err = await asyncio.wait_for(process.communicate(), timeout=EXIT_WITHIN)
            exited_after = loop.time() - signalled[0]
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, err.decode()
    assert GRACE <= exited_after < EXIT_WITHIN
    assert status == 200
    payloads = sse_data(body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    final = chunks[-1]["choices"][0]
    assert final["delta"] == {"content": "\n\n" + friendly_error(Interrupted())}
    assert final["finish_reason"] == "stop"
    assert {chunk["choices"][0]["finish_reason"] for chunk in chunks[:-1]} == {None}
    streamed = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks[:-1])
    assert streamed.startswith("word0 word1 word2 word3 ") and len(streamed) < len("".join(words))
    assert len(tasks) == 1 and dify.stops == tasks
    assert KEY not in err.decode() and dify.api_key not in err.decode()


def test_the_plugin_imports_nothing_of_the_endpoint_until_created() -> None:
    probe = (
        "import sys, bots.openai_api, bots.openai_api.plugin\n"
        "heavy = ('bots.openai_api.routes', 'bots.openai_api.relay', 'bots.openai_api.door', 'openai')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
        "from bots.openai_api import OpenAIApi\n"
        "print(OpenAIApi.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "bots.openai_api.routes"]
