"""RenderStats: what rendering one answer cost and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import BotError

__all__ = ["RenderStats"]


@dataclass(slots=True)
class RenderStats:
    """What one answer cost and how it went; used by metrics, tests and benchmarks."""

    started_at: float = 0.0
    sends: int = 0
    edits: int = 0
    rate_limited: int = 0
    messages: int = 0
    first_text_at: float | None = None
    final_at: float | None = None
    outcome: str = "pending"  # done | failed | blocked | interrupted | stopped | undelivered
    message_id: str | None = None  # Dify's id of a completed answer
    error: BotError | None = None
    errors: list[str] = field(default_factory=list)
