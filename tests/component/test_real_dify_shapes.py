"""DifyClient + AnswerReducer against real Dify 1.15 bytes replayed by the fake, and the fake's real shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from core.answer import AnswerReducer, Done, Failed, Files, ReplyEvent, TextDelta, TextReplace
from core.dify import errors
from core.dify.client import DifyClient
from tests.fakes.dify import FakeDify
from tests.fakes.dify_transcripts import recorded, recorded_body

NO_WAIT: tuple[float, ...] = (0.0, 0.0)
USER = "tg:1"
CHATFLOW_ANSWER = (
    "You said: hello\n\n**Echo bot** — a *real* Dify 1.15 Chatflow with no model.\n\n- item `one`\n"
    '- item two: 你好 👋\n\n```python\nprint("hi")\n```\n\nTurn 1.'
)


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def run(dify: FakeDify, *, query: str = "hello", conversation_id: str | None = None) -> list[ReplyEvent]:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, retry_delays=NO_WAIT) as client:
        reducer = AnswerReducer(mode=await client.app_mode())
        out: list[ReplyEvent] = []
        try:
            async for batch in client.stream_batches(query=query, user=USER, conversation_id=conversation_id):
                for event in batch:
                    out += reducer.feed(event)
        except errors.DifyError as exc:
            out += reducer.fail(exc)
        return out + reducer.finish()


def shown(events: list[ReplyEvent]) -> str:
    text = ""
    for event in events:
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, TextReplace):
            text = event.text
    return text


# --- item 2: a workflow's text_chunks are a preview; the outputs replace it ---------------------


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("41_wf_stream", "hello workflow\n**bold** 你好"),
        ("42_wf_single_stream", "only one output"),
        ("44_wf_stream_with_file", "with file"),
    ],
)
async def test_workflow_answer_is_the_outputs_not_the_preview(dify: FakeDify, name: str, answer: str) -> None:
    dify.mode = "workflow"
    dify.script(recorded(name))
    events = await run(dify)
    preview = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert (preview == answer) == (name == "42_wf_single_stream")  # else "\n" between outputs, file links
    assert shown(events) == answer
    done = events[-1]
    assert isinstance(done, Done) and done.answer == answer
    assert sum(isinstance(event, Done | Failed) for event in events) == 1


async def test_workflow_file_outputs_arrive_as_files(dify: FakeDify) -> None:
    dify.mode = "workflow"
    dify.script(recorded("44_wf_stream_with_file"))
    events = await run(dify)
    files = [file for event in events if isinstance(event, Files) for file in event.files]
    assert [(file.type, file.url.split("?")[0]) for file in files] == [
        ("image", "http://127.0.0.1:5801/files/95150c75-e9f2-4828-8b9f-0a5744c73107/file-preview")
    ]


# --- item 3: text before node_started ------------------------------------------------------------


@pytest.mark.parametrize("name", ["10_cf_stream_first", "57_cf_slow_pings"])
async def test_chatflow_text_before_any_node(dify: FakeDify, name: str) -> None:
    dify.mode = "advanced-chat"
    dify.script(recorded(name))
    events = await run(dify)
    done = events[-1]
    assert isinstance(done, Done) and done.conversation_id
    assert shown(events) == done.answer
    if name.startswith("10"):
        assert done.answer == CHATFLOW_ANSWER


# --- item 4: refusals after HTTP 200 are classified like their HTTP 400 twins -------------------


@pytest.mark.parametrize(
    ("mode", "name", "message"),
    [
        ("advanced-chat", "17_cf_empty_query_stream", "query is required"),
        ("advanced-chat", "23_cf_stream_with_foreign_file", "Invalid upload file"),
        ("workflow", "46_wf_missing_input_stream", "query is required in input form"),
    ],
)
async def test_failed_run_after_200_is_a_bad_request(dify: FakeDify, mode: str, name: str, message: str) -> None:
    dify.mode = mode
    dify.script(recorded(name))
    events = await run(dify)
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.partial == ""
    assert type(failed.error) is errors.DifyBadRequest and failed.error.message == message
    assert not any(isinstance(event, Done) for event in events)


async def test_fake_refuses_an_empty_chatflow_query_like_dify(dify: FakeDify) -> None:
    dify.mode = "advanced-chat"
    events = await run(dify, query="")
    failed = events[-1]
    assert isinstance(failed, Failed) and type(failed.error) is errors.DifyBadRequest
    assert dify.conversations == {}  # no conversation_id nor message_id in the synthetic events


async def test_fake_fails_a_workflow_without_its_required_input(dify: FakeDify) -> None:
    dify.mode = "workflow"
    dify.workflow_required_inputs = ("topic",)
    events = await run(dify)
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.error.message == "topic is required in input form"
    assert type(failed.error) is errors.DifyBadRequest


# --- item 1: not-found carries flask-restx's suggestion --------------------------------------------


async def test_unknown_conversation_with_a_route_suggestion(dify: FakeDify) -> None:
    dify.script(recorded("54_chat_unknown_conv_stream"))
    events = await run(dify, conversation_id=str(uuid.uuid4()))
    failed = events[-1]
    assert isinstance(failed, Failed) and type(failed.error) is errors.ConversationNotFound
    assert failed.error.message.startswith("Conversation Not Exists. You have requested this URI")


async def test_fake_sends_the_recorded_not_found_bytes(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    body = {"inputs": {}, "query": "hello", "response_mode": "streaming", "user": USER}
    body["conversation_id"] = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {dify.api_key}"}
    async with http.post(dify.url + "/chat-messages", json=body, headers=headers) as response:
        assert response.status == 404
        assert await response.read() == recorded_body("54_chat_unknown_conv_stream")


@pytest.mark.parametrize(
    ("status", "code", "message", "cls"),
    [
        (
            404,
            "not_found",
            "Conversation Not Exists. You have requested this URI [/v1/x] ...",
            errors.ConversationNotFound,
        ),
        (None, None, "Conversation Not Exists.", errors.ConversationNotFound),
        (404, "not_found", "Message Not Exists.", errors.DifyNotFound),
        (400, "invalid_param", "Conversation Not Exists is not a valid name", errors.DifyBadRequest),
        (None, None, "Invalid upload file", errors.DifyBadRequest),
        (None, None, "topic is required in input form", errors.DifyBadRequest),
        (None, None, "Node LLM run failed: boom", errors.DifyRunFailed),
    ],
)
def test_classify_matches_code_and_message_start(
    status: int | None, code: str | None, message: str, cls: type[errors.DifyError]
) -> None:
    assert type(errors.classify(status, code, message)) is cls


# --- items 5, 6, 7, 9: the fake's own shapes ---------------------------------------------------------


async def test_chatflow_blocking_unknown_conversation_starts_a_new_one(
    dify: FakeDify, http: aiohttp.ClientSession
) -> None:
    dify.mode = "advanced-chat"
    unknown = str(uuid.uuid4())
    body = {"inputs": {}, "query": "hello?", "response_mode": "blocking", "user": USER, "conversation_id": unknown}
    async with http.post(
        dify.url + "/chat-messages", json=body, headers={"Authorization": f"Bearer {dify.api_key}"}
    ) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["conversation_id"] != unknown and dify.conversations == {answer["conversation_id"]: USER}
    recorded_keys = json.loads(recorded_body("13_cf_unknown_conv_blocking")).keys()
    assert answer.keys() == recorded_keys


async def test_workflow_stream_starts_with_a_ping(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "workflow"
    body = {"inputs": {"query": "hi"}, "response_mode": "streaming", "user": USER}
    async with http.post(
        dify.url + "/workflows/run", json=body, headers={"Authorization": f"Bearer {dify.api_key}"}
    ) as r:
        raw = await r.read()
    assert raw.startswith(b"event: ping\n\n") and recorded_body("41_wf_stream").startswith(b"event: ping\n\n")


async def test_unknown_route_is_an_html_page(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.get(dify.url + "/no-such-route", headers={"Authorization": f"Bearer {dify.api_key}"}) as r:
        assert (r.status, r.content_type) == (404, "text/html")
        assert await r.read() == recorded_body("07_unknown_route")
    async with DifyClient(base_url=dify.host_url, api_key=dify.api_key, retry_delays=NO_WAIT) as client:
        with pytest.raises(errors.DifyError):  # a base URL without /v1: a clear error, not a JSON crash
            await client.info()


async def test_json_is_compact_with_escaped_slashes(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    async with http.get(dify.url + "/info", headers={"Authorization": "Bearer app-wrong"}) as r:
        assert await r.read() == recorded_body("03_auth_bad_key")
    dify.name = "Café/日本"
    async with http.get(dify.url + "/info", headers={"Authorization": f"Bearer {dify.api_key}"}) as r:
        assert b'"name":"Caf\\u00e9\\/\\u65e5\\u672c"' in await r.read()


async def test_upload_answers_201_with_a_signed_source_url(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    auth = {"Authorization": f"Bearer {dify.api_key}"}
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG fake", filename="pixel.png", content_type="image/png")
    form.add_field("user", USER)
    async with http.post(dify.url + "/files/upload", data=form, headers=auth) as r:
        assert r.status == 201
        raw = await r.read()
    body = json.loads(raw)
    assert body.keys() == json.loads(recorded_body("19_files_upload_png")).keys()
    assert body["source_url"].startswith(dify.host_url + "/files/") and "sign=" in body["source_url"]
    assert b"\\/files\\/" in raw and body["mime_type"] == "image/png" and body["size"] == 9
    async with http.post(dify.url + "/files/upload", data={"user": USER}, headers=auth) as r:
        assert r.status == 400 and await r.read() == recorded_body("20_files_upload_none")


async def test_chatflow_file_upload_has_no_image_key(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "advanced-chat"
    dify.files_enabled = True
    async with http.get(dify.url + "/parameters", headers={"Authorization": f"Bearer {dify.api_key}"}) as r:
        upload = (await r.json())["file_upload"]
    real = json.loads(recorded_body("25_cf_parameters"))["file_upload"]
    assert upload == real and "image" not in upload


async def test_replayed_stream_keeps_the_recorded_bytes(dify: FakeDify, http: aiohttp.ClientSession) -> None:
    dify.mode = "workflow"
    dify.script(recorded("44_wf_stream_with_file"))
    body = {"inputs": {"query": "with file"}, "response_mode": "streaming", "user": USER}
    async with http.post(
        dify.url + "/workflows/run", json=body, headers={"Authorization": f"Bearer {dify.api_key}"}
    ) as r:
        assert await r.read() == recorded_body("44_wf_stream_with_file")
