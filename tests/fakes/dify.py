"""Strict fake of the Dify Service API on a real local socket, driven by scripted replies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from tests.fakes.dify_controls import AnswerControls
from tests.fakes.dify_files import (
    TINY_PNG,
    AcceptedFile,
    DifyApiError,
    FileRefused,
    FileSide,
    FileUpload,
    SizeLimits,
    dify_dumps,
    dify_file,
    dify_json,
    message_file,
    sys_file,
)
from tests.fakes.local_server import serve_locally

__all__ = ["TINY_PNG", "AcceptedFile", "FileUpload", "SizeLimits", "dify_dumps"]

# ---------------------------------------------------------------------------
# Values shared by the server and the transcript builders
# ---------------------------------------------------------------------------

CHAT_MODES = frozenset({"chat", "agent-chat", "advanced-chat", "agent"})
ALL_MODES = frozenset({*CHAT_MODES, "workflow", "completion"})
PING = b"event: ping\n\n"
SPLIT_PAUSE = 0.02  # seconds between the parts of a SplitWrite, so they arrive as separate reads
APP_ID = "5d6f1c0a-3b7e-4f4a-9a51-0c2b8e7d9f10"
WORKFLOW_ID = "9b0e4a52-8c1d-4e7f-b6a3-2f5d7c8e1a40"
RETRIEVER_RESOURCE: dict[str, Any] = {
    "position": 1,
    "dataset_id": "101b4c97-fc2e-463c-90b1-5261a4cdcafb",
    "dataset_name": "Policies",
    "document_id": "8dd1ad74-0b5f-4175-b735-7d98bbbb4e00",
    "document_name": "refunds.md",
    "data_source_type": "upload_file",
    "segment_id": "ed599c7f-2766-4294-9d1d-e5235a61270a",
    "retriever_from": "dev",
    "score": 0.82,
    "hit_count": 3,
    "word_count": 412,
    "segment_position": 2,
    "index_node_hash": "a3b1c9d07e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
    "content": "Refunds are accepted within 30 days of delivery.",
    "page": None,
    "doc_metadata": None,
    "title": "refunds.md",
    "files": None,
    "summary": None,
}
USAGE: dict[str, Any] = {
    "prompt_tokens": 512,
    "prompt_unit_price": "0.15",
    "prompt_price_unit": "0.000001",
    "prompt_price": "0.0000768",
    "completion_tokens": 12,
    "completion_unit_price": "0.6",
    "completion_price_unit": "0.000001",
    "completion_price": "0.0000072",
    "total_tokens": 524,
    "total_price": "0.000084",
    "currency": "USD",
    "latency": 1.214,
    "time_to_first_token": 0.38,
    "time_to_generate": 0.83,
}
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    json: Any
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyContext:
    query: str
    user: str
    inputs: dict[str, Any]
    conversation_id: str  # "" for workflow apps
    message_id: str
    task_id: str
    workflow_run_id: str
    mode: str
    created_at: int
    files: tuple[dict[str, Any], ...] = ()  # what `sys.files` shows: the files Dify accepted


# --- stream steps -----------------------------------------------------------


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the TCP connection without finishing the chunked body."""


@dataclass(frozen=True)
class SplitWrite:
    """Write `data` in several writes, cut at the byte offsets in `at`."""

    data: bytes
    at: list[int]


@dataclass(frozen=True)
class Mark:
    """Calls `callback` when the stream reaches this point (benchmarks record send times with it)."""

    callback: Callable[[], None]


Step = bytes | Delay | Drop | SplitWrite | Mark


# --- replies ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The app mode's normal success transcript.

    `chunks` (default: words with their trailing spaces) are the streamed deltas; `text` fills the
    final fields (last agent thought, node outputs, `workflow_finished.outputs`). `agent` apps send
    `text` as one closing `message`. `delay` seconds pass between events.
    """

    text: str
    _: KW_ONLY
    chunks: list[str] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Transcript:
    """Exact steps, written as built (whatever `response_mode` was requested)."""

    build: Callable[[ReplyContext], list[Step]]


@dataclass(frozen=True)
class HttpError:
    status: int
    code: str
    message: str


@dataclass(frozen=True)
class HtmlError:
    status: int = 502
    body: str = NGINX_502


@dataclass(frozen=True)
class DropBeforeHeaders:
    """Close the connection without sending any response."""


@dataclass(frozen=True)
class RawHttp:
    """A recorded non-stream response replayed as is: status, content type and body bytes."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class StreamError:
    """HTTP 200, the mode's transcript with `after_text` streamed, then an in-stream `error` event."""

    code: str
    message: str
    _: KW_ONLY
    status: int = 400
    after_text: str = ""


HttpReply = HttpError | HtmlError | DropBeforeHeaders | RawHttp
StreamReply = Answer | Transcript | StreamError
Reply = StreamReply | HttpReply


def echo_reply(ctx: ReplyContext) -> Reply:
    return Answer(f"echo: {ctx.query}")


# ---------------------------------------------------------------------------
# Event encoding
# ---------------------------------------------------------------------------


