"""The reducer: Dify stream events in, platform-neutral reply events (core.replies) out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from core.dify.errors import DifyProtocolError, classify
from core.dify.events import StreamEvent
from core.errors import BotError
from core.replies import (
    Citation,
    ContextReset,
    Done,
    Failed,
    FileRef,
    Files,
    FilesReady,
    Heard,
    Progress,
    Quote,
    ReplyEvent,
    TaskStarted,
    TextDelta,
    TextReplace,
    Usage,
)

__all__ = [
    "AnswerReducer",
    "Citation",
    "ContextReset",
    "Done",
    "Failed",
    "FileRef",
    "Files",
    "FilesReady",
    "Heard",
    "Progress",
    "Quote",
    "ReplyEvent",
    "TaskStarted",
    "TextDelta",
    "TextReplace",
    "Usage",
    "pick_output",
]

_OUTPUT_KEYS = ("answer", "text", "result", "output", "outputs")
_QUIET_NODES = frozenset({"start", "answer", "end", "if-else", "variable-assigner", "assigner"})


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def pick_output(outputs: Any, key: str = "") -> str | None:
    """The answer among a workflow's outputs: the configured key, a well-known one, or the only string."""
    if not isinstance(outputs, Mapping):
        return None
    if key:
        value = outputs.get(key)
        return value if isinstance(value, str) else (None if value is None else json.dumps(value))
    for name in _OUTPUT_KEYS:
        if isinstance(outputs.get(name), str):
            return str(outputs[name])
    strings = [value for value in outputs.values() if isinstance(value, str)]
    return strings[0] if len(strings) == 1 else None


def _files(items: Any) -> tuple[FileRef, ...]:
    """The files of `message_end.files` or of a finished run (`workflow_finished.data.files`)."""
    if not isinstance(items, list):
        return ()
    return tuple(
        FileRef(
            type=str(item.get("type") or "file"),
            url=str(item["url"]),
            id=str(item.get("related_id") or item.get("id") or ""),
            name=str(item.get("filename") or ""),
        )
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("url"), str) and item["url"]
    )


