"""OpenAI-compatible API end to end: the official openai client → OpenAIApi → AnswerPipeline → fake Dify."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from core.answering import AnswerReport
from core.conversations import ConversationStore
from core.dify.errors import DifyAppBusy, DifyAuthError, DifyProviderError, DifyQuotaExceeded
from core.errors import ConversationBusy
from core.texts import friendly_error
from tests.e2e.openai_harness import (
    KEY,
    NOW,
    OTHER_KEY,
    Api,
    eventually,
    running_api,
    sse_data,
    stream_text,
    user,
)
from tests.fakes.dify import USAGE, Answer, Events, HttpError, Reply, ReplyContext, StreamError, Transcript

QUOTA_TEXT = "You exceeded your current quota, please check your plan and billing details."


@pytest.fixture
async def api(store: ConversationStore) -> AsyncIterator[Api]:
    async with running_api(store) as running:
        yield running


@pytest.fixture
async def client(api: Api) -> AsyncIterator[openai.AsyncOpenAI]:
    async with api.client() as opened:
        yield opened


# ---- answers ---------------------------------------------------------------------------------------


async def test_non_streaming_completion_is_the_answer(api: Api, client: openai.AsyncOpenAI) -> None:
    api.dify.script(Answer("Refunds are accepted within 30 days of delivery."))
    completion = await client.chat.completions.create(model="gpt-4o", messages=[user("How do refunds work?")])
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.created == int(NOW)
    assert completion.model == "gpt-4o"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Refunds are accepted within 30 days of delivery."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        USAGE["prompt_tokens"],
        USAGE["completion_tokens"],
        USAGE["total_tokens"],
    )
    request = api.dify.chat_requests()[0]
    assert request["query"] == "How do refunds work?"
    assert request["response_mode"] == "streaming"
    assert request["user"].startswith("openai-once-")
    assert request["inputs"] == {}
    assert await api.stored_conversations() == []  # a request without a user is a one-off conversation


async def test_streaming_completion_streams_the_answer(api: Api, client: openai.AsyncOpenAI) -> None:
    answer = "Refunds are accepted within 30 days of delivery. 退款请在三十天内申请。"
    api.dify.script(Answer(answer, chunks=[answer[i : i + 9] for i in range(0, len(answer), 9)], delay=0.01))
    text, chunks = await stream_text(client, messages=[user("refunds?")])
    assert text == answer
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([chunk for chunk in chunks if chunk.choices[0].delta.content]) > 3  # it really streamed
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == "dify" for chunk in chunks)
    assert [chunk.choices[0].finish_reason for chunk in chunks][-2:] == [None, "stop"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == USAGE["total_tokens"]
    assert chunks[-1].usage.prompt_tokens == USAGE["prompt_tokens"] == 512
    assert chunks[-1].usage.completion_tokens == USAGE["completion_tokens"] == 12


async def test_the_raw_stream_is_server_sent_events_ending_with_done(api: Api) -> None:
    api.dify.script(Answer("Hello there."))
    status, body, content_type = await api.raw(
        "POST", "/chat/completions", body={"model": "dify", "messages": [user("hi")], "stream": True}
    )
    assert status == 200
    assert content_type == "text/event-stream"
    payloads = sse_data(body)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 512, "completion_tokens": 12, "total_tokens": 524}


# ---- conversations ---------------------------------------------------------------------------------


async def test_the_user_field_keeps_a_conversation_until_it_is_deleted(api: Api, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="dify", messages=[user("first")], user="alice")
    await stream_text(client, messages=[user("second")], user="alice")
    first, second = api.dify.chat_requests()
    assert first["conversation_id"] == ""
    assert second["conversation_id"] in api.dify.conversations
    assert first["user"] == second["user"] == "openai-alice"

    status, body, _ = await api.raw("DELETE", "/conversations/alice")
    assert status == 200
    assert json.loads(body) == {"id": "alice", "object": "conversation.deleted", "deleted": True}
    await client.chat.completions.create(model="dify", messages=[user("third")], user="alice")
    assert api.dify.chat_requests()[2]["conversation_id"] == ""

    status, body, _ = await api.raw("DELETE", "/conversations/nobody")
    assert json.loads(body) == {"id": "nobody", "object": "conversation.deleted", "deleted": False}


async def test_the_conversation_header_wins_over_the_user_field(api: Api, client: openai.AsyncOpenAI) -> None:
    headers = {"X-Conversation-Id": "thread-9"}
    await client.chat.completions.create(model="dify", messages=[user("a")], user="alice", extra_headers=headers)
    await client.chat.completions.create(model="dify", messages=[user("b")], user="bob", extra_headers=headers)
    await client.chat.completions.create(model="dify", messages=[user("c")], user="alice")
    first, second, third = api.dify.chat_requests()
    assert first["user"] == second["user"] == "openai-thread-9"
    assert second["conversation_id"] == api.dify.messages[0]["conversation_id"]
    assert third["user"] == "openai-alice"
    assert third["conversation_id"] == ""


async def test_requests_without_an_id_do_not_share_a_conversation(api: Api, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="dify", messages=[user("a")])
    await stream_text(client, messages=[user("b")])
    first, second = api.dify.chat_requests()
    assert first["user"] != second["user"]
    assert second["conversation_id"] == ""
    # The stream's [DONE] can reach the client before the handler drops the one-off conversation.
    deadline = asyncio.get_running_loop().time() + 5
    while await api.stored_conversations():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


# ---- prompts ---------------------------------------------------------------------------------------


async def test_system_and_developer_messages_reach_dify_as_an_input(api: Api, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(
        model="dify",
        messages=[
            {"role": "system", "content": "Answer like a pirate."},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            user("old question"),
            {"role": "assistant", "content": "old answer"},
            user("Where is the treasure?"),
        ],
    )
    request = api.dify.chat_requests()[0]
    assert request["inputs"] == {"system_prompt": "Answer like a pirate.\n\nBe brief."}
    assert request["query"] == "Where is the treasure?"


async def test_system_prefix_goes_only_into_the_first_message_of_a_conversation(store: ConversationStore) -> None:
    async with running_api(store, system_input="", system_prefix=True) as api, api.client() as client:
        messages = [{"role": "system", "content": "Answer like a pirate."}, user("Hi")]
        await client.chat.completions.create(model="dify", messages=messages, user="alice")
        await client.chat.completions.create(model="dify", messages=messages, user="alice")
        first, second = api.dify.chat_requests()
        assert first["query"] == "Answer like a pirate.\n\nHi"
        assert second["query"] == "Hi"
        assert first["inputs"] == second["inputs"] == {}


async def test_content_arrays_are_joined(api: Api, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(
        model="dify",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "line one"},
                    {"type": "text", "text": "line two"},
                ],
            }
        ],
    )
    request = api.dify.chat_requests()[0]
    assert request["query"] == "line one\nline two"
    assert "files" not in request


# ---- replaced answers ------------------------------------------------------------------------------


def replacing(*parts: tuple[str, str]) -> Transcript:
    """A chat transcript of ("message" | "replace", text) steps, then message_end."""

    def build(ctx: ReplyContext) -> list[Any]:
        ev = Events(ctx)
        blocks = [ev.message(text) if kind == "message" else ev.message_replace(text) for kind, text in parts]
        return [*blocks, ev.message_end()]

    return Transcript(build)


async def test_a_replacement_that_extends_the_text_streams_the_rest(api: Api, client: openai.AsyncOpenAI) -> None:
    api.dify.script(replacing(("message", "Hello "), ("replace", "Hello world!")))
    text, chunks = await stream_text(client, messages=[user("hi")])
    assert text == "Hello world!"
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_replacement_cannot_unsend_streamed_text(api: Api, client: openai.AsyncOpenAI) -> None:
    steps = (("message", "Hello "), ("message", "world"), ("replace", "Sorry, I can't say that."), ("message", "!"))
    api.dify.script(replacing(*steps), replacing(*steps))
    text, chunks = await stream_text(client, messages=[user("hi")])
    assert text == "Hello world"
    assert chunks[-1].choices[0].finish_reason == "stop"
    completion = await client.chat.completions.create(model="dify", messages=[user("hi")])
    assert completion.choices[0].message.content == "Sorry, I can't say that.!"


# ---- Dify errors -----------------------------------------------------------------------------------


async def test_a_dify_error_mid_stream_raises_an_api_error_with_the_friendly_sentence(
    api: Api, client: openai.AsyncOpenAI
) -> None:
    api.dify.script(StreamError("completion_request_error", "[openai] boom", after_text="The answer is"))
    sentence = friendly_error(DifyProviderError())
    stream = await client.chat.completions.create(model="dify", messages=[user("question")], stream=True)
    chunks: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            chunks.append(chunk)
    error = caught.value
    assert not isinstance(error, openai.APIStatusError)  # the stream had begun: HTTP 200, then the error frame
    assert error.message == sentence
    assert error.body == {"message": sentence, "type": "server_error", "param": None, "code": "upstream_error"}
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "The answer is"
    assert [chunk.choices[0].finish_reason for chunk in chunks] == [None] * len(chunks)
    assert len(chunks) >= 2  # the role chunk and the text before the error


async def test_the_raw_error_stream_ends_with_an_error_frame_and_done(api: Api) -> None:
    api.dify.script(StreamError("completion_request_error", "[openai] boom", after_text="The answer is"))
    status, body, content_type = await api.raw(
        "POST", "/chat/completions", body={"model": "dify", "messages": [user("q")], "stream": True}
    )
    assert (status, content_type) == (200, "text/event-stream")
    assert b"boom" not in body
    payloads = sse_data(body)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2]) == {
        "error": {
            "message": friendly_error(DifyProviderError()),
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    chunks = [json.loads(payload) for payload in payloads[:-2]]
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == "The answer is"
    assert {chunk["choices"][0]["finish_reason"] for chunk in chunks} == {None}


@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
async def test_a_quota_error_before_any_text_is_a_rate_limit_error(
    api: Api, client: openai.AsyncOpenAI, stream: bool
) -> None:
    api.dify.script(HttpError(400, "provider_quota_exceeded", QUOTA_TEXT))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="dify", messages=[user("q")], stream=stream)
    error = caught.value
    assert error.status_code == 429
    assert error.body == {
        "message": friendly_error(DifyQuotaExceeded()),
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    assert "quota, please" not in str(error)
    assert error.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("replies", "status", "error_class", "sentence"),
    [
        ([HttpError(401, "unauthorized", "Access token is invalid")], 503, openai.InternalServerError, DifyAuthError),
        ([HttpError(429, "too_many_requests", "Too many requests")] * 3, 429, openai.RateLimitError, DifyAppBusy),
        ([HttpError(400, "invalid_param", "inputs is required")], 400, openai.BadRequestError, None),
        ([HttpError(500, "internal_server_error", "oops")] * 3, 502, openai.InternalServerError, None),
    ],
    ids=["dify-key-refused", "app-busy", "bad-request", "server-error"],
)
async def test_dify_errors_map_to_http_statuses(
    api: Api,
    client: openai.AsyncOpenAI,
    replies: list[Reply],
    status: int,
    error_class: type[openai.APIStatusError],
    sentence: type[Exception] | None,
) -> None:
    api.dify.script(*replies)
    with pytest.raises(error_class) as caught:
        await client.chat.completions.create(model="dify", messages=[user("q")], stream=True)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == ("server_error" if status >= 500 else body["type"])
    if sentence is not None:
        assert body["message"] == friendly_error(sentence())
    for raw in ("Access token", "Too many", "inputs is", "oops"):
        assert raw not in body["message"]


async def test_a_busy_conversation_is_a_conflict(store: ConversationStore) -> None:
    async with running_api(store, lock_wait=0.2) as api, api.client() as client:
        api.dify.script(Answer("slow answer " * 5, delay=0.1))
        first = asyncio.create_task(client.chat.completions.create(model="dify", messages=[user("a")], user="al"))
        await eventually(lambda: len(api.dify.chat_requests()) == 1)
        with pytest.raises(openai.ConflictError) as caught:
            await client.chat.completions.create(model="dify", messages=[user("b")], user="al")
        assert caught.value.body == {
            "message": friendly_error(ConversationBusy()),
            "type": "invalid_request_error",
            "param": None,
            "code": "conversation_busy",
        }
        assert (await first).choices[0].message.content == "slow answer " * 5


# ---- disconnects -----------------------------------------------------------------------------------


async def test_a_caller_that_goes_away_stops_the_dify_task(api: Api, client: openai.AsyncOpenAI) -> None:
    reports: list[AnswerReport] = []
    api.pipeline.observe(reports.append)
    api.dify.script(Answer("word " * 200, delay=0.05))
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{api.url}/chat/completions",
            json={"model": "dify", "messages": [user("long")], "stream": True, "user": "carol"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        async for line in response.content:
            if b'"content":"word' in line:
                break
        response.close()
    await eventually(lambda: len(api.dify.stops) == 1)
    await eventually(lambda: len(reports) == 1)
    assert (reports[0].stats.outcome, reports[0].task_id) == ("blocked", api.dify.stops[0])
    # The conversation is free again: the next answer does not wait for the abandoned one.
    completion = await client.chat.completions.create(model="dify", messages=[user("next")], user="carol")
    assert completion.choices[0].message.content == "echo: next"


# ---- auth, models, validation ----------------------------------------------------------------------


async def test_a_wrong_key_is_an_authentication_error(api: Api) -> None:
    async with api.client(key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="dify", messages=[user("q")])
    assert caught.value.status_code == 401
    assert caught.value.response.json() == {
        "error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert api.dify.chat_requests() == []


async def test_every_route_needs_a_key(api: Api) -> None:
    for method, path in (("GET", "/models"), ("DELETE", "/conversations/alice"), ("POST", "/chat/completions")):
        status, body, _ = await api.raw(method, path, body={"messages": [user("q")]}, key=None)
        assert status == 401
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    status, _, _ = await api.raw("GET", "/models", key=OTHER_KEY)
    assert status == 200


async def test_without_keys_everything_is_refused(store: ConversationStore) -> None:
    async with running_api(store, keys=[]) as api:
        for key in (KEY, "", None):
            status, body, _ = await api.raw("GET", "/models", key=key)
            assert status == 401
            assert json.loads(body)["error"]["type"] == "invalid_request_error"


async def test_models_lists_the_configured_model(store: ConversationStore) -> None:
    async with running_api(store, model="support-bot") as api, api.client() as client:
        models = await client.models.list()
        assert [(m.id, m.object, m.owned_by, m.created) for m in models.data] == [
            ("support-bot", "model", "dify-bots", 0)
        ]
        assert (await client.models.retrieve("support-bot")).id == "support-bot"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-4o")
        api.dify.script(Answer("hi"))
        completion = await client.chat.completions.create(model="", messages=[user("q")])
        assert completion.model == "support-bot"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"model": "dify"}', "messages"),
        (b'{"model": "dify", "messages": []}', "messages"),
        (b'{"messages": [{"role": "system", "content": "be nice"}]}', "messages"),
        (b'{"messages": [{"role": "user", "content": "  "}]}', "messages[0].content"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/a.png"}]}]}', None),
        (b'{"messages": [{"role": "robot", "content": "hi"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": 42}]}', "messages[0].content"),
    ],
    ids=["bad-json", "not-object", "no-messages", "empty", "no-user", "blank", "image-only", "role", "content-type"],
)
async def test_invalid_requests_are_400(api: Api, body: bytes, param: str | None) -> None:
    status, raw, _ = await api.raw("POST", "/chat/completions", data=body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
    assert api.dify.chat_requests() == []


async def test_the_client_raises_bad_request_for_an_unknown_role(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="dify", messages=[{"role": "robot", "content": "hi"}])
    assert "robot" in caught.value.message