def sse(payload: Mapping[str, Any]) -> bytes:
    """One data event exactly as Dify frames it: compact JSON, raw UTF-8, blank line."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def split_words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


@dataclass(frozen=True)
class NodeSpec:
    exec_id: str
    node_id: str
    node_type: str
    title: str
    index: int
    predecessor_node_id: str | None


class Events:
    """Builds the event blocks of one reply with the envelope of an app mode (§3.4 field order)."""

    def __init__(self, ctx: ReplyContext, *, mode: str | None = None) -> None:
        self.ctx = ctx
        self.mode = mode or ctx.mode
        self.end_user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"end-user:{ctx.user}"))
        self.start = self.node("1751000000001", "start", "Start", 1, None)
        self.llm = self.node("llm", "llm", "LLM", 2, self.start.node_id)
        self.answer_node = self.node("answer", "answer", "Answer", 3, self.llm.node_id)
        self.end_node = self.node("end", "end", "End", 3, self.llm.node_id)

    # envelope and generic events

    def envelope(self, event: str) -> dict[str, Any]:
        ctx = self.ctx
        if self.mode == "workflow":
            return {"event": event, "workflow_run_id": ctx.workflow_run_id}
        if self.mode == "completion":
            return {"event": event, "message_id": ctx.message_id, "created_at": ctx.created_at}
        return {
            "event": event,
            "conversation_id": ctx.conversation_id,
            "message_id": ctx.message_id,
            "created_at": ctx.created_at,
        }

    def event(self, event: str, **fields: Any) -> bytes:
        """Any event: envelope, `task_id`, then `fields` in the given order."""
        return sse({**self.envelope(event), "task_id": self.ctx.task_id, **fields})

    def error(self, code: str, message: str, *, status: int = 400) -> bytes:
        return sse({**self.envelope("error"), "code": code, "status": status, "message": message})

    # chat-type events

    def message(self, answer: str, *, selector: list[str] | None = None) -> bytes:
        return self.event("message", id=self.ctx.message_id, answer=answer, from_variable_selector=selector)

    def agent_message(self, answer: str) -> bytes:
        return self.event("agent_message", id=self.ctx.message_id, answer=answer)

    def agent_thought(
        self,
        thought_id: str,
        position: int,
        *,
        thought: str = "",
        observation: str = "",
        tool: str = "",
        tool_labels: dict[str, Any] | None = None,
        tool_input: str = "",
        message_files: list[str] | None = None,
    ) -> bytes:
        return self.event(
            "agent_thought",
            id=thought_id,
            position=position,
            thought=thought,
            observation=observation,
            tool=tool,
            tool_labels=tool_labels or {},
            tool_input=tool_input,
            message_files=message_files or [],
        )

    def message_file(self, file_id: str, url: str, *, file_type: str = "image") -> bytes:
        return self.event("message_file", id=file_id, type=file_type, belongs_to="assistant", url=url)

    def message_file_text(self, answer: str, *, selector: list[str] | None = None) -> bytes:
        """The quirk of chat apps whose message owns a file: text deltas sent as `message_file`."""
        return self.event("message_file", id=self.ctx.message_id, answer=answer, from_variable_selector=selector)

    def message_replace(self, answer: str, *, reason: str = "") -> bytes:
        return self.event("message_replace", answer=answer, reason=reason)

    def message_end(
        self,
        *,
        retriever_resources: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        annotation_reply: dict[str, Any] | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> bytes:
        return self.event(
            "message_end",
            id=self.ctx.message_id,
            metadata=metadata(retriever_resources, usage=usage, annotation_reply=annotation_reply),
            files=files,
        )

    # workflow-type events

    def node(self, node_id: str, node_type: str, title: str, index: int, predecessor: str | None) -> NodeSpec:
        exec_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.ctx.workflow_run_id}/{node_id}"))
        return NodeSpec(exec_id, node_id, node_type, title, index, predecessor)

    def flow_event(self, event: str, data: dict[str, Any]) -> bytes:
        return self.event(event, workflow_run_id=self.ctx.workflow_run_id, data=data)

    def sys_inputs(self) -> dict[str, Any]:
        ctx = self.ctx
        inputs: dict[str, Any] = dict(ctx.inputs)
        if self.mode != "workflow":
            inputs["sys.query"] = ctx.query
        inputs["sys.files"] = list(ctx.files)
        inputs["sys.user_id"] = self.end_user_id
        if self.mode != "workflow":
            inputs["sys.dialogue_count"] = 1
        inputs.update(
            {"sys.app_id": APP_ID, "sys.workflow_id": WORKFLOW_ID, "sys.workflow_run_id": ctx.workflow_run_id}
        )
        return inputs

    def workflow_started(self) -> bytes:
        ctx = self.ctx
        return self.flow_event(
            "workflow_started",
            {
                "id": ctx.workflow_run_id,
                "workflow_id": WORKFLOW_ID,
                "inputs": self.sys_inputs(),
                "created_at": ctx.created_at,
                "reason": "initial",
            },
        )

    def _node_head(self, node: NodeSpec, inputs: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": node.exec_id,
            "node_id": node.node_id,
            "node_type": node.node_type,
            "title": node.title,
            "index": node.index,
            "predecessor_node_id": node.predecessor_node_id,
            "inputs": inputs,
            "inputs_truncated": False,
        }

    def node_started(self, node: NodeSpec, *, inputs: dict[str, Any] | None = None) -> bytes:
        data = self._node_head(node, inputs) | {
            "created_at": self.ctx.created_at,
            "extras": {},
            "iteration_id": None,
            "loop_id": None,
            "agent_strategy": None,
        }
        return self.flow_event("node_started", data)

    def node_finished(
        self,
        node: NodeSpec,
        *,
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        status: str = "succeeded",
        error: str | None = None,
        elapsed_time: float = 0.01,
        execution_metadata: dict[str, Any] | None = None,
    ) -> bytes:
        data = self._node_head(node, inputs) | {
            "process_data": None,
            "process_data_truncated": False,
            "outputs": outputs,
            "outputs_truncated": False,
            "status": status,
            "error": error,
            "elapsed_time": elapsed_time,
            "execution_metadata": execution_metadata,
            "created_at": self.ctx.created_at,
            "finished_at": self.ctx.created_at,
            "files": [],
            "iteration_id": None,
            "loop_id": None,
        }
        return self.flow_event("node_finished", data)

    def text_chunk(self, text: str, *, selector: list[str] | None = None) -> bytes:
        return self.event("text_chunk", data={"text": text, "from_variable_selector": selector or ["llm", "text"]})

    def workflow_finished(
        self,
        status: str,
        outputs: dict[str, Any] | None,
        *,
        error: str | None = None,
        total_tokens: int = 524,
        total_steps: int = 3,
        exceptions_count: int = 0,
        files: list[dict[str, Any]] | None = None,
    ) -> bytes:
        ctx = self.ctx
        data: dict[str, Any] = {
            "id": ctx.workflow_run_id,
            "workflow_id": WORKFLOW_ID,
            "status": status,
            "outputs": outputs,
            "error": error,
            "elapsed_time": 2.73,
            "total_tokens": total_tokens,
            "total_steps": total_steps,
            "created_by": {"id": self.end_user_id, "user": ctx.user},
            "created_at": ctx.created_at,
            "finished_at": ctx.created_at + 3,
            "exceptions_count": exceptions_count,
            "files": files or [],
        }
        return self.flow_event("workflow_finished", data)

    # common node sequences

    def flow_head(self) -> list[bytes]:
        """`workflow_started`, the Start node, and the LLM node starting."""
        start_inputs = self.sys_inputs()
        return [
            self.workflow_started(),
            self.node_started(self.start),
            self.node_finished(self.start, inputs=start_inputs, outputs=start_inputs, elapsed_time=0.004),
            self.node_started(self.llm),
        ]

    def flow_tail(self, text: str) -> list[bytes]:
        """The LLM node finishing with `text`, then the Answer (Chatflow) or End (workflow) node."""
        last = self.end_node if self.mode == "workflow" else self.answer_node
        key = "text" if self.mode == "workflow" else "answer"
        return [
            self.node_finished(
                self.llm,
                outputs={"text": text, "usage": USAGE, "finish_reason": "stop"},
                elapsed_time=2.41,
                execution_metadata={"total_tokens": 524, "total_price": "0.000084", "currency": "USD"},
            ),
            self.node_started(last),
            self.node_finished(last, outputs={key: text}, elapsed_time=0.002),
        ]


def metadata(
    retriever_resources: list[dict[str, Any]] | None = None,
    *,
    usage: dict[str, Any] | None = None,
    annotation_reply: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "annotation_reply": annotation_reply,
        "retriever_resources": retriever_resources or [],
        "usage": usage or USAGE,
        "reasoning": {},
    }


# ---------------------------------------------------------------------------
# Generated transcripts for Answer / StreamError / stop
# ---------------------------------------------------------------------------


def with_ping(events: list[bytes]) -> list[bytes]:
    """Insert one `event: ping` block in the middle of `events`."""
    middle = (len(events) + 1) // 2
    return [*events[:middle], PING, *events[middle:]]


def spaced(events: list[bytes], delay: float) -> list[Step]:
    steps: list[Step] = []
    for index, block in enumerate(events):
        if index and delay > 0:
            steps.append(Delay(delay))
        steps.append(block)
    return steps


def _thought_id(ctx: ReplyContext, position: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.message_id}/thought/{position}"))


def answer_steps(ctx: ReplyContext, reply: Answer) -> list[Step]:
    ev = Events(ctx)
    text = reply.text
    chunks = split_words(text) if reply.chunks is None else reply.chunks
    events: list[bytes]
    if ctx.mode == "agent-chat":
        thought = _thought_id(ctx, 1)
        events = [
            ev.agent_thought(thought, 1),
            *with_ping([ev.agent_message(chunk) for chunk in chunks]),
            ev.agent_thought(thought, 1, thought=text),
            ev.message_end(),
        ]
    elif ctx.mode == "agent":
        events = [ev.message(text), PING, ev.message_end()]
    elif ctx.mode == "advanced-chat":
        selector = ["llm", "text"]
        events = [
            PING,
            *ev.flow_head(),
            *with_ping([ev.message(chunk, selector=selector) for chunk in chunks]),
            *ev.flow_tail(text),
            ev.message_end(files=[]),
            ev.workflow_finished("succeeded", {"answer": text}),
        ]
    elif ctx.mode == "workflow":
        events = [
            PING,
            *ev.flow_head(),
            *with_ping([ev.text_chunk(chunk) for chunk in chunks]),
            *ev.flow_tail(text),
            ev.workflow_finished("succeeded", {"text": text}),
        ]
    else:
        events = [
            *with_ping([ev.message(chunk) for chunk in chunks]),
            ev.message_end(),  # no knowledge base: a cited answer is its own transcript ("chat_with_citations")
        ]
    return spaced(events, reply.delay)


def stream_error_steps(ctx: ReplyContext, reply: StreamError) -> list[Step]:
    ev = Events(ctx)
    chunks = split_words(reply.after_text)
    head: list[bytes] = []
    deltas: list[bytes]
    if ctx.mode == "agent-chat":
        head = [ev.agent_thought(_thought_id(ctx, 1), 1)]
        deltas = [ev.agent_message(chunk) for chunk in chunks]
    elif ctx.mode == "advanced-chat":
        head = [PING, *ev.flow_head()]
        deltas = [ev.message(chunk, selector=["llm", "text"]) for chunk in chunks]
    elif ctx.mode == "workflow":
        head = [PING, *ev.flow_head()]
        deltas = [ev.text_chunk(chunk) for chunk in chunks]
    elif ctx.mode == "agent":
        deltas = [ev.message(reply.after_text)] if reply.after_text else []
    else:
        deltas = [ev.message(chunk) for chunk in chunks]
    return [*head, *with_ping(deltas), ev.error(reply.code, reply.message, status=reply.status)]


def stop_tail(ctx: ReplyContext) -> list[bytes]:
    """What Dify sends once a generated stream's task has been stopped (§5.1)."""
    ev = Events(ctx)
    if ctx.mode in ("advanced-chat", "workflow"):
        return [ev.workflow_finished("stopped", {}, error="Stopped by user.")]
    return [ev.message_end()]


