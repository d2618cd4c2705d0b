"""What every part of the fake Slack Web API shares: the argument dict and the `{"ok": false}` error."""

from __future__ import annotations

import json
from typing import Any

Args = dict[str, Any]


class ApiError(Exception):
    """Answered as `{"ok": false, "error": <error>}` (HTTP 200, as Slack does)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def json_list(value: Any, error: str) -> list[dict[str, Any]]:
    """A list of objects, given directly (JSON body) or as a JSON string (form body)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(error) from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ApiError(error)
    return value
