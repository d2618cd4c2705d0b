"""The inline keyboards an answer's controls become, and the edits a press makes to them."""

from __future__ import annotations

import json
import uuid

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bots.telegram.keyboards import (
    KeyboardCache,
    keyboard,
    keyboard_json,
    suggestion_text,
    with_feedback,
    without_suggestions,
)
from core.controls.model import Controls, FeedbackButtons, ask_data, feedback_data, stop_data

MESSAGE = str(uuid.uuid4())
QUESTIONS = ("How do refunds work?", "现在几点了？", "Can I change my order?")


def labels(markup: InlineKeyboardMarkup | None) -> list[list[str]]:
    return [[button.text for button in row] for row in markup.inline_keyboard] if markup else []


def test_stop_is_one_button_with_its_token() -> None:
    built = json.loads(keyboard_json(Controls(stop="tok123"), "en") or "")
    assert built == {"inline_keyboard": [[{"text": "⏹ Stop", "callback_data": stop_data("tok123")}]]}
    assert labels(keyboard(Controls(stop="tok123"), "zh")) == [["⏹ 停止"]]


def test_feedback_row_marks_the_choice_and_suggestions_get_a_row_each() -> None:
    controls = Controls(feedback=FeedbackButtons(MESSAGE, "dislike"), suggestions=QUESTIONS)
    built = json.loads(keyboard_json(controls, "en") or "")
    rows = built["inline_keyboard"]
    assert [[button["text"] for button in row] for row in rows] == [["👍", "👎 ✓"], *([q] for q in QUESTIONS)]
    assert rows[0][0]["callback_data"] == feedback_data(MESSAGE, "like")
    assert [row[0]["callback_data"] for row in rows[1:]] == [ask_data(i) for i in range(3)]


def test_no_controls_means_no_keyboard() -> None:
    assert keyboard_json(Controls(), "en") is None
    assert keyboard_json(None, "en") is None
    assert keyboard(Controls(), "en") is None


def test_every_callback_data_fits_telegrams_64_bytes() -> None:
    controls = [
        Controls(stop="x" * 12),
        Controls(feedback=FeedbackButtons(MESSAGE, "like"), suggestions=tuple("长" * 60 for _ in range(3))),
    ]
    for item in controls:
        built = json.loads(keyboard_json(item, "en") or "")
        for row in built["inline_keyboard"]:
            for button in row:
                assert 1 <= len(button["callback_data"].encode()) <= 64


def test_the_cache_builds_each_keyboard_once() -> None:
    cache = KeyboardCache("en")
    first = cache.get(Controls(stop="tok"))
    assert cache.get(Controls(stop="tok")) is first
    assert cache.get(Controls(stop="other")) != first
    assert cache.get(Controls()) is None and cache.get(None) is None


def test_a_press_edits_only_its_own_rows() -> None:
    markup = keyboard(Controls(feedback=FeedbackButtons(MESSAGE), suggestions=QUESTIONS), "en")
    assert suggestion_text(markup, 1) == QUESTIONS[1]
    assert suggestion_text(markup, 2) == QUESTIONS[2]
    assert suggestion_text(keyboard(Controls(suggestions=QUESTIONS[:1]), "en"), 1) is None
    assert suggestion_text(None, 0) is None
    assert labels(without_suggestions(markup)) == [["👍", "👎"]]
    assert without_suggestions(keyboard(Controls(suggestions=QUESTIONS), "en")) is None
    rated = with_feedback(markup, FeedbackButtons(MESSAGE, "like"))
    assert labels(rated) == [["👍 ✓", "👎"], *([q] for q in QUESTIONS)]
    assert labels(with_feedback(None, FeedbackButtons(MESSAGE, None))) == [["👍", "👎"]]


def test_foreign_buttons_are_kept() -> None:
    foreign = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Docs", url="https://example.com")]])
    assert labels(without_suggestions(foreign)) == [["Docs"]]
    assert labels(with_feedback(foreign, FeedbackButtons(MESSAGE, "dislike"))) == [["👍", "👎 ✓"], ["Docs"]]