def failed_run_steps(ctx: ReplyContext, error: str) -> list[Step]:
    """Dify 1.15's refusal after HTTP 200: ping, a synthetic `workflow_started` and a failed `workflow_finished`
    whose `task_id` is the run id, without conversation_id or message_id."""
    run = ctx.workflow_run_id
    started = {"id": run, "workflow_id": WORKFLOW_ID, "inputs": {}, "created_at": ctx.created_at, "reason": "initial"}
    finished: dict[str, Any] = {
        "id": run,
        "workflow_id": WORKFLOW_ID,
        "status": "failed",
        "outputs": None,
        "error": error,
        "elapsed_time": 0.0,
        "total_tokens": 0,
        "total_steps": 0,
        "created_by": {},
        "created_at": ctx.created_at,
        "finished_at": ctx.created_at,
        "exceptions_count": 1,
        "files": [],
    }
    return [
        PING,
        sse({"event": "workflow_started", "task_id": run, "workflow_run_id": run, "data": started}),
        sse({"event": "workflow_finished", "task_id": run, "workflow_run_id": run, "data": finished}),
    ]


def blocking_body(ctx: ReplyContext, text: str) -> dict[str, Any]:
    """The §2.3 (chat modes) or §5.8 (workflow) blocking response for an Answer."""
    if ctx.mode == "workflow":
        return {
            "task_id": ctx.task_id,
            "workflow_run_id": ctx.workflow_run_id,
            "data": {
                "id": ctx.workflow_run_id,
                "workflow_id": WORKFLOW_ID,
                "status": "succeeded",
                "outputs": {"text": text},
                "error": None,
                "elapsed_time": 2.73,
                "total_tokens": 524,
                "total_steps": 3,
                "created_at": ctx.created_at,
                "finished_at": ctx.created_at + 3,
            },
        }
    resources = [RETRIEVER_RESOURCE] if ctx.mode == "chat" else []
    return {
        "event": "message",
        "task_id": ctx.task_id,
        "id": ctx.message_id,
        "message_id": ctx.message_id,
        "conversation_id": ctx.conversation_id,
        "mode": ctx.mode,
        "answer": text,
        "metadata": metadata(resources),
        "created_at": ctx.created_at,
    }