class AnswerReducer:
    """Folds one Dify stream into reply events. Feed every event, then call finish() at end of stream."""

    def __init__(self, *, mode: str, workflow_output: str = "") -> None:
        self.mode = mode
        self.workflow_output = workflow_output
        self.text = ""
        self.conversation_id: str | None = None
        self.message_id: str | None = None
        self.task_id: str | None = None
        self._tokens = 0
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._price: Decimal | None = None
        self._currency = ""
        self._elapsed: float | None = None
        self._steps = 0
        self._citations: tuple[Citation, ...] = ()
        self._thought_tools: dict[str, str] = {}
        self._message_ended = False
        self._outcome: Done | Failed | None = None
        self._seen_files: set[str] = set()  # the same file comes as message_file, in message_end and in the run

    @property
    def finished(self) -> bool:
        return self._outcome is not None

    def feed(self, event: StreamEvent) -> list[ReplyEvent]:
        if self._outcome is not None:
            return []
        out: list[ReplyEvent] = []
        if self.task_id is None or self.message_id is None or self.conversation_id is None:
            self._track_ids(event, out)  # once all are known (usually after the first event), no more lookups
        handler = getattr(self, "_on_" + event.name.replace("-", "_"), None)
        if handler is not None:
            handler(event, out)
        return out

    def finish(self) -> list[ReplyEvent]:
        """End of stream: settle an outcome if no terminal event has done so."""
        if self._outcome is not None:
            return []
        if self._message_ended:
            return [self._done()]
        return [self._fail(DifyProtocolError("the stream ended without an outcome"))]

    def fail(self, error: BotError) -> list[ReplyEvent]:
        """The stream broke (transport, timeout, protocol): end with what we have."""
        if self._outcome is not None:
            return []
        if self._message_ended:
            return [self._done()]
        return [self._fail(error)]

    # ---- helpers ----------------------------------------------------------------------------------

    def _track_ids(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        if event.conversation_id and not self.conversation_id:
            self.conversation_id = event.conversation_id
        if event.message_id and not self.message_id:
            self.message_id = event.message_id
        if event.task_id and not self.task_id:
            self.task_id = event.task_id
            out.append(TaskStarted(task_id=event.task_id))

    def _append(self, text: str, out: list[ReplyEvent]) -> None:
        if text:
            self.text += text
            out.append(TextDelta(text=text))

    def _replace(self, text: str, out: list[ReplyEvent]) -> None:
        if text != self.text:
            self.text = text
            out.append(TextReplace(text=text))

    def _new_files(self, files: tuple[FileRef, ...], out: list[ReplyEvent]) -> None:
        fresh = []
        for ref in files:
            keys = {ref.id, ref.url.split("?", 1)[0]} - {""}  # links are signed anew each time
            if not keys & self._seen_files:
                self._seen_files |= keys
                fresh.append(ref)
        if fresh:
            out.append(Files(files=tuple(fresh)))

    def _add_cost(self, tokens: Any, price: Any, currency: Any) -> None:
        if isinstance(tokens, int):
            self._tokens += tokens
        amount = _decimal(price)
        if amount is not None:
            self._price = (self._price or Decimal(0)) + amount
        if isinstance(currency, str) and currency:
            self._currency = currency

    def _usage(self) -> Usage:
        return Usage(
            total_tokens=self._tokens,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            total_price=self._price,
            currency=self._currency,
            elapsed=self._elapsed,
            steps=self._steps,
        )

    def _done(self, *, stopped: bool = False, paused: bool = False) -> Done:
        self._outcome = Done(
            answer=self.text,
            conversation_id=self.conversation_id,
            message_id=self.message_id,
            task_id=self.task_id,
            usage=self._usage(),
            citations=self._citations,
            stopped=stopped,
            paused=paused,
        )
        return self._outcome

    def _fail(self, error: BotError) -> Failed:
        self._outcome = Failed(error=error, partial=self.text)
        return self._outcome

    # ---- text events ------------------------------------------------------------------------------

    def _on_message(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        if self.mode == "agent":
            self._replace(event.answer or "", out)  # agent apps close with one message holding everything
        else:
            self._append(event.answer or "", out)

    def _on_agent_message(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        self._append(event.answer or "", out)

    def _on_text_chunk(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        text = event.data.get("text")
        if isinstance(text, str):
            self._append(text, out)

    def _on_message_replace(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        self._replace(event.answer or "", out)

    def _on_message_file(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        url = event.get_str("url")
        if url:
            self._new_files(
                (FileRef(type=event.get_str("type") or "file", url=url, id=event.get_str("id") or ""),), out
            )
        elif event.answer is not None:
            self._append(event.answer, out)  # text deltas sent as message_file once a file exists

    # ---- progress ---------------------------------------------------------------------------------

    def _on_agent_thought(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        thought_id = event.get_str("id") or ""
        tool = event.get_str("tool") or ""
        if not tool or self._thought_tools.get(thought_id) == tool:
            return
        self._thought_tools[thought_id] = tool
        labels = event.payload.get("tool_labels")
        names = []
        for name in tool.split(";"):
            label = labels.get(name) if isinstance(labels, Mapping) else None
            shown = label.get("en_US") if isinstance(label, Mapping) else None
            names.append(str(shown or name))
        out.append(Progress(kind="tool", label=", ".join(names)))

    def _on_node_started(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        node_type = str(event.data.get("node_type") or "")
        title = str(event.data.get("title") or node_type)
        if node_type in _QUIET_NODES:
            return
        if node_type == "knowledge-retrieval":
            out.append(Progress(kind="retrieval", label=title))
        elif node_type in ("tool", "agent", "http-request"):
            out.append(Progress(kind="tool", label=title))
        elif node_type == "llm":
            out.append(Progress(kind="thinking", label=title))
        else:
            out.append(Progress(kind="node", label=title))

    def _on_node_finished(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        if self.mode != "workflow" and self.mode != "advanced-chat":
            return
        meta = event.data.get("execution_metadata")
        if isinstance(meta, Mapping) and not self._message_ended:
            self._add_cost(meta.get("total_tokens"), meta.get("total_price"), meta.get("currency"))

    # ---- outcomes ---------------------------------------------------------------------------------

    def _on_message_end(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        metadata = event.payload.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        usage = metadata.get("usage")
        if isinstance(usage, Mapping):
            # message_end's usage is authoritative for the message: it replaces per-node sums.
            self._tokens, self._price = 0, None
            self._add_cost(usage.get("total_tokens"), usage.get("total_price"), usage.get("currency"))
            self._prompt_tokens = _count(usage.get("prompt_tokens"))
            self._completion_tokens = _count(usage.get("completion_tokens"))
            latency = usage.get("latency")
            if isinstance(latency, int | float):
                self._elapsed = float(latency)
        resources = metadata.get("retriever_resources")
        if isinstance(resources, list):
            self._citations = tuple(
                Citation(
                    title=str(item.get("document_name") or item.get("title") or ""),
                    dataset=str(item.get("dataset_name") or ""),
                    score=item.get("score") if isinstance(item.get("score"), int | float) else None,
                )
                for item in resources
                if isinstance(item, Mapping)
            )
        self._new_files(_files(event.payload.get("files")), out)
        self._message_ended = True
        if self.mode != "advanced-chat":
            out.append(self._done())
        # Chatflows follow with workflow_finished (run totals); finish() settles if it never comes.

    def _on_workflow_finished(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        data = event.data
        status = str(data.get("status") or "")
        elapsed = data.get("elapsed_time")
        if isinstance(elapsed, int | float):
            self._elapsed = float(elapsed)
        steps = data.get("total_steps")
        if isinstance(steps, int):
            self._steps = steps
        tokens = data.get("total_tokens")
        if isinstance(tokens, int) and tokens > self._tokens:
            self._tokens = tokens
        if status == "failed":
            out.append(self._fail(classify(None, None, str(data.get("error") or "the run failed"))))
            return
        if self.mode == "workflow":
            # The outputs are the answer; streamed text_chunks were only a preview (outputs joined by "\n",
            # file outputs as Markdown links), so they are replaced in place.
            final = pick_output(data.get("outputs"), self.workflow_output)
            if final is not None:
                self._replace(final, out)
        self._new_files(_files(data.get("files")), out)
        out.append(self._done(stopped=status == "stopped"))

    def _on_workflow_paused(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        out.append(self._done(paused=True))

    def _on_error(self, event: StreamEvent, out: list[ReplyEvent]) -> None:
        status = event.payload.get("status")
        error = classify(status if isinstance(status, int) else None, event.get_str("code"), event.get_str("message"))
        out.append(self._fail(error))
