"""Inline keyboards for an answer's controls: Stop, 👍/👎 and suggested questions, and edits of a pressed one."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from core.controls.model import (
    AskAction,
    Controls,
    FeedbackAction,
    FeedbackButtons,
    Rating,
    ask_data,
    feedback_data,
    parse_action,
    stop_data,
)
from core.texts import Lang, text

__all__ = [
    "KeyboardCache",
    "keyboard",
    "keyboard_json",
    "suggestion_text",
    "with_feedback",
    "without_suggestions",
]

Rows = list[list[InlineKeyboardButton]]

CHOSEN = " ✓"
_FACES: dict[Rating, str] = {"like": "👍", "dislike": "👎"}


def _feedback_row(buttons: FeedbackButtons) -> list[InlineKeyboardButton]:
    return [
        InlineKeyboardButton(
            text=face + (CHOSEN if buttons.rating == rating else ""),
            callback_data=feedback_data(buttons.message_id, rating),
        )
        for rating, face in _FACES.items()
    ]


def _rows(controls: Controls, lang: Lang) -> Rows:
    rows: Rows = []
    if controls.stop:
        rows.append([InlineKeyboardButton(text=text("stop_button", lang), callback_data=stop_data(controls.stop))])
    if controls.feedback is not None:
        rows.append(_feedback_row(controls.feedback))
    rows.extend(
        [InlineKeyboardButton(text=question, callback_data=ask_data(index))]
        for index, question in enumerate(controls.suggestions)
    )
    return rows


def _markup(rows: Rows) -> InlineKeyboardMarkup | None:
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def keyboard(controls: Controls | None, lang: Lang) -> InlineKeyboardMarkup | None:
    """The inline keyboard showing `controls` (None: no keyboard, so an edit removes any)."""
    return _markup(_rows(controls, lang)) if controls else None


def keyboard_json(controls: Controls | None, lang: Lang) -> str | None:
    """`keyboard` as the JSON the Bot API takes in `reply_markup`."""
    rows = _rows(controls, lang) if controls else []
    if not rows:
        return None
    plain = [[{"text": button.text, "callback_data": button.callback_data} for button in row] for row in rows]
    return json.dumps({"inline_keyboard": plain}, ensure_ascii=False, separators=(",", ":"))


class KeyboardCache:
    """`keyboard_json` computed once per distinct controls: an answer re-sends the same keyboard on every edit."""

    def __init__(self, lang: Lang) -> None:
        self._lang = lang
        self._built: dict[Controls, str | None] = {}

    def get(self, controls: Controls | None) -> str | None:
        if not controls:
            return None
        if controls not in self._built:
            self._built[controls] = keyboard_json(controls, self._lang)
        return self._built[controls]


def _rows_of(markup: InlineKeyboardMarkup | None) -> Sequence[Sequence[InlineKeyboardButton]]:
    return markup.inline_keyboard if markup is not None else ()


def suggestion_text(markup: InlineKeyboardMarkup | None, index: int) -> str | None:
    """The question on suggestion button `index` of a message's keyboard (None when it is not there)."""
    wanted = ask_data(index)
    for row in _rows_of(markup):
        for button in row:
            if button.callback_data == wanted and button.text.strip():
                return button.text
    return None


def without_suggestions(markup: InlineKeyboardMarkup | None) -> InlineKeyboardMarkup | None:
    """The keyboard with its suggestion rows removed (None when nothing is left)."""
    rows = [list(row) for row in _rows_of(markup) if not any(_is_ask(button) for button in row)]
    return _markup(rows)


def with_feedback(markup: InlineKeyboardMarkup | None, buttons: FeedbackButtons) -> InlineKeyboardMarkup | None:
    """The keyboard with its 👍/👎 row showing `buttons.rating` (added first when it had none)."""
    fresh = _feedback_row(buttons)
    rows: Rows = []
    replaced = False
    for row in _rows_of(markup):
        if any(_is_feedback(button) for button in row):
            if not replaced:
                rows.append(fresh)
                replaced = True
            continue
        rows.append(list(row))
    if not replaced:
        rows.insert(0, fresh)
    return _markup(rows)


def _is_ask(button: InlineKeyboardButton) -> bool:
    return isinstance(parse_action(button.callback_data), AskAction)


def _is_feedback(button: InlineKeyboardButton) -> bool:
    return isinstance(parse_action(button.callback_data), FeedbackAction)