# ---------------------------------------------------------------------------
# Request models (named like Dify's, so validation messages read the same)
# ---------------------------------------------------------------------------


class ChatRequestPayload(BaseModel):
    inputs: dict[str, Any]
    query: str
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None
    conversation_id: str | None = None
    retriever_from: str = Field(default="dev")
    auto_generate_name: bool = True
    workflow_id: str | None = None

    @field_validator("conversation_id", mode="before")
    @classmethod
    def normalize_conversation_id(cls, value: Any) -> str | None:
        if isinstance(value, str):
            value = value.strip()
        if not value:
            return None
        try:
            return str(uuid.UUID(str(value)))
        except ValueError as exc:
            raise ValueError("conversation_id must be a valid UUID") from exc


class WorkflowRunPayload(BaseModel):
    inputs: dict[str, Any]
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None


_ApiError = DifyApiError


def error_response(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else None
    return dify_json({"code": code, "message": message, "status": status}, status=status, headers=headers)


# Werkzeug's page for a route that does not exist (Dify answers unknown routes with HTML, not JSON).
NOT_FOUND_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check your "
    "spelling and try again.</p>\n"
)


_NOT_JSON = object()
_JSON_BODY = web.RequestKey("dify_fake_json_body", object)


# What a chat app whose model cannot be reached answers (reference real-dify-1.15/52_chat_stream.raw).
PLUGIN_DAEMON_DOWN = HttpError(
    400,
    "invalid_param",
    "Failed to request plugin daemon, url: plugin/9630bb80-cc01-492a-8fe7-69be1df1c381/management/models",
)


