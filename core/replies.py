"""The reply events: what an answer is made of on its way from Dify to a sink, platform-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from core.errors import BotError
from core.files.model import ProducedFile


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """Dify accepted the message; `task_id` can stop it."""

    task_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextReplace:
    """The whole answer so far is replaced (moderation, agent closing message, workflow outputs)."""

    text: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Something the app is doing before or between text: a node, a tool call, a retrieval."""

    kind: str  # "node" | "tool" | "retrieval" | "thinking" | "queued" (waiting for the chat's previous answer)
    label: str


@dataclass(frozen=True, slots=True)
class FileRef:
    type: str
    url: str
    id: str = ""
    name: str = ""  # the file name Dify gave, when it says (run outputs, message_end files)


@dataclass(frozen=True, slots=True)
class Files:
    files: tuple[FileRef, ...]


@dataclass(frozen=True, slots=True)
class Heard:
    """What a voice message said (its transcript), shown above the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Quote:
    """The question this answer replies to, shown above it (a suggested question pressed as a button)."""

    text: str


@dataclass(frozen=True, slots=True)
class FilesReady:
    """The answer's files, downloaded for a sink that delivers files; `missing` could not be fetched."""

    files: tuple[ProducedFile, ...]
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Citation:
    title: str
    dataset: str = ""
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Aggregated run metadata; the prompt/completion split is known only from `message_end` (else 0)."""

    total_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_price: Decimal | None = None
    currency: str = ""
    elapsed: float | None = None
    steps: int = 0


@dataclass(frozen=True, slots=True)
class ContextReset:
    """The stored conversation was gone in Dify; this answer starts a new one."""


@dataclass(frozen=True, slots=True)
class Done:
    answer: str
    conversation_id: str | None = None
    message_id: str | None = None
    task_id: str | None = None
    usage: Usage = field(default_factory=Usage)
    citations: tuple[Citation, ...] = ()
    stopped: bool = False
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    error: BotError
    partial: str = ""


ReplyEvent = (
    TaskStarted | TextDelta | TextReplace | Progress | Files | Heard | Quote | FilesReady | ContextReset | Done | Failed
)
