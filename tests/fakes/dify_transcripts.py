"""Scripted Dify SSE transcripts (reference §4 and known quirks) with the expected client result."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.dify import (
    PING,
    RETRIEVER_RESOURCE,
    WORKFLOW_ID,
    Drop,
    Events,
    RawHttp,
    Reply,
    ReplyContext,
    SplitWrite,
    Step,
    Transcript,
    metadata,
    split_words,
    sse,
)

Builder = Callable[[ReplyContext], list[Step]]

CHATFLOW_SELECTOR = ["llm", "text"]
TOOL_LABELS = {"current_time": {"en_US": "Current Time", "zh_Hans": "获取当前时间"}}
IMAGE_FILE_ID = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
# Relative, as with the self-hosted default FILES_URL=""; FakeDify serves it under `host_url`.
IMAGE_FILE_URL = "/files/tools/9f2b7c1e-4d3a-4b5c-8e6f-7a8b9c0d1e2f.png?timestamp=1751364003&nonce=5c1f&sign=q2Zk"
ANNOTATION_TEXT = "Office hours: 9am to 5pm, Monday to Friday."
HUGE_STRING_BYTES = 5 * 1024 * 1024
MULTIBYTE_CHUNKS = ["你好，", "退款须在", "30天内申请", "🌏👍！"]
EMPTY_USAGE: dict[str, Any] = {
    "prompt_tokens": 0,
    "prompt_unit_price": "0",
    "prompt_price_unit": "0",
    "prompt_price": "0",
    "completion_tokens": 0,
    "completion_unit_price": "0",
    "completion_price_unit": "0",
    "completion_price": "0",
    "total_tokens": 0,
    "total_price": "0",
    "currency": "USD",
    "latency": 0.0,
    "time_to_first_token": None,
    "time_to_generate": None,
}


def _id(ctx: ReplyContext, name: str) -> str:
    """A stable id derived from the reply, so repeated events can share it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.message_id}/{name}"))


# --- chat -------------------------------------------------------------------


def chat_with_citations(ctx: ReplyContext) -> list[Step]:
    """§4.1: plain chat answer with citations."""
    ev = Events(ctx, mode="chat")
    return [
        ev.message("Refunds"),
        ev.message(" are accepted within 30 days"),
        PING,
        ev.message(" of delivery."),
        ev.message_end(retriever_resources=[RETRIEVER_RESOURCE]),
    ]


def chat_error_mid_stream(ctx: ReplyContext) -> list[Step]:
    """§4.4: provider failure after some tokens; no `message_end`."""
    ev = Events(ctx, mode="chat")
    return [
        ev.message("The answer is"),
        PING,
        ev.error("completion_request_error", "[openai] Server Unavailable Error, Service Unavailable"),
    ]


def moderation_replace(ctx: ReplyContext) -> list[Step]:
    """§4.5: output moderation overwrites the streamed text."""
    ev = Events(ctx, mode="chat")
    return [
        ev.message("Sure, here is how to"),
        PING,
        ev.message(" pick a lock: first"),
        ev.message_replace("Sorry, I can't help with that."),
        ev.message_end(),
    ]


def annotation_reply_char_by_char(ctx: ReplyContext) -> list[Step]:
    """§4.5: an annotation reply streamed one character per `message`, empty usage."""
    ev = Events(ctx, mode="chat")
    chars = [ev.message(char) for char in ANNOTATION_TEXT]
    annotation = {"id": _id(ctx, "annotation"), "account": {"id": _id(ctx, "account"), "name": "Support"}}
    middle = len(chars) // 2
    return [
        *chars[:middle],
        PING,
        *chars[middle:],
        ev.message_end(usage=EMPTY_USAGE, annotation_reply=annotation),
    ]


def message_file_text_quirk(ctx: ReplyContext) -> list[Step]:
    """Once the message owns an assistant file, text deltas arrive as `message_file` with `answer`."""
    ev = Events(ctx, mode="chat")
    return [
        ev.message("Here is the logo"),
        ev.message_file(IMAGE_FILE_ID, IMAGE_FILE_URL),
        ev.message_file_text(" you asked"),
        PING,
        ev.message_file_text(" for."),
        ev.message_end(),
    ]


