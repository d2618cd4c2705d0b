"""Button data: every control fits Telegram's 64 bytes, and old, forged or foreign data is refused."""

from __future__ import annotations

import uuid

import pytest

from core.controls.model import (
    AskAction,
    FeedbackAction,
    StopAction,
    ask_data,
    feedback_data,
    parse_action,
    stop_data,
)


def test_each_kind_round_trips_within_64_bytes() -> None:
    message_id = str(uuid.uuid4())
    for data, action in [
        (stop_data("AbCdEfGhIjKl"), StopAction("AbCdEfGhIjKl")),
        (feedback_data(message_id, "like"), FeedbackAction(message_id, "like")),
        (feedback_data(message_id, "dislike"), FeedbackAction(message_id, "dislike")),
        (ask_data(2), AskAction(2)),
    ]:
        assert len(data.encode()) <= 64
        assert parse_action(data) == action


@pytest.mark.parametrize(
    "data", [None, "", "s:", "f:x:abc", "f:l:", "q:3", "q:-1", "q:one", "x:1", "s:" + "a" * 70, "hello"]
)
def test_anything_else_is_no_action(data: str | None) -> None:
    assert parse_action(data) is None
