"""The response bodies: chat.completion objects, chat.completion.chunk frames and usage."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from core.answer import FileRef, Usage
from core.files.links import absolute_url, dify_images

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


def _without_query(url: str) -> str:
    return urlsplit(url)._replace(query="", fragment="").geturl()


def file_links(answer: str, files: Sequence[FileRef], host_url: str) -> str:
    """Markdown links to the answer's files with absolute URLs (images as images), after a blank line.

    Relative Markdown images in the answer get an absolute copy; a file the answer already links to is not
    repeated (signed links differ only in their query)."""
    candidates = [(file.type, absolute_url(file.url, host_url)) for file in files]
    candidates += [("image", url) for url in dify_images(answer, host_url)]
    lines: list[str] = []
    shown: set[str] = set()
    for kind, url in candidates:
        bare = _without_query(url)
        if bare in answer or bare in shown:
            continue
        shown.add(bare)
        last = unquote(bare.rsplit("/", 1)[-1])
        name = last if "." in last else kind  # a signed `file-preview` link names no file
        lines.append(f"![{kind}]({url})" if kind == "image" else f"[{name}]({url})")
    if not lines:
        return ""
    return ("\n\n" if answer.strip() else "") + "\n".join(lines)