def unknown_events(ctx: ReplyContext) -> list[Step]:
    """Events and fields a client does not know must be skipped, never fatal."""
    ev = Events(ctx, mode="chat")
    reasoning = {
        "message_id": ctx.message_id,
        "reasoning": "The user greets.",
        "node_id": None,
        "is_final": True,
    }
    agent_log = {
        "node_execution_id": _id(ctx, "node-exec"),
        "id": _id(ctx, "log"),
        "label": "ROUND 1",
        "parent_id": None,
        "error": None,
        "status": "success",
        "data": {"output": "ok"},
        "metadata": {"elapsed_time": 0.1},
        "node_id": "agent",
    }
    return [
        ev.event("reasoning_chunk", data=reasoning),
        ev.message("Hello,"),
        ev.event("tts_message", audio="SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU4Ljc2LjEwMAAAAAAAAAAAAAAA"),
        ev.event("agent_log", data=agent_log),
        PING,
        ev.event("future_event_xyz", weird=[1, {"x": None}], nested={"deep": {"deeper": "值"}}),
        ev.event("message", id=ctx.message_id, answer=" world.", from_variable_selector=None, x_new={"a": 1}),
        ev.event("message_end", id=ctx.message_id, metadata=metadata(), files=None, x_future_field=1),
        ev.event("tts_message_end", audio=""),
    ]


def multibyte_split(ctx: ReplyContext) -> list[Step]:
    """Chinese and emoji text whose writes are cut inside UTF-8 sequences and inside the framing."""
    ev = Events(ctx, mode="chat")
    blocks = [ev.message(chunk) for chunk in MULTIBYTE_CHUNKS]
    data = b"".join([*blocks[:2], PING, *blocks[2:], ev.message_end()])
    cuts: set[int] = set()
    for char, inside in (("你", 1), ("，", 2), ("退", 1), ("天", 2), ("🌏", 1), ("👍", 3), ("！", 2)):
        cuts.add(data.index(char.encode()) + inside)
    cuts.add(data.index(b"\n\n") + 1)  # between the two newlines ending the first event
    cuts.add(data.index(b"event: ping") + 3)
    cuts.add(data.index(b'"answer"') + 2)
    return [SplitWrite(data, sorted(cuts))]


def eof_without_outcome(ctx: ReplyContext) -> list[Step]:
    """Text, then a clean close without any outcome event."""
    ev = Events(ctx, mode="chat")
    return [ev.message("The build"), PING, ev.message(" is still")]


def dropped_mid_stream(ctx: ReplyContext) -> list[Step]:
    """Text, then the connection is cut inside the chunked body."""
    ev = Events(ctx, mode="chat")
    return [ev.message("Let me"), PING, ev.message(" check that"), Drop()]


# --- agent ------------------------------------------------------------------


def _tool_call(
    ctx: ReplyContext, tool: str, tool_input: str, observation: str, files: list[str], url: str = IMAGE_FILE_URL
) -> list[bytes]:
    ev = Events(ctx, mode="agent-chat")
    th1 = _id(ctx, "thought-1")
    labels = TOOL_LABELS if tool == "current_time" else {tool: {"en_US": "Chart", "zh_Hans": "图表"}}
    blocks = [
        ev.agent_thought(th1, 1),
        ev.agent_thought(th1, 1, tool=tool, tool_labels=labels, tool_input=tool_input),
    ]
    if files:
        blocks.append(ev.message_file(files[0], url))
    blocks.append(
        ev.agent_thought(
            th1,
            1,
            observation=observation,
            tool=tool,
            tool_labels=labels,
            tool_input=tool_input,
            message_files=files,
        )
    )
    return blocks


def _agent_answer(ctx: ReplyContext, deltas: list[str]) -> list[bytes]:
    ev = Events(ctx, mode="agent-chat")
    th2 = _id(ctx, "thought-2")
    return [
        ev.agent_thought(th2, 2),
        *[ev.agent_message(delta) for delta in deltas],
        PING,
        ev.agent_thought(th2, 2, thought="".join(deltas)),
        ev.message_end(usage={**EMPTY_USAGE, "prompt_tokens": 880, "completion_tokens": 71, "total_tokens": 951}),
    ]


def agent_with_tool(ctx: ReplyContext) -> list[Step]:
    """§4.2: function-calling agent; thought ids repeat as the thought fills in."""
    tool_input = '{"current_time": {"timezone": "UTC"}}'
    observation = '{"current_time": "2026-07-01 10:00:00 UTC"}'
    return [
        *_tool_call(ctx, "current_time", tool_input, observation, []),
        *_agent_answer(ctx, ["It is", " 10:00 UTC."]),
    ]


