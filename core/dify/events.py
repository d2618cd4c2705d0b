"""Permissive typed Dify stream events: unknown events and fields are kept, never fatal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One decoded `data:` payload. `name` is its `event` field; `payload` the whole JSON object."""

    name: str
    payload: Mapping[str, Any]

    def get_str(self, field: str) -> str | None:
        value = self.payload.get(field)
        return value if isinstance(value, str) else None

    @property
    def data(self) -> Mapping[str, Any]:
        """The nested `data` object of workflow/node events ({} when absent)."""
        value = self.payload.get("data")
        return value if isinstance(value, Mapping) else {}

    @property
    def answer(self) -> str | None:
        return self.get_str("answer")

    @property
    def task_id(self) -> str | None:
        return self.get_str("task_id")

    @property
    def conversation_id(self) -> str | None:
        return self.get_str("conversation_id") or None

    @property
    def message_id(self) -> str | None:
        return self.get_str("message_id") or None


def event_from_json(obj: Any) -> StreamEvent | None:
    """Wrap a decoded JSON object; None for anything that is not an event object."""
    if not isinstance(obj, Mapping):
        return None
    name = obj.get("event")
    return StreamEvent(name=name if isinstance(name, str) else "", payload=obj)
