"""The fake Dify server speaks the wire protocol of reference/dify-api.md over a real socket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from tests.fakes import dify_transcripts
from tests.fakes.dify import (
    PING,
    Answer,
    Delay,
    DropBeforeHeaders,
    FakeDify,
    HtmlError,
    HttpError,
    ReplyContext,
    SplitWrite,
    Step,
    StreamError,
    Transcript,
)

AUTH = {"Authorization": "Bearer app-test-key"}
USER = "tg:123456789"
Event = dict[str, Any] | str  # a parsed data event, or "ping"


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat_body(query: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"inputs": {}, "query": query, "response_mode": "streaming", "user": USER, **extra}


def parse(raw: bytes) -> list[Event]:
    """Strict framing check: `data: <compact json>` or `event: ping`, each ended by a blank line."""
    text = raw.decode()
    assert text.endswith("\n\n")
    events: list[Event] = []
    for block in text[:-2].split("\n\n"):
        if block == "event: ping":
            events.append("ping")
            continue
        assert block.startswith("data: ") and "\n" not in block, block[:200]
        payload = json.loads(block[len("data: ") :])
        assert json.dumps(payload, separators=(",", ":"), ensure_ascii=False) == block[len("data: ") :]
        events.append(payload)
    return events


def reduce(events: list[Event], *, complete: bool = True) -> tuple[str, str]:
    """A minimal correct client (reference §8.5-6): (answer, outcome)."""
    answer, outcome = "", "unknown"
    for event in events:
        if isinstance(event, str):
            continue
        kind = event["event"]
        if kind in ("message", "agent_message"):
            answer += event["answer"]
        elif kind == "message_file" and "answer" in event and "url" not in event:
            answer += event["answer"]
        elif kind == "message_replace":
            answer = event["answer"]
        elif kind == "text_chunk":
            answer += event["data"]["text"]
        elif kind == "message_end":
            outcome = "done"
        elif kind == "error":
            outcome = f"error:{event['code']}"
        elif kind == "workflow_finished":
            data = event["data"]
            final = (data["outputs"] or {}).get("answer", (data["outputs"] or {}).get("text"))
            if data["status"] == "succeeded":
                outcome, answer = "done", final if isinstance(final, str) else answer
            else:
                outcome = "stopped" if data["status"] == "stopped" else "error:workflow_failed"
    return answer, outcome if complete else "error:transport"


def names(events: list[Event]) -> list[str]:
    return [e if isinstance(e, str) else e["event"] for e in events]


async def stream(
    http: aiohttp.ClientSession, dify: FakeDify, body: dict[str, Any], *, path: str = "/chat-messages"
) -> tuple[list[Event], bytes]:
    async with http.post(dify.url + path, json=body, headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        raw = await resp.read()
    return parse(raw), raw


async def rejected(
    http: aiohttp.ClientSession, url: str, *, method: str = "POST", **kwargs: Any
) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    async with http.request(method, url, **kwargs) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json(), resp.headers


# --- auth and validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authorization header must be provided and start with 'Bearer'"),
        ({"Authorization": "Bearer"}, "Authorization header must be provided and start with 'Bearer'"),
        ({"Authorization": "Basic app-test-key"}, "Authorization scheme must be 'Bearer'"),
        ({"Authorization": "Bearer app-wrong"}, "Access token is invalid"),
    ],
)
async def test_auth_is_checked_first(
    dify: FakeDify, http: aiohttp.ClientSession, headers: dict[str, str], message: str
) -> None:
    status, body, resp_headers = await rejected(http, dify.url + "/chat-messages", data="junk", headers=headers)
    assert (status, body) == (401, {"code": "unauthorized", "message": message, "status": 401})
    assert resp_headers["WWW-Authenticate"] == 'Bearer realm="api"'


async def test_auth_scheme_is_case_insensitive(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.get(dify.url + "/info", headers={"Authorization": "bearer app-test-key"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "name": "Test App",
            "description": "A fake Dify app for tests.",
            "tags": [],
            "mode": "chat",
            "author_name": "Test Author",
        }


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"{not json", "headers": {**AUTH, "Content-Type": "application/json"}}, 400, "bad_request"),
        ({"data": b"", "headers": {**AUTH, "Content-Type": "application/json"}}, 400, "bad_request"),
        ({"data": b"[1]", "headers": {**AUTH, "Content-Type": "application/json"}}, 400, "bad_request"),
        ({"data": b"{}", "headers": {**AUTH, "Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ],
)
async def test_body_must_be_a_json_object(
    dify: FakeDify, http: aiohttp.ClientSession, kwargs: dict[str, Any], status: int, code: str
) -> None:
    got_status, body, _ = await rejected(http, dify.url + "/chat-messages", **kwargs)
    assert (got_status, body["code"], body["status"]) == (status, code, status)
    if status == 400:
        assert body["message"] == "Invalid JSON payload received or JSON payload is empty."


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": {}, "query": "hi"}, "Arg user must be provided."),
        ({"inputs": {}, "query": "hi", "user": ""}, "Arg user must be provided."),
        ({"query": "hi", "user": USER}, "inputs\n  Field required"),
        ({"inputs": {}, "user": USER}, "query\n  Field required"),
        ({"inputs": {}, "query": "", "user": USER}, "query is required"),
        ({"inputs": {}, "query": "hi", "user": USER, "conversation_id": "abc"}, "must be a valid UUID"),
        ({"inputs": {}, "query": "hi", "user": USER, "response_mode": "stream"}, "response_mode"),
    ],
)
async def test_invalid_params(dify: FakeDify, http: aiohttp.ClientSession, body: dict[str, Any], fragment: str) -> None:
    status, answer, _ = await rejected(http, dify.url + "/chat-messages", json=body, headers=AUTH)
    assert (status, answer["code"]) == (400, "invalid_param")
    assert fragment in answer["message"]
    assert dify.conversations == {}


async def test_app_mode_must_match_the_route(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    for mode in ("workflow", "completion"):
        dify.mode = mode
        status, body, _ = await rejected(http, dify.url + "/chat-messages", json=chat_body(), headers=AUTH)
        assert (status, body["code"]) == (400, "not_chat_app")
        assert body["message"] == "Please check if your app mode matches the right API route."
    dify.mode = "advanced-chat"
    run = {"inputs": {}, "user": USER, "response_mode": "streaming"}
    status, body, _ = await rejected(http, dify.url + "/workflows/run", json=run, headers=AUTH)
    assert (status, body["code"]) == (400, "not_workflow_app")


async def test_blocking_is_the_default(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    body = {"inputs": {}, "query": "hi", "user": USER}
    async with http.post(dify.url + "/chat-messages", json=body, headers=AUTH) as resp:
        assert resp.content_type == "application/json"
        answer = await resp.json()
    assert answer["event"] == "message" and answer["mode"] == "chat" and answer["answer"] == "echo: hi"
    assert answer["id"] == answer["message_id"]
    assert dify.conversations == {answer["conversation_id"]: USER}
    assert set(answer["metadata"]) == {"annotation_reply", "retriever_resources", "usage", "reasoning"}


async def test_agent_apps_refuse_blocking_and_default_to_streaming(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "agent"
    body = {"inputs": {}, "query": "hi", "user": USER}
    status, answer, _ = await rejected(
        http, dify.url + "/chat-messages", json={**body, "response_mode": "blocking"}, headers=AUTH
    )
    assert (status, answer) == (
        400,
        {"code": "bad_request", "message": "Agent App only supports streaming response mode.", "status": 400},
    )
    events, _ = await stream(http, dify, body)
    assert names(events) == ["message", "ping", "message_end"]
    assert reduce(events) == ("echo: hi", "done")


async def test_unknown_route_is_an_html_404(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.get(dify.url + "/nope", headers=AUTH) as resp:
        assert (resp.status, resp.content_type) == (404, "text/html")


# --- conversation registry ---------------------------------------------------------


async def test_conversations_are_created_reused_and_owned(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    events, _ = await stream(http, dify, chat_body(conversation_id=""))
    first = events[0]
    assert isinstance(first, dict)
    conversation_id = first["conversation_id"]
    assert dify.conversations == {conversation_id: USER}

    events, _ = await stream(http, dify, chat_body(conversation_id=conversation_id.upper()))
    assert {e["conversation_id"] for e in events if isinstance(e, dict)} == {conversation_id}

    url = dify.url + "/chat-messages"
    for body in (
        chat_body(conversation_id=conversation_id, user="tg:other"),
        chat_body(conversation_id=str(uuid.uuid4())),
    ):
        status, answer, _ = await rejected(http, url, json=body, headers=AUTH)
        assert (status, answer["code"]) == (404, "not_found")
        assert answer["message"].startswith("Conversation Not Exists. You have requested this URI")


async def test_a_404_leaves_the_scripted_reply_queued(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.script(Answer("scripted"))
    body = chat_body(conversation_id=str(uuid.uuid4()))
    status, _, _ = await rejected(http, dify.url + "/chat-messages", json=body, headers=AUTH)
    assert status == 404
    events, _ = await stream(http, dify, chat_body())
    assert reduce(events) == ("scripted", "done")


async def test_chatflow_swaps_unknown_conversations(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "advanced-chat"
    unknown = str(uuid.uuid4())
    events, _ = await stream(http, dify, chat_body(conversation_id=unknown))
    ids = {e["conversation_id"] for e in events if isinstance(e, dict)}
    assert len(ids) == 1 and unknown not in ids and ids <= dify.conversations.keys()

    dify.chatflow_reuses_unknown = False
    status, _, _ = await rejected(
        http, dify.url + "/chat-messages", json=chat_body(conversation_id=unknown), headers=AUTH
    )
    assert status == 404


async def test_http_errors_do_not_create_conversations(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    message = "Too many requests. Please try again later."
    dify.script(HttpError(429, "too_many_requests", message))
    status, body, _ = await rejected(http, dify.url + "/chat-messages", json=chat_body(), headers=AUTH)
    assert (status, body) == (429, {"code": "too_many_requests", "message": message, "status": 429})
    assert dify.conversations == {}


async def test_delete_conversation(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    events, _ = await stream(http, dify, chat_body())
    assert isinstance(events[0], dict)
    url = f"{dify.url}/conversations/{events[0]['conversation_id']}"
    status, _, _ = await rejected(http, url, method="DELETE", headers=AUTH)
    assert status == 415  # a JSON body is mandatory
    status, _, _ = await rejected(http, url, method="DELETE", json={"user": "tg:other"}, headers=AUTH)
    assert status == 404
    async with http.delete(url, json={"user": USER}, headers=AUTH) as resp:
        assert (resp.status, await resp.read()) == (204, b"")
    assert dify.conversations == {}
    status, body, _ = await rejected(http, url, method="DELETE", json={"user": USER}, headers=AUTH)
    assert (status, body["message"]) == (404, "Conversation Not Exists.")


# --- other endpoints ----------------------------------------------------------------


async def test_stop_endpoints_record_task_ids(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.post(dify.url + "/chat-messages/t-1/stop", json={"user": USER}, headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"result": "success"})
    status, body, _ = await rejected(http, dify.url + "/chat-messages/t-2/stop", json={}, headers=AUTH)
    assert (status, body["message"]) == (400, "Arg user must be provided.")
    dify.mode = "workflow"
    async with http.post(dify.url + "/workflows/tasks/t-3/stop", json={"user": USER}, headers=AUTH) as resp:
        assert (resp.status, await resp.json()) == (200, {"result": "success"})
    assert dify.stops == ["t-1", "t-3"]


async def test_stop_ends_a_generated_stream(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.script(Answer("one two three four five six", delay=0.2))
    started = time.monotonic()
    async with http.post(dify.url + "/chat-messages", json=chat_body(), headers=AUTH) as resp:
        first = json.loads((await resp.content.readuntil(b"\n\n"))[len("data: ") :])
        stop_url = f"{dify.url}/chat-messages/{first['task_id']}/stop"
        async with http.post(stop_url, json={"user": USER}, headers=AUTH) as stopped:
            assert stopped.status == 200
        events = [first, *parse(await resp.read())]
    assert time.monotonic() - started < 1.0
    assert reduce(events) == ("one ", "done")


async def test_parameters_and_messages(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.get(dify.url + "/parameters", headers=AUTH) as resp:
        parameters = await resp.json()
    assert parameters["opening_statement"] == "Hello! Ask me anything."
    assert parameters["file_upload"]["image"]["enabled"] is False
    events, _ = await stream(http, dify, chat_body(query="hi"))
    assert isinstance(events[0], dict)
    query = {"conversation_id": events[0]["conversation_id"], "user": USER}
    async with http.get(dify.url + "/messages", params=query, headers=AUTH) as resp:
        listing = await resp.json()
    assert [(m["query"], m["answer"]) for m in listing["data"]] == [("hi", "echo: hi")]


async def test_requests_are_recorded(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    await stream(http, dify, chat_body(query="first"))
    await rejected(http, dify.url + "/chat-messages", data=b"x", headers=AUTH)
    assert [r["query"] for r in dify.chat_requests()] == ["first"]
    recorded = dify.requests[0]
    assert (recorded.method, recorded.path, recorded.json) == (
        "POST",
        "/v1/chat-messages",
        chat_body("first"),
    )
    assert recorded.headers["Authorization"] == AUTH["Authorization"]
    assert dify.requests[1].json is None


# --- generated transcripts ------------------------------------------------------------

CHAT_ENVELOPE = ["event", "conversation_id", "message_id", "created_at", "task_id"]
FLOW_HEAD = ["workflow_started", "node_started", "node_finished", "node_started"]
FLOW_TAIL = ["node_finished", "node_started", "node_finished"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("chat", ["message", "ping", "message", "message_end"]),
        (
            "agent-chat",
            ["agent_thought", "agent_message", "ping", "agent_message", "agent_thought", "message_end"],
        ),
        ("agent", ["message", "ping", "message_end"]),
        (
            "advanced-chat",
            [
                "ping",
                *FLOW_HEAD,
                "message",
                "ping",
                "message",
                *FLOW_TAIL,
                "message_end",
                "workflow_finished",
            ],
        ),
        (
            "workflow",
            ["ping", *FLOW_HEAD, "text_chunk", "ping", "text_chunk", *FLOW_TAIL, "workflow_finished"],
        ),
    ],
)
async def test_answer_follows_the_app_mode(
    dify: FakeDify, http: aiohttp.ClientSession, mode: str, expected: list[str]
) -> None:
    dify.mode = mode
    if mode == "workflow":
        body = {"inputs": {"query": "hi"}, "user": USER, "response_mode": "streaming"}
        events, _ = await stream(http, dify, body, path="/workflows/run")
    else:
        events, _ = await stream(http, dify, chat_body("hi"))
    assert names(events) == expected  # two deltas, "echo: " and "hi", with a ping between
    assert reduce(events) == ("echo: hi", "done")
    data = [e for e in events if isinstance(e, dict)]
    if mode == "workflow":
        assert all(list(e)[:3] == ["event", "workflow_run_id", "task_id"] for e in data)
        assert len({e["workflow_run_id"] for e in data}) == 1
    else:
        assert all(list(e)[:5] == CHAT_ENVELOPE for e in data)
        assert len({(e["conversation_id"], e["message_id"], e["created_at"], e["task_id"]) for e in data}) == 1


async def test_answer_chunks_and_delay(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.script(Answer("abcd", chunks=["a", "bc", "d"], delay=0.05))
    started = time.monotonic()
    events, _ = await stream(http, dify, chat_body())
    assert time.monotonic() - started >= 0.2
    assert [e["answer"] for e in events if isinstance(e, dict) and e["event"] == "message"] == [
        "a",
        "bc",
        "d",
    ]


async def test_default_reply_can_be_replaced(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    seen: list[ReplyContext] = []

    def reply(ctx: ReplyContext) -> Answer:
        seen.append(ctx)
        return Answer(ctx.query.upper())

    dify.default_reply = reply
    events, _ = await stream(http, dify, chat_body("shout", inputs={"lang": "en"}))
    assert reduce(events) == ("SHOUT", "done")
    assert (seen[0].user, seen[0].inputs, seen[0].mode) == (USER, {"lang": "en"}, "chat")
    assert seen[0].conversation_id in dify.conversations


@pytest.mark.parametrize("mode", ["chat", "agent-chat", "advanced-chat", "workflow", "agent"])
async def test_stream_error(dify: FakeDify, http: aiohttp.ClientSession, mode: str) -> None:
    dify.mode = mode
    dify.script(StreamError("provider_quota_exceeded", "Quota exhausted.", after_text="Partial text"))
    if mode == "workflow":
        body = {"inputs": {}, "user": USER, "response_mode": "streaming"}
        events, _ = await stream(http, dify, body, path="/workflows/run")
    else:
        events, _ = await stream(http, dify, chat_body())
    assert "ping" in events
    assert reduce(events) == ("Partial text", "error:provider_quota_exceeded")
    error = events[-1]
    assert isinstance(error, dict) and "task_id" not in error
    assert (error["code"], error["status"], error["message"]) == (
        "provider_quota_exceeded",
        400,
        "Quota exhausted.",
    )


# --- scripted transcripts ------------------------------------------------------------------


def expected_bytes(steps: list[Step]) -> bytes:
    return b"".join(s if isinstance(s, bytes) else s.data for s in steps if isinstance(s, bytes | SplitWrite))


@pytest.mark.parametrize("name", list(dify_transcripts.TRANSCRIPTS))
async def test_transcripts_stream_exact_bytes(dify: FakeDify, http: aiohttp.ClientSession, name: str) -> None:
    builder = dify_transcripts.TRANSCRIPTS[name]
    built: list[Step] = []

    def capture(ctx: ReplyContext) -> list[Step]:
        built.extend(builder(ctx))
        return built

    dify.mode = dify_transcripts.MODES[name]
    dify.script(Transcript(capture))
    if dify.mode == "workflow":
        url, body = dify.url + "/workflows/run", {"inputs": {}, "user": USER, "response_mode": "streaming"}
    else:
        url, body = dify.url + "/chat-messages", chat_body()
    raw, complete = b"", True
    async with http.post(url, json=body, headers=AUTH) as resp:
        assert resp.status == 200
        try:
            async for data in resp.content.iter_any():
                raw += data
        except aiohttp.ClientPayloadError:
            complete = False
    assert raw == expected_bytes(built)
    assert reduce(parse(raw), complete=complete) == (
        dify_transcripts.EXPECTED_ANSWERS[name],
        dify_transcripts.EXPECTED_OUTCOME[name],
    )
    assert PING in raw


async def test_split_writes_arrive_as_separate_reads(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    data = "data: 你好\n\n".encode()
    cuts = [7, 10, 13]  # inside 你, inside 好, between the two newlines
    dify.script(Transcript(lambda ctx: [SplitWrite(data, cuts)]))
    async with http.post(dify.url + "/chat-messages", json=chat_body(), headers=AUTH) as resp:
        reads = [chunk async for chunk in resp.content.iter_any()]
    assert b"".join(reads) == data
    assert reads == [data[:7], data[7:10], data[10:13], data[13:]]


async def test_tool_file_urls_are_served(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.get(dify.host_url + dify_transcripts.IMAGE_FILE_URL) as resp:
        assert (resp.status, resp.content_type) == (200, "image/png")
        assert (await resp.read()).startswith(b"\x89PNG")


# --- transport failures ------------------------------------------------------------------


async def test_html_error(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.script(HtmlError())
    async with http.post(dify.url + "/chat-messages", json=chat_body(), headers=AUTH) as resp:
        assert (resp.status, resp.content_type) == (502, "text/html")
        assert "502 Bad Gateway" in await resp.text()


async def test_drop_before_headers(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.script(DropBeforeHeaders())
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(dify.url + "/chat-messages", json=chat_body(), headers=AUTH):
            pass
    assert dify.conversations == {}


async def test_exit_ends_in_flight_streams(http: aiohttp.ClientSession) -> None:
    async with FakeDify() as dify:
        dify.script(Transcript(lambda ctx: [PING, Delay(30), PING]))
        resp = await http.post(dify.url + "/chat-messages", json=chat_body(), headers=AUTH)
        assert await resp.content.readuntil(b"\n\n") == PING
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    resp.release()
    await asyncio.sleep(0)
