"""DifyClient + AnswerReducer against the fake Dify over real sockets: every transcript, errors, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.answer import (
    AnswerReducer,
    Done,
    Failed,
    Files,
    Progress,
    ReplyEvent,
    TaskStarted,
    TextDelta,
    TextReplace,
)
from core.dify import errors
from core.dify.client import DifyClient
from tests.fakes.dify import DropBeforeHeaders, FakeDify, HtmlError, HttpError, Transcript
from tests.fakes.dify_transcripts import EXPECTED_ANSWERS, EXPECTED_OUTCOME, MODES, TRANSCRIPTS

NO_WAIT: tuple[float, ...] = (0.0, 0.0)


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


def client_for(fake: FakeDify, **kwargs: object) -> DifyClient:
    options: dict[str, object] = {"retry_delays": NO_WAIT}
    options.update(kwargs)
    return DifyClient(base_url=fake.url, api_key=fake.api_key, **options)  # type: ignore[arg-type]


async def run(
    client: DifyClient,
    query: str = "hi",
    user: str = "u1",
    conversation_id: str | None = None,
    workflow_output: str = "",
) -> list[ReplyEvent]:
    reducer = AnswerReducer(mode=await client.app_mode(), workflow_output=workflow_output)
    out: list[ReplyEvent] = []
    try:
        async for batch in client.stream_batches(query=query, user=user, conversation_id=conversation_id):
            for event in batch:
                out += reducer.feed(event)
    except errors.DifyError as exc:
        out += reducer.fail(exc)
    out += reducer.finish()
    return out


def visible_text(events: list[ReplyEvent]) -> str:
    shown = ""
    for event in events:
        if isinstance(event, TextDelta):
            shown += event.text
        elif isinstance(event, TextReplace):
            shown = event.text
    return shown


def outcome(event: ReplyEvent) -> str:
    if isinstance(event, Done):
        return "stopped" if event.stopped else "done"
    assert isinstance(event, Failed)
    kind = {
        errors.DifyProviderError: "error:completion_request_error",
        errors.DifyRunFailed: "error:workflow_failed",
        errors.DifyBadRequest: "error:invalid_param",
        errors.DifyTransportError: "error:transport",
        errors.DifyProtocolError: "unknown",
    }
    return kind[type(event.error)]


@pytest.mark.parametrize("name", sorted(TRANSCRIPTS))
async def test_every_transcript_reduces_to_the_right_answer(dify: FakeDify, name: str) -> None:
    dify.mode = MODES[name]
    dify.script(Transcript(TRANSCRIPTS[name]))
    async with client_for(dify) as client:
        events = await run(client)
    assert visible_text(events) == EXPECTED_ANSWERS[name]
    expected = EXPECTED_OUTCOME[name]
    if name in ("chatflow_llm_failed", "workflow_failed"):
        expected = "error:completion_request_error"  # "[openai] ... Error" in a failed run is the provider's
    if name == "chatflow_failed_before_start":
        expected = "error:invalid_param"  # "query is required": classified like its HTTP 400 twin
    assert outcome(events[-1]) == expected
    assert sum(isinstance(e, Done | Failed) for e in events) == 1
    if isinstance(events[-1], Failed):
        assert events[-1].partial == EXPECTED_ANSWERS[name]


async def test_agent_progress_and_files(dify: FakeDify) -> None:
    dify.mode = "agent-chat"
    dify.script(Transcript(TRANSCRIPTS["agent_with_image_file"]))
    async with client_for(dify) as client:
        events = await run(client)
    assert [e.label for e in events if isinstance(e, Progress)] == ["Current Time"] or any(
        isinstance(e, Progress) and e.kind == "tool" for e in events
    )
    files = [f for e in events if isinstance(e, Files) for f in e.files]
    assert files and files[0].type == "image" and files[0].url.startswith("/files/tools/")


async def test_repeated_thought_ids_give_one_progress_line(dify: FakeDify) -> None:
    dify.mode = "agent-chat"
    dify.script(Transcript(TRANSCRIPTS["agent_with_tool"]))
    async with client_for(dify) as client:
        events = await run(client)
    assert [e for e in events if isinstance(e, Progress)] == [Progress(kind="tool", label="Current Time")]


async def test_done_carries_ids_usage_and_citations(dify: FakeDify) -> None:
    dify.script(Transcript(TRANSCRIPTS["chat_with_citations"]))
    async with client_for(dify) as client:
        events = await run(client)
    done = events[-1]
    assert isinstance(done, Done)
    assert done.conversation_id in dify.conversations
    assert done.usage.total_tokens == 524 and str(done.usage.total_price) == "0.000084"
    assert done.usage.currency == "USD"
    assert [c.title for c in done.citations] == ["refunds.md"]
    assert isinstance(events[0], TaskStarted)


async def test_chatflow_aggregates_run_metadata(dify: FakeDify) -> None:
    dify.mode = "advanced-chat"
    dify.script(Transcript(TRANSCRIPTS["chatflow"]))
    async with client_for(dify) as client:
        events = await run(client)
    done = events[-1]
    assert isinstance(done, Done) and done.usage.steps > 0 and done.usage.elapsed is not None


async def test_workflow_uses_configured_input_and_output(dify: FakeDify) -> None:
    dify.mode = "workflow"
    async with client_for(dify, workflow_input="question") as client:
        events = await run(client, query="summarise")
    assert dify.chat_requests()[-1]["inputs"] == {"question": "summarise"}
    assert isinstance(events[-1], Done)


async def test_mode_is_detected_once(dify: FakeDify) -> None:
    async with client_for(dify) as client:
        await run(client)
        await run(client)
    assert [r.path for r in dify.requests].count("/v1/info") == 1


@pytest.mark.parametrize(
    ("reply", "error_type"),
    [
        (HttpError(401, "unauthorized", "Access token is invalid"), errors.DifyAuthError),
        (HttpError(403, "forbidden", "The app's API service has been disabled."), errors.DifyAppUnavailable),
        (HttpError(400, "provider_quota_exceeded", "Your quota ... exhausted."), errors.DifyQuotaExceeded),
        (
            HttpError(429, "rate_limit_error", "Workflow execution quota limit reached"),
            errors.DifyQuotaExceeded,
        ),
        (HttpError(400, "app_unavailable", "App unavailable"), errors.DifyAppUnavailable),
        (HttpError(400, "invalid_param", "x is required in input form"), errors.DifyBadRequest),
        (HttpError(400, "model_currently_not_support", "no"), errors.DifyAppUnavailable),
    ],
)
async def test_http_errors_are_typed_and_not_retried(
    dify: FakeDify, reply: HttpError, error_type: type[errors.DifyError]
) -> None:
    dify.script(reply, Transcript(TRANSCRIPTS["chat_with_citations"]))
    async with client_for(dify) as client:
        events = await run(client)
    assert isinstance(events[-1], Failed) and type(events[-1].error) is error_type
    assert len(dify.chat_requests()) == 1


@pytest.mark.parametrize(
    "first",
    [
        HttpError(429, "too_many_requests", "Too many requests."),
        HtmlError(502),
        DropBeforeHeaders(),
        HttpError(500, "internal_server_error", "boom"),
    ],
)
async def test_retryable_failures_before_the_stream_are_retried(dify: FakeDify, first: object) -> None:
    dify.script(first, Transcript(TRANSCRIPTS["chat_with_citations"]))  # type: ignore[arg-type]
    async with client_for(dify) as client:
        events = await run(client)
    assert visible_text(events) == EXPECTED_ANSWERS["chat_with_citations"]
    assert len(dify.chat_requests()) == 2


async def test_retries_stop_after_two(dify: FakeDify) -> None:
    dify.script(*[HtmlError(502)] * 3, Transcript(TRANSCRIPTS["chat_with_citations"]))
    async with client_for(dify) as client:
        events = await run(client)
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, errors.DifyServerError)
    assert len(dify.chat_requests()) == 3


async def test_a_dropped_stream_is_never_retried(dify: FakeDify) -> None:
    dify.script(Transcript(TRANSCRIPTS["dropped_mid_stream"]))
    async with client_for(dify) as client:
        events = await run(client)
    assert isinstance(events[-1], Failed) and len(dify.chat_requests()) == 1


async def test_malformed_event_json_is_a_protocol_error_keeping_partial_text(dify: FakeDify) -> None:
    def build(ctx: object) -> list[object]:
        return [
            b'data: {"event":"message","answer":"Half","conversation_id":"c","task_id":"t"}\n\n',
            b"data: {not json\n\n",
        ]

    dify.script(Transcript(build))  # type: ignore[arg-type]
    async with client_for(dify) as client:
        events = await run(client)
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, errors.DifyProtocolError)
    assert events[-1].partial == "Half"


async def test_unreachable_dify_is_a_transport_error() -> None:
    async with DifyClient(
        base_url="http://127.0.0.1:1/v1", api_key="app-x", app_mode="chat", retry_delays=NO_WAIT
    ) as client:
        events = await run(client)
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, errors.DifyTransportError)


async def test_stop_and_delete(dify: FakeDify) -> None:
    async with client_for(dify) as client:
        events = await run(client, user="u9")
        done = events[-1]
        assert isinstance(done, Done) and done.conversation_id and done.task_id
        await client.stop(task_id=done.task_id, user="u9")
        await client.delete_conversation(conversation_id=done.conversation_id, user="u9")
        with pytest.raises(errors.ConversationNotFound):
            await client.delete_conversation(conversation_id=done.conversation_id, user="u9")
    assert dify.stops == [done.task_id]
