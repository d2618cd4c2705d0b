"""Block Kit checks of the fake Slack: the interactive blocks a bot may send, held to Slack's limits."""

from __future__ import annotations

from typing import Any, NoReturn

from tests.fakes.slack_base import ApiError

MAX_BLOCKS = 50
MAX_BLOCK_ID = 255
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ACTIONS = 5
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
CONTEXT_ACTION_TYPES = frozenset({"feedback_buttons", "icon_button"})
BUTTON_STYLES = frozenset({"primary", "danger"})


def check_blocks(blocks: list[dict[str, Any]]) -> None:
    """Raise `invalid_blocks` for anything Slack would refuse in these blocks."""
    if len(blocks) > MAX_BLOCKS:
        _invalid()
    block_ids: set[str] = set()
    for block in blocks:
        kind = block.get("type")
        if not isinstance(kind, str):
            _invalid()
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id or len(block_id) > MAX_BLOCK_ID or block_id in block_ids:
                _invalid()
            block_ids.add(block_id)
        if kind == "markdown" and not isinstance(block.get("text"), str):
            _invalid()
        elif kind == "actions":
            _check_actions(block)
        elif kind == "context_actions":
            _check_context_actions(block)


def _invalid() -> NoReturn:
    raise ApiError("invalid_blocks")


def _plain_text(value: Any, limit: int) -> None:
    if not isinstance(value, dict) or value.get("type") != "plain_text":
        _invalid()
    label = value.get("text")
    if not isinstance(label, str) or not label or len(label) > limit:
        _invalid()


def _value(value: Any) -> None:
    if not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE:
        _invalid()


def _elements(block: dict[str, Any], low: int, high: int) -> list[dict[str, Any]]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not low <= len(elements) <= high:
        _invalid()
    if not all(isinstance(element, dict) for element in elements):
        _invalid()
    action_ids = [element.get("action_id") for element in elements if element.get("action_id") is not None]
    if len(set(action_ids)) != len(action_ids):
        _invalid()  # action ids are unique within a block
    for action_id in action_ids:
        if not isinstance(action_id, str) or not action_id or len(action_id) > MAX_ACTION_ID:
            _invalid()
    return elements


def _check_actions(block: dict[str, Any]) -> None:
    for element in _elements(block, 1, MAX_ACTIONS_ELEMENTS):
        if element.get("type") == "button":
            _plain_text(element.get("text"), MAX_BUTTON_TEXT)
            if "value" in element:
                _value(element["value"])
            if "style" in element and element["style"] not in BUTTON_STYLES:
                _invalid()
        elif not isinstance(element.get("type"), str):
            _invalid()


def _check_context_actions(block: dict[str, Any]) -> None:
    for element in _elements(block, 1, MAX_CONTEXT_ACTIONS):
        kind = element.get("type")
        if kind not in CONTEXT_ACTION_TYPES:
            _invalid()
        if kind == "feedback_buttons":
            for side in ("positive_button", "negative_button"):
                button = element.get(side)
                if not isinstance(button, dict) or "value" not in button:
                    _invalid()
                _plain_text(button.get("text"), MAX_BUTTON_TEXT)
                _value(button["value"])
        else:
            _plain_text(element.get("text"), MAX_BUTTON_TEXT)
            _value(element.get("value"))