def agent_with_image_file(ctx: ReplyContext) -> list[Step]:
    """§4.2 variant: the tool returns an image (`message_file` with a relative url)."""
    tool_input = '{"generate_chart": {"metric": "sales"}}'
    observation = "image has been created and sent to user already"
    return [
        *_tool_call(ctx, "generate_chart", tool_input, observation, [IMAGE_FILE_ID]),
        *_agent_answer(ctx, ["Here is", " the sales chart."]),
    ]


# --- files the app produces (built per test around links FakeDify serves) ---------------------


def agent_tool_image(url: str, deltas: list[str]) -> Builder:
    """An agent whose tool made an image: `message_file` with `url` (from `FakeDify.produce`), then `deltas`."""

    def build(ctx: ReplyContext) -> list[Step]:
        tool_input = '{"generate_chart": {"metric": "sales"}}'
        observation = "image has been created and sent to user already"
        file_id = _id(ctx, "tool-file")
        return [
            *_tool_call(ctx, "generate_chart", tool_input, observation, [file_id], url),
            *_agent_answer(ctx, deltas),
        ]

    return build


def chatflow_with_files(text: str, files: list[dict[str, Any]]) -> Builder:
    """A Chatflow whose answer carries files (`FakeDify.produce_output`) in `message_end` and `workflow_finished`."""

    def build(ctx: ReplyContext) -> list[Step]:
        ev = Events(ctx, mode="advanced-chat")
        return [
            *_chatflow_body(ev, split_words(text)),
            ev.message_end(files=files),
            ev.workflow_finished("succeeded", {"answer": text, "files": files}, files=files),
        ]

    return build


def workflow_with_files(text: str, files: list[dict[str, Any]]) -> Builder:
    """A workflow with file outputs, streamed as real Dify 1.15 does (file 44): the text, then one Markdown
    image link per file as `text_chunk`s; `workflow_finished` holds the outputs and the files."""

    def build(ctx: ReplyContext) -> list[Step]:
        ev = Events(ctx, mode="workflow")
        outputs: dict[str, Any] = {"answer": text}
        chunks = [ev.text_chunk(text, selector=["start", "query"])]
        for index, file in enumerate(files):
            outputs[f"file_{index}"] = file
            chunks.append(ev.text_chunk("\n", selector=["end", "answer"]))
            chunks.append(ev.text_chunk(f"![{file['filename']}]({file['url']})", selector=["end", f"file_{index}"]))
        return [PING, ev.workflow_started(), *chunks, ev.workflow_finished("succeeded", outputs, files=files)]

    return build


# --- chatflow -----------------------------------------------------------------


def _chatflow_body(ev: Events, deltas: list[str]) -> list[bytes]:
    messages = [ev.message(delta, selector=CHATFLOW_SELECTOR) for delta in deltas]
    return [PING, *ev.flow_head(), messages[0], PING, *messages[1:], *ev.flow_tail("".join(deltas))]


def chatflow(ctx: ReplyContext) -> list[Step]:
    """§4.3: Start → LLM → Answer, `message_end` then `workflow_finished`."""
    ev = Events(ctx, mode="advanced-chat")
    text = "Ticket 42 is a refund request."
    return [
        *_chatflow_body(ev, ["Ticket 42", " is a refund request."]),
        ev.message_end(files=[]),
        ev.workflow_finished("succeeded", {"answer": text}, total_tokens=321),
    ]


def chatflow_ends_at_workflow_finished(ctx: ReplyContext) -> list[Step]:
    """Chatflow whose relay closes right after `workflow_finished` (no `message_end`)."""
    ev = Events(ctx, mode="advanced-chat")
    text = "Ticket 42 is a refund request."
    return [
        *_chatflow_body(ev, ["Ticket 42", " is a refund request."]),
        ev.workflow_finished("succeeded", {"answer": text}, total_tokens=321),
    ]


def chatflow_llm_failed(ctx: ReplyContext) -> list[Step]:
    """§4.4: the LLM node fails; the stream ends at the failed `workflow_finished`."""
    ev = Events(ctx, mode="advanced-chat")
    error = "[openai] Rate Limit Error, Rate limit reached for requests"
    return [
        PING,
        *ev.flow_head(),
        ev.node_finished(ev.llm, status="failed", error=error, elapsed_time=0.52),
        ev.workflow_finished("failed", {}, error=error, total_tokens=0, total_steps=2),
    ]


