"""The response bodies: chat.completion objects, chat.completion.chunk frames and usage."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from core.answer import Usage

DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Completion:
    """What every body of one completion shares."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, *, created: float, model: str) -> Completion:
        return cls(id=f"chatcmpl-{secrets.token_hex(12)}", created=int(created), model=model)


def usage_body(usage: Usage | None) -> dict[str, int]:
    """Dify's counts; runs that report only a total (workflows) have 0 prompt and completion tokens."""
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_body(meta: Completion, content: str, usage: Usage | None) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_body(usage),
    }


def chunk_body(
    meta: Completion,
    delta: dict[str, str],
    *,
    finish_reason: str | None = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if finish_reason is not None:
        body["usage"] = usage_body(usage)
    return body


def sse_frame(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