def _conversation_not_exists(route: str = "") -> _ApiError:
    """Dify's 404; on /chat-messages flask-restx appends its route suggestion to the message."""
    message = "Conversation Not Exists."
    if route == "/v1/chat-messages":
        message += (
            " You have requested this URI [/v1/chat-messages] but did you mean /v1/chat-messages or "
            "/api/chat-messages or /v1/chat-messages/<string:task_id>/stop ?"
        )
    return _ApiError(404, "not_found", message)


_MODE_MISMATCH = "Please check if your app mode matches the right API route."
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _LiveStream:
    wake: asyncio.Event
    stoppable: bool


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class FakeDify:
    """Dify Service API on 127.0.0.1, with Dify's auth and validation rules and scripted replies.

    Scripted replies are consumed only by calls that get past validation: HTTP-level replies
    (`HttpError`, `HtmlError`, `DropBeforeHeaders`) are taken before the conversation lookup, so a
    `404 Conversation Not Exists.` leaves a scripted stream reply queued for the retry.
    A stop request ends a running `Answer` / `StreamError` stream the way Dify does (`message_end`,
    or `workflow_finished{stopped}` for Chatflow/workflow); `Transcript` streams play on unchanged.

    Files (tests/fakes/dify_files.py, `self.files`): `file_upload` and `SizeLimits` shape /parameters and
    are enforced like Dify 1.15 (uploads over the size limit get 413; `files` are checked against the app's
    rules and the uploader, refused files never consume a scripted reply; with uploads off they are
    dropped); `received_files` is what Dify accepted. `/audio-to-text` takes only Dify's audio types and
    checks the bytes; `produce()` / `produce_output()` make signed links that expire with `clock`.
    """

    def __init__(
        self,
        *,
        api_key: str = "app-test-key",
        mode: str = "chat",
        name: str = "Test App",
        opening_statement: str = "Hello! Ask me anything.",
        chatflow_reuses_unknown: bool = True,
        workflow_required_inputs: tuple[str, ...] = (),
        files_enabled: bool = False,
        file_upload: FileUpload | None = None,
        speech_to_text: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.mode = mode
        self.name = name
        self.opening_statement = opening_statement
        self.chatflow_reuses_unknown = chatflow_reuses_unknown
        self.workflow_required_inputs = workflow_required_inputs
        self.user_input_form: list[dict[str, Any]] = []  # what /parameters lists as the app's input form
        self.files = FileSide(clock=clock)  # uploads, file checks, speech to text, signed file links
        # feedback and suggested questions
        self.controls = AnswerControls(owner=self._message_owner, mode=lambda: self.mode)
        if file_upload is not None:
            self.files.config = file_upload
        self.files.speech_to_text = speech_to_text
        if files_enabled:
            self.files_enabled = True
        self.requests: list[RecordedRequest] = []
        self.stops: list[str] = []
        self.conversations: dict[str, str] = {}
        self.messages: list[dict[str, Any]] = []
        self.server_errors: list[Exception] = []  # unexpected exceptions inside the fake itself
        self.default_reply: Callable[[ReplyContext], Reply] = echo_reply
        self._replies: deque[Reply] = deque()
        self._streams: dict[str, _LiveStream] = {}
        self._stopped: set[str] = set()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> FakeDify:
        app = web.Application(middlewares=[self._middleware], client_max_size=100 * 1024 * 1024)
        app.router.add_post("/v1/chat-messages", self._chat_messages)
        app.router.add_post("/v1/workflows/run", self._workflows_run)
        app.router.add_post("/v1/chat-messages/{task_id}/stop", self._chat_stop)
        app.router.add_post("/v1/workflows/tasks/{task_id}/stop", self._workflow_stop)
        app.router.add_delete("/v1/conversations/{conversation_id}", self._delete_conversation)
        app.router.add_get("/v1/info", self._info)
        app.router.add_get("/v1/parameters", self._parameters)
        app.router.add_get("/v1/messages", self._list_messages)
        app.router.add_post("/v1/messages/{message_id}/feedbacks", self._feedback)
        app.router.add_get("/v1/messages/{message_id}/suggested", self._suggested)
        app.router.add_post("/v1/files/upload", self._upload)
        app.router.add_post("/v1/audio-to-text", self._audio_to_text)
        app.router.add_get("/files/tools/{filename}", self.files.tool_file)
        app.router.add_get("/files/{file_id}/file-preview", self.files.file_preview)
        app.router.add_route("*", "/api/{tail:.*}", self._web_app_api)
        self._runner, self._port = await serve_locally(app, shutdown_timeout=1.0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        for stream in self._streams.values():
            stream.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def host_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeDify is not running; use `async with FakeDify() as dify:`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"{self.host_url}/v1"

    # --- scripting and inspection -------------------------------------------

    @property
    def files_enabled(self) -> bool:
        return self.files.config.enabled

    @files_enabled.setter
    def files_enabled(self, value: bool) -> None:
        self.files.config.enabled = value

    @property
    def uploads(self) -> dict[str, Any]:
        """Uploads by id (`StoredFile`: name, mime_type, size, user, data)."""
        return self.files.uploads

    @property
    def received_files(self) -> list[list[AcceptedFile]]:
        """The files of each chat-messages / workflows/run request that Dify accepted with files."""
        return self.files.received

    def produce(self, data: bytes, *, name: str = "chart.png", mime_type: str = "image/png") -> str:
        """Keep a file as if a tool made it; returns its relative signed `/files/tools/...` link."""
        return self.files.tool_file_url(self.files.store(data, name=name, mime_type=mime_type))

    def produce_output(
        self, data: bytes, *, name: str = "report.png", mime_type: str = "image/png", file_type: str = "image"
    ) -> dict[str, Any]:
        """A workflow output file: Dify's file object with an absolute signed `file-preview` link."""
        stored = self.files.store(data, name=name, mime_type=mime_type)
        return dify_file(stored, self.files.preview_url(stored.id, self.host_url), file_type=file_type)

    def script_transcript(self, *texts: str) -> None:
        """What the next /audio-to-text calls answer (default: a text naming the audio's size)."""
        self.files.transcripts.extend(texts)

    def script(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    def chat_requests(self) -> list[dict[str, Any]]:
        paths = ("/v1/chat-messages", "/v1/workflows/run")
        return [r.json for r in self.requests if r.method == "POST" and r.path in paths and isinstance(r.json, dict)]

    # --- plumbing ------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        raw = b"" if request.content_type == "multipart/form-data" else await request.read()
        body: Any = _NOT_JSON
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = _NOT_JSON
        request[_JSON_BODY] = body
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                json=None if body is _NOT_JSON else body,
                headers=dict(request.headers),
                query=dict(request.query),
            )
        )
        try:
            return await handler(request)
        except _ApiError as err:
            return error_response(err.status, err.code, err.message)
        except web.HTTPNotFound:
            return web.Response(status=404, text=NOT_FOUND_HTML, content_type="text/html")
        except web.HTTPMethodNotAllowed:
            return error_response(405, "method_not_allowed", "The method is not allowed for the requested URL.")
        except Exception as exc:
            self.server_errors.append(exc)
            raise

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        parts = header.split(None, 1) if header is not None else []
        if header is None or " " not in header or len(parts) != 2:
            raise _ApiError(401, "unauthorized", "Authorization header must be provided and start with 'Bearer'")
        scheme, token = parts
        if scheme.lower() != "bearer":
            raise _ApiError(401, "unauthorized", "Authorization scheme must be 'Bearer'")
        if token != self.api_key:
            raise _ApiError(401, "unauthorized", "Access token is invalid")

    @staticmethod
    def _json_body(request: web.Request) -> dict[str, Any]:
        """Flask's `request.get_json()`: JSON content type and a JSON object, or an error."""
        content_type = request.content_type
        if not (content_type == "application/json" or re.fullmatch(r"application/.+\+json", content_type)):
            raise _ApiError(
                415,
                "unsupported_media_type",
                "Did not attempt to load JSON data because the request Content-Type was not 'application/json'.",
            )
        body = request[_JSON_BODY]
        if not isinstance(body, dict):
            raise _ApiError(400, "bad_request", "Invalid JSON payload received or JSON payload is empty.")
        return body

    @staticmethod
    def _user(source: Mapping[str, Any], *, required: bool) -> str:
        user = source.get("user")
        if not user:
            if required:
                raise _ApiError(400, "invalid_param", "Arg user must be provided.")
            return "DEFAULT-USER"
        return str(user)

    def _take_reply(self, ctx: ReplyContext) -> Reply:
        return self._replies.popleft() if self._replies else self.default_reply(ctx)

    def _queued_http_reply(self) -> HttpReply | None:
        """Pop a queued HttpError / HtmlError / DropBeforeHeaders: those happen before the generator."""
        if self._replies and isinstance(self._replies[0], HttpError | HtmlError | DropBeforeHeaders | RawHttp):
            head = self._replies.popleft()
            assert isinstance(head, HttpError | HtmlError | DropBeforeHeaders | RawHttp)
            return head
        return None

    @staticmethod
    def _http_reply(request: web.Request, reply: HttpReply) -> web.StreamResponse:
        if isinstance(reply, HttpError):
            return error_response(reply.status, reply.code, reply.message)
        if isinstance(reply, HtmlError):
            return web.Response(status=reply.status, text=reply.body, content_type="text/html")
        if isinstance(reply, RawHttp):
            return web.Response(status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type})
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never sent: the transport is already closing

    # --- generation endpoints -------------------------------------------------

    async def _chat_messages(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        body = self._json_body(request)
        user = self._user(body, required=True)
        mode = self.mode
        if mode not in CHAT_MODES:
            raise _ApiError(400, "not_chat_app", _MODE_MISMATCH)
        try:
            payload = ChatRequestPayload.model_validate(body)
        except ValidationError as exc:
            raise _ApiError(400, "invalid_param", str(exc)) from exc
        response_mode = payload.response_mode or ("streaming" if mode == "agent" else "blocking")
        if mode == "agent" and response_mode == "blocking":
            raise _ApiError(400, "bad_request", "Agent App only supports streaming response mode.")
        early = self._queued_http_reply()
        if early is not None:
            return self._http_reply(request, early)
        if payload.query == "":
            if mode != "advanced-chat" or response_mode != "streaming":
                raise _ApiError(400, "invalid_param", "query is required")
            return await self._failed_run(request, mode, user, "query is required")
        conversation_id = payload.conversation_id
        if conversation_id is not None and self.conversations.get(conversation_id) != user:
            if not (mode == "advanced-chat" and self.chatflow_reuses_unknown):
                raise _conversation_not_exists(request.path)
            conversation_id = None
        is_new = conversation_id is None
        try:
            accepted = self.files.accept(payload.files, user=user)
        except FileRefused as refused:
            if mode != "advanced-chat" or response_mode != "streaming":
                raise _ApiError(400, "invalid_param", str(refused)) from None
            return await self._failed_run(request, mode, user, str(refused))
        ctx = self._context(
            mode, user, payload.inputs, payload.query, conversation_id or str(uuid.uuid4()), self._sys_files(accepted)
        )
        reply = self._take_reply(ctx)
        if isinstance(reply, HttpError | HtmlError | DropBeforeHeaders | RawHttp):
            return self._http_reply(request, reply)
        if is_new:
            self.conversations[ctx.conversation_id] = user
        return await self._respond(request, ctx, reply, streaming=response_mode == "streaming")

    async def _workflows_run(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        body = self._json_body(request)
        user = self._user(body, required=True)
        if self.mode != "workflow":
            raise _ApiError(400, "not_workflow_app", _MODE_MISMATCH)
        try:
            payload = WorkflowRunPayload.model_validate(body)
        except ValidationError as exc:
            raise _ApiError(400, "invalid_param", str(exc)) from exc
        early = self._queued_http_reply()
        if early is not None:
            return self._http_reply(request, early)
        missing = [name for name in self.workflow_required_inputs if not payload.inputs.get(name)]
        if missing and payload.response_mode == "streaming":
            return await self._failed_run(request, "workflow", user, f"{missing[0]} is required in input form")
        if missing:
            raise _ApiError(400, "invalid_param", f"{missing[0]} is required in input form")
        try:
            accepted = self.files.accept(payload.files, user=user)
        except FileRefused as refused:
            if payload.response_mode != "streaming":
                raise _ApiError(400, "invalid_param", str(refused)) from None
            return await self._failed_run(request, "workflow", user, str(refused))
        query = payload.inputs.get("query")
        text = query if isinstance(query, str) else ""
        ctx = self._context("workflow", user, payload.inputs, text, "", self._sys_files(accepted))
        reply = self._take_reply(ctx)
        if isinstance(reply, HttpError | HtmlError | DropBeforeHeaders | RawHttp):
            return self._http_reply(request, reply)
        return await self._respond(request, ctx, reply, streaming=payload.response_mode == "streaming")

    async def _failed_run(self, request: web.Request, mode: str, user: str, error: str) -> web.StreamResponse:
        """A refusal Dify 1.15 reports after HTTP 200: ping, synthetic workflow_started, failed run."""
        ctx = self._context(mode, user, {}, "", "")
        return await self._stream(request, ctx, failed_run_steps(ctx, error), stoppable=False)

    def _sys_files(self, accepted: list[AcceptedFile]) -> tuple[dict[str, Any], ...]:
        return tuple(sys_file(item, self.host_url, self.files) for item in accepted)

    @staticmethod
    def _context(
        mode: str,
        user: str,
        inputs: dict[str, Any],
        query: str,
        conversation_id: str,
        files: tuple[dict[str, Any], ...] = (),
    ) -> ReplyContext:
        return ReplyContext(
            query=query,
            user=user,
            inputs=inputs,
            conversation_id=conversation_id,
            message_id=str(uuid.uuid4()),
            task_id=str(uuid.uuid4()),
            workflow_run_id=str(uuid.uuid4()),
            mode=mode,
            created_at=int(time.time()),
            files=files,
        )

    async def _respond(
        self, request: web.Request, ctx: ReplyContext, reply: StreamReply, *, streaming: bool
    ) -> web.StreamResponse:
        answer, status, error = "", "normal", None
        if isinstance(reply, Answer):
            answer = reply.text
        elif isinstance(reply, StreamError):
            answer, status, error = reply.after_text, "error", reply.message
        if ctx.conversation_id:
            self._record_message(ctx, answer=answer, status=status, error=error)
        if isinstance(reply, Transcript):
            return await self._stream(request, ctx, reply.build(ctx), stoppable=False)
        if isinstance(reply, StreamError):
            if not streaming:
                raise _ApiError(reply.status, reply.code, reply.message)
            return await self._stream(request, ctx, stream_error_steps(ctx, reply), stoppable=True)
        if not streaming:
            chunks = split_words(reply.text) if reply.chunks is None else reply.chunks
            await asyncio.sleep(reply.delay * len(chunks))
            return web.json_response(blocking_body(ctx, reply.text))
        return await self._stream(request, ctx, answer_steps(ctx, reply), stoppable=True)

    def _record_message(self, ctx: ReplyContext, *, answer: str, status: str, error: str | None) -> None:
        self.messages.append(
            {
                "id": ctx.message_id,
                "conversation_id": ctx.conversation_id,
                "parent_message_id": None,
                "inputs": ctx.inputs,
                "query": ctx.query,
                "answer": answer,
                "feedback": None,
                "retriever_resources": [],
                "created_at": ctx.created_at,
                "agent_thoughts": [],
                "message_files": [message_file(item) for item in ctx.files],
                "status": status,
                "error": error,
                "extra_contents": [],
            }
        )

    async def _stream(
        self, request: web.Request, ctx: ReplyContext, steps: list[Step], *, stoppable: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"},
        )
        response.enable_chunked_encoding()
        response.force_close()  # the connection closes after the last event
        live = _LiveStream(wake=asyncio.Event(), stoppable=stoppable)
        self._streams[ctx.task_id] = live
        try:
            await response.prepare(request)
            request.writer.send_headers()
            await self._play(request, response, ctx, steps, live)
        except ConnectionError:
            pass  # the client went away; aiohttp handles the rest
        finally:
            self._streams.pop(ctx.task_id, None)
        return response

    async def _play(
        self,
        request: web.Request,
        response: web.StreamResponse,
        ctx: ReplyContext,
        steps: list[Step],
        live: _LiveStream,
    ) -> None:
        for step in steps:
            if self._closing:
                await self._drop(request)
                return
            if live.stoppable and ctx.task_id in self._stopped:
                for block in stop_tail(ctx):
                    await response.write(block)
                break
            if isinstance(step, bytes):
                await response.write(step)
            elif isinstance(step, Delay):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(live.wake.wait(), step.seconds)
            elif isinstance(step, Drop):
                await self._drop(request)
                return
            elif isinstance(step, Mark):
                step.callback()
            else:
                bounds = [0, *sorted(set(step.at)), len(step.data)]
                for start, end in itertools.pairwise(bounds):
                    if end > start:
                        await response.write(step.data[start:end])
                        await request.writer.drain()
                        await asyncio.sleep(SPLIT_PAUSE)
        await response.write_eof()

    @staticmethod
    async def _drop(request: web.Request) -> None:
        await request.writer.drain()
        if request.transport is not None:
            request.transport.close()

    # --- other endpoints --------------------------------------------------------

    def _stop(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        self.stops.append(task_id)
        self._stopped.add(task_id)
        live = self._streams.get(task_id)
        if live is not None and live.stoppable:
            live.wake.set()
        return dify_json({"result": "success"})

    async def _chat_stop(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        self._user(self._json_body(request), required=True)
        if self.mode not in CHAT_MODES:
            raise _ApiError(400, "not_chat_app", _MODE_MISMATCH)
        return self._stop(request)

    async def _workflow_stop(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        self._user(self._json_body(request), required=True)
        if self.mode != "workflow":
            raise _ApiError(400, "not_workflow_app", _MODE_MISMATCH)
        return self._stop(request)

    async def _delete_conversation(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        user = self._user(self._json_body(request), required=False)
        if self.mode not in CHAT_MODES:
            raise _ApiError(400, "not_chat_app", _MODE_MISMATCH)
        try:
            conversation_id = str(uuid.UUID(request.match_info["conversation_id"]))
        except ValueError:
            raise web.HTTPNotFound() from None
        if self.conversations.get(conversation_id) != user:
            raise _conversation_not_exists(request.path)
        del self.conversations[conversation_id]
        return web.Response(status=204)

    async def _info(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return dify_json(
            {
                "name": self.name,
                "description": "A fake Dify app for tests.",
                "tags": [],
                "mode": self.mode,
                "author_name": "Test Author",
            }
        )

    async def _parameters(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        files = self.files.parameters_json(self.mode)
        return dify_json(
            {
                "opening_statement": self.opening_statement,
                **self.controls.parameters(),
                "speech_to_text": files["speech_to_text"],
                "text_to_speech": {"enabled": False, "voice": "", "language": "", "autoPlay": "disabled"},
                "retriever_resource": {"enabled": True},
                "annotation_reply": {"enabled": False},
                "more_like_this": {"enabled": False},
                "user_input_form": self.user_input_form,
                "sensitive_word_avoidance": {"enabled": False, "type": "", "configs": []},
                "file_upload": files["file_upload"],
                "system_parameters": files["system_parameters"],
            }
        )

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        """POST /files/upload (tests/fakes/dify_files.py): streamed to disk, size-checked, 201."""
        self._authorize(request)
        return await self.files.upload(request, self.host_url)

    async def _audio_to_text(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return await self.files.audio_to_text(request)

    def _message_owner(self, message_id: str) -> str | None:
        for message in self.messages:
            if message["id"] == message_id:
                return self.conversations.get(message["conversation_id"])
        return None

    async def _feedback(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return await self.controls.feedback(request, self._json_body(request))

    async def _suggested(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        return await self.controls.suggested(request)

    async def _list_messages(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        user = self._user(request.query, required=True)
        conversation_id = request.query.get("conversation_id", "")
        if not conversation_id or self.conversations.get(conversation_id) != user:
            raise _conversation_not_exists(request.path)
        data = [m for m in self.messages if m["conversation_id"] == conversation_id]
        limit = 20
        return dify_json({"limit": limit, "has_more": len(data) > limit, "data": data[-limit:]})

    async def _web_app_api(self, request: web.Request) -> web.StreamResponse:
        """Dify's web-app API, which a base URL ending in /api reaches: it wants a web-app passport, not a key."""
        raise _ApiError(401, "unauthorized", "App token is missing.")