def chatflow_failed_before_start(ctx: ReplyContext) -> list[Step]:
    """§4.4: synthetic failure events without conversation_id/message_id; task_id is the run id."""
    run = ctx.workflow_run_id
    started = {
        "id": run,
        "workflow_id": WORKFLOW_ID,
        "inputs": {},
        "created_at": ctx.created_at,
        "reason": "initial",
    }
    finished: dict[str, Any] = {
        "id": run,
        "workflow_id": WORKFLOW_ID,
        "status": "failed",
        "outputs": None,
        "error": "query is required",
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


def huge_line(ctx: ReplyContext) -> list[Step]:
    """A `node_finished` carrying a 5 MB document on one line, then a normal answer."""
    ev = Events(ctx, mode="advanced-chat")
    retrieval = ev.node("knowledge", "knowledge-retrieval", "Knowledge Retrieval", 2, ev.start.node_id)
    document = ("Lorem ipsum dolor sit amet, 數據 " * (HUGE_STRING_BYTES // 20))[:HUGE_STRING_BYTES]
    deltas = ["Found it", " in the archive."]
    text = "".join(deltas)
    return [
        PING,
        ev.workflow_started(),
        ev.node_started(ev.start),
        ev.node_finished(ev.start, outputs={"sys.query": ctx.query}),
        ev.node_started(retrieval),
        ev.node_finished(retrieval, outputs={"result": [{"content": document, "title": "archive.txt"}]}),
        ev.node_started(ev.llm),
        ev.message(deltas[0], selector=CHATFLOW_SELECTOR),
        PING,
        ev.message(deltas[1], selector=CHATFLOW_SELECTOR),
        *ev.flow_tail(text),
        ev.message_end(files=[]),
        ev.workflow_finished("succeeded", {"answer": text}),
    ]


# --- workflow ------------------------------------------------------------------


def workflow_app(ctx: ReplyContext) -> list[Step]:
    """Workflow app: `text_chunk` is only a preview; `workflow_finished.data.outputs` is authoritative."""
    ev = Events(ctx, mode="workflow")
    final = "The quarterly summary is ready: revenue grew 12%."
    return [
        *ev.flow_head(),
        ev.text_chunk("The quarterly"),
        PING,
        ev.text_chunk(" summary"),
        *ev.flow_tail(final),
        ev.workflow_finished("succeeded", {"text": final}),
    ]


def workflow_failed(ctx: ReplyContext) -> list[Step]:
    """Workflow app whose LLM node fails after a preview chunk."""
    ev = Events(ctx, mode="workflow")
    error = "[openai] Server Unavailable Error, Service Unavailable"
    return [
        *ev.flow_head(),
        ev.text_chunk("Looking up"),
        PING,
        ev.node_finished(ev.llm, status="failed", error=error),
        ev.workflow_finished("failed", {}, error=error, total_steps=2),
    ]


def workflow_stopped(ctx: ReplyContext) -> list[Step]:
    """Workflow app stopped by the user mid-answer."""
    ev = Events(ctx, mode="workflow")
    return [
        *ev.flow_head(),
        ev.text_chunk("The report"),
        PING,
        ev.text_chunk(" covers"),
        ev.workflow_finished("stopped", {}, error="Stopped by user.", total_steps=2),
    ]


TRANSCRIPTS: dict[str, Builder] = {
    builder.__name__: builder
    for builder in (
        chat_with_citations,
        agent_with_tool,
        agent_with_image_file,
        chatflow,
        chatflow_ends_at_workflow_finished,
        chat_error_mid_stream,
        chatflow_llm_failed,
        chatflow_failed_before_start,
        moderation_replace,
        annotation_reply_char_by_char,
        message_file_text_quirk,
        workflow_app,
        workflow_failed,
        workflow_stopped,
        huge_line,
        unknown_events,
        multibyte_split,
        eof_without_outcome,
        dropped_mid_stream,
    )
}

# The app mode each transcript belongs to (the FakeDify `mode` to serve it with).
MODES: dict[str, str] = {
    "chat_with_citations": "chat",
    "agent_with_tool": "agent-chat",
    "agent_with_image_file": "agent-chat",
    "chatflow": "advanced-chat",
    "chatflow_ends_at_workflow_finished": "advanced-chat",
    "chat_error_mid_stream": "chat",
    "chatflow_llm_failed": "advanced-chat",
    "chatflow_failed_before_start": "advanced-chat",
    "moderation_replace": "chat",
    "annotation_reply_char_by_char": "chat",
    "message_file_text_quirk": "chat",
    "workflow_app": "workflow",
    "workflow_failed": "workflow",
    "workflow_stopped": "workflow",
    "huge_line": "advanced-chat",
    "unknown_events": "chat",
    "multibyte_split": "chat",
    "eof_without_outcome": "chat",
    "dropped_mid_stream": "chat",
}

EXPECTED_ANSWERS: dict[str, str] = {
    "chat_with_citations": "Refunds are accepted within 30 days of delivery.",
    "agent_with_tool": "It is 10:00 UTC.",
    "agent_with_image_file": "Here is the sales chart.",
    "chatflow": "Ticket 42 is a refund request.",
    "chatflow_ends_at_workflow_finished": "Ticket 42 is a refund request.",
    "chat_error_mid_stream": "The answer is",
    "chatflow_llm_failed": "",
    "chatflow_failed_before_start": "",
    "moderation_replace": "Sorry, I can't help with that.",
    "annotation_reply_char_by_char": ANNOTATION_TEXT,
    "message_file_text_quirk": "Here is the logo you asked for.",
    "workflow_app": "The quarterly summary is ready: revenue grew 12%.",
    "workflow_failed": "Looking up",
    "workflow_stopped": "The report covers",
    "huge_line": "Found it in the archive.",
    "unknown_events": "Hello, world.",
    "multibyte_split": "".join(MULTIBYTE_CHUNKS),
    "eof_without_outcome": "The build is still",
    "dropped_mid_stream": "Let me check that",
}

EXPECTED_OUTCOME: dict[str, str] = {
    "chat_with_citations": "done",
    "agent_with_tool": "done",
    "agent_with_image_file": "done",
    "chatflow": "done",
    "chatflow_ends_at_workflow_finished": "done",
    "chat_error_mid_stream": "error:completion_request_error",
    "chatflow_llm_failed": "error:workflow_failed",
    "chatflow_failed_before_start": "error:workflow_failed",
    "moderation_replace": "done",
    "annotation_reply_char_by_char": "done",
    "message_file_text_quirk": "done",
    "workflow_app": "done",
    "workflow_failed": "error:workflow_failed",
    "workflow_stopped": "stopped",
    "huge_line": "done",
    "unknown_events": "done",
    "multibyte_split": "done",
    "eof_without_outcome": "unknown",
    "dropped_mid_stream": "error:transport",
}


# --- real Dify 1.15 responses, replayed byte for byte ---------------------------------

REAL_DIFY = Path(__file__).parent / "real_dify_1_15"  # NN_name.raw: status line, headers, body as received


def _dechunk(body: bytes) -> list[bytes]:
    """The chunks of a chunked body, each kept whole so it is written (and read) as one piece."""
    chunks: list[bytes] = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        chunks.append(body[:size])
        body = body[size + 2 :]
    return chunks


def recorded(name: str) -> Reply:
    """The response recorded in `NN_name.raw`: an event stream replays its chunks, anything else its bytes."""
    raw = (REAL_DIFY / f"{name}.raw").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {key.strip().lower(): value.strip() for key, _, value in (line.partition(":") for line in header_lines)}
    chunks = _dechunk(body) if headers.get("transfer-encoding") == "chunked" else [body]
    status = int(status_line.split()[1])
    content_type = headers.get("content-type", "")
    if status == 200 and content_type.startswith("text/event-stream"):
        steps: list[Step] = list(chunks)
        return Transcript(lambda ctx: steps)
    return RawHttp(status=status, content_type=content_type, body=b"".join(chunks))


def recorded_body(name: str) -> bytes:
    """The body bytes of a recorded response, de-chunked."""
    reply = recorded(name)
    if isinstance(reply, RawHttp):
        return reply.body
    assert isinstance(reply, Transcript)
    return b"".join(step for step in reply.build(_NO_CONTEXT) if isinstance(step, bytes))


_NO_CONTEXT = ReplyContext(
    query="",
    user="",
    inputs={},
    conversation_id="",
    message_id="",
    task_id="",
    workflow_run_id="",
    mode="",
    created_at=0,
)
