"""Controls as Block Kit: the answer as a markdown block, then Stop, 👍/👎 and suggested-question buttons."""

from __future__ import annotations

import itertools
from typing import Any

from core.controls.model import MAX_SUGGESTIONS, Controls, FeedbackButtons, feedback_data, stop_data
from core.texts import Lang, text

__all__ = [
    "ASK_PREFIX",
    "FALLBACK_CHARS",
    "FEEDBACK_ACTION",
    "STOP_ACTION",
    "SUGGESTIONS_BLOCK",
    "Block",
    "ControlBlocks",
    "feedback_block",
    "markdown_block",
    "without_suggestions",
]

Block = dict[str, Any]

STOP_ACTION = "stop"
FEEDBACK_ACTION = "feedback"
ASK_PREFIX = "ask_"  # action ids ask_0 … ask_2, one per suggested question
STOP_BLOCK = "stop"
SUGGESTIONS_BLOCK = "suggestions"
SUGGESTIONS_INTRO = "suggestions-intro"
FEEDBACK_BLOCK = "feedback"
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
# The `text` that goes with blocks is only what notifications show: a generous beginning is enough.
FALLBACK_CHARS = 3000

# Slack wants a context_actions block_id that is new on every update of a message.
_block_serial = itertools.count(1)


def markdown_block(markdown: str) -> Block:
    return {"type": "markdown", "text": markdown}


def _plain(label: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": label, "emoji": True}


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def feedback_block(feedback: FeedbackButtons) -> Block:
    """👍/👎 as Slack's feedback_buttons (Slack shows the chosen one itself), under a fresh block_id."""
    return {
        "type": "context_actions",
        "block_id": f"{FEEDBACK_BLOCK}-{next(_block_serial)}",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION,
                "positive_button": {
                    "text": _plain("👍"),
                    "value": feedback_data(feedback.message_id, "like"),
                    "accessibility_label": "Helpful",
                },
                "negative_button": {
                    "text": _plain("👎"),
                    "value": feedback_data(feedback.message_id, "dislike"),
                    "accessibility_label": "Not helpful",
                },
            }
        ],
    }


def _stop_block(token: str, lang: Lang) -> Block:
    button = {"type": "button", "action_id": STOP_ACTION, "text": _plain(text("stop_button", lang))}
    return {"type": "actions", "block_id": STOP_BLOCK, "elements": [{**button, "value": stop_data(token)}]}


def _suggestions_intro(lang: Lang) -> Block:
    return {"type": "context", "block_id": SUGGESTIONS_INTRO, "elements": [_plain(text("suggestions_intro", lang))]}


def _suggestions_block(questions: tuple[str, ...]) -> Block:
    elements = [
        {
            "type": "button",
            "action_id": f"{ASK_PREFIX}{index}",
            "text": _plain(_clip(question, MAX_BUTTON_TEXT)),
            "value": question[:MAX_BUTTON_VALUE],
        }
        for index, question in enumerate(questions)
    ]
    return {"type": "actions", "block_id": SUGGESTIONS_BLOCK, "elements": elements}


def without_suggestions(blocks: list[Block]) -> list[Block]:
    """A message's blocks with the suggested questions taken off (and a new block_id on the feedback)."""
    kept: list[Block] = []
    for block in blocks:
        if block.get("block_id") in (SUGGESTIONS_BLOCK, SUGGESTIONS_INTRO):
            continue
        if block.get("type") == "context_actions":
            block = {**block, "block_id": f"{FEEDBACK_BLOCK}-{next(_block_serial)}"}
        kept.append(block)
    return kept


class ControlBlocks:
    """The blocks under an answer for its Controls; the last result is kept, as frames repeat them."""

    def __init__(self, lang: Lang = "en") -> None:
        self._lang = lang
        self._last: tuple[Controls, list[Block]] | None = None

    def __call__(self, controls: Controls) -> list[Block]:
        """The control blocks (without the answer's own markdown block); [] for no controls."""
        if not controls:
            return []
        if self._last is not None and self._last[0] == controls and controls.feedback is None:
            return self._last[1]
        blocks: list[Block] = []
        if controls.stop:
            blocks.append(_stop_block(controls.stop, self._lang))
        if controls.feedback is not None:
            blocks.append(feedback_block(controls.feedback))
        if controls.suggestions:
            blocks += [_suggestions_intro(self._lang), _suggestions_block(controls.suggestions[:MAX_SUGGESTIONS])]
        self._last = (controls, blocks)
        return blocks
