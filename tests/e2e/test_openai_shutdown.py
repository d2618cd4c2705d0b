"""Shutdown of the OpenAI-compatible API: interrupted answers end at once, new completions get a 503."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from core.answering import AnswerReport
from core.conversations import ConversationStore
from core.errors import Interrupted
from core.texts import friendly_error
from tests.e2e.openai_harness import eventually, post_stream, running_api, sse_data, user
from tests.fakes.dify import Answer, Delay, Events, ReplyContext, Step, Transcript

SILENCE = 60.0  # Dify goes quiet this long; an interrupted answer must end long before
PROMPTLY = 10.0


def silent_after(text: str, tasks: list[str]) -> Transcript:
    """A chat transcript: one `message` (empty text still names the task), a long silence, then message_end."""

    def build(ctx: ReplyContext) -> list[Step]:
        tasks.append(ctx.task_id)
        ev = Events(ctx)
        return [ev.message(text), Delay(SILENCE), ev.message_end()]

    return Transcript(build)


async def test_shutdown_mid_stream_ends_with_a_final_chunk_and_done_while_dify_is_silent(
    store: ConversationStore,
) -> None:
    tasks: list[str] = []
    reports: list[AnswerReport] = []
    drains: list[asyncio.Task[None]] = []
    async with running_api(store) as api:
        api.pipeline.observe(reports.append)
        api.dify.script(silent_after("Half an answer", tasks))

        def on_data(received: bytes) -> None:
            if not drains and b"Half an answer" in received:
                drains.append(asyncio.create_task(api.pipeline.drain(0)))

        async with asyncio.timeout(PROMPTLY):
            status, body = await post_stream(
                api.url, {"model": "dify", "messages": [user("long story")], "stream": True}, on_data=on_data
            )
            await drains[0]
        assert api.pipeline.in_flight() == 0
        assert len(tasks) == 1 and api.dify.stops == tasks  # the Dify task was stopped too
    assert status == 200
    payloads = sse_data(body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Half an answer"},
        {"content": "\n\n" + friendly_error(Interrupted())},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, "stop"]
    [report] = reports
    assert (report.platform, report.stats.outcome, report.task_id) == ("openai", "interrupted", tasks[0])
    assert isinstance(report.stats.error, Interrupted)
    stats = report.stats
    assert stats.first_text_at is not None and stats.final_at is not None
    assert stats.started_at <= stats.first_text_at <= stats.final_at


@pytest.mark.parametrize(("stream", "text"), [(False, "Half an answer"), (True, "")], ids=["blocking", "no-text-yet"])
async def test_shutdown_before_anything_was_sent_is_a_503(store: ConversationStore, stream: bool, text: str) -> None:
    tasks: list[str] = []
    async with running_api(store) as api, api.client() as client:
        api.dify.script(silent_after(text, tasks))
        request = asyncio.create_task(
            client.chat.completions.create(model="dify", messages=[user("q")], stream=stream, user="carol")
        )
        async with asyncio.timeout(PROMPTLY):
            # The bot saves the conversation once it has read the first event, which names the task.
            while not await api.stored_conversations():
                await asyncio.sleep(0.02)
            await api.pipeline.drain(0)
            with pytest.raises(openai.InternalServerError) as caught:
                await request
        assert len(tasks) == 1 and api.dify.stops == tasks
    assert caught.value.status_code == 503
    assert caught.value.body == {
        "message": friendly_error(Interrupted()),
        "type": "server_error",
        "param": None,
        "code": "service_unavailable",
    }


async def test_after_stop_intake_new_completions_get_a_503_and_answers_in_flight_finish(
    store: ConversationStore,
) -> None:
    async with running_api(store) as api, api.client() as client:
        api.dify.script(Answer("slow but complete", delay=0.05))
        first = asyncio.create_task(client.chat.completions.create(model="dify", messages=[user("first")]))
        await eventually(lambda: api.pipeline.in_flight() == 1)
        api.api.stop_intake()
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="dify", messages=[user("second")], stream=True)
        assert (await first).choices[0].message.content == "slow but complete"
        assert [request["query"] for request in api.dify.chat_requests()] == ["first"]
        assert (await client.models.list()).data[0].id == "dify"  # only new answers are refused
    assert caught.value.status_code == 503
    assert caught.value.body == {
        "message": "The service is restarting. Please retry in a moment.",
        "type": "server_error",
        "param": None,
        "code": "service_unavailable",
    }
    assert caught.value.response.headers["x-should-retry"] == "true"
