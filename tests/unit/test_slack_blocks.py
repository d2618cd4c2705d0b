"""Controls as Slack Block Kit, held to the limits the fake Slack enforces (and Slack documents)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bots.slack.blocks import ControlBlocks, without_suggestions
from core.controls.model import Controls, FeedbackButtons, feedback_data, parse_action, stop_data
from tests.fakes.slack_base import ApiError
from tests.fakes.slack_blocks import check_blocks

MESSAGE_ID = "9d3c2a1e-8f7b-4c6d-a5e4-3b2c1d0e9f8a"


def button(action_id: str, label: str = "Go", value: str = "v") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}, "value": value}


def test_no_controls_means_no_blocks() -> None:
    assert ControlBlocks()(Controls()) == []


def test_stop_button_carries_the_token() -> None:
    [block] = ControlBlocks()(Controls(stop="tok"))
    check_blocks([block])
    [stop] = block["elements"]
    assert (block["type"], stop["action_id"], stop["text"]["text"]) == ("actions", "stop", "⏹ Stop")
    assert stop["value"] == stop_data("tok") and parse_action(stop["value"]) is not None


def test_interim_frames_reuse_the_same_blocks() -> None:
    blocks = ControlBlocks()
    assert blocks(Controls(stop="tok")) is blocks(Controls(stop="tok"))


def test_feedback_buttons_with_a_new_block_id_every_time() -> None:
    blocks = ControlBlocks()
    controls = Controls(feedback=FeedbackButtons(MESSAGE_ID))
    [first], [second] = blocks(controls), blocks(controls)
    check_blocks([first])
    assert first["type"] == "context_actions" and first["block_id"] != second["block_id"]
    [element] = first["elements"]
    assert element["type"] == "feedback_buttons" and element["action_id"] == "feedback"
    assert element["positive_button"]["value"] == feedback_data(MESSAGE_ID, "like")
    assert element["negative_button"]["value"] == feedback_data(MESSAGE_ID, "dislike")


def test_suggestions_are_cut_on_the_button_and_kept_whole_in_the_value() -> None:
    long = "Why " + "really " * 400 + "?"
    questions = ("Short one?", long, "Third?", "Fourth?")
    blocks = ControlBlocks()(Controls(feedback=FeedbackButtons(MESSAGE_ID), suggestions=questions))
    check_blocks(blocks)
    intro, actions = blocks[1], blocks[2]
    assert intro["elements"][0]["text"] == "You could ask:"
    assert [element["action_id"] for element in actions["elements"]] == ["ask_0", "ask_1", "ask_2"]
    cut = actions["elements"][1]
    assert len(cut["text"]["text"]) <= 75 and cut["text"]["text"].endswith("really…")
    assert cut["value"] == long[:2000]
    assert actions["elements"][0]["value"] == "Short one?"


def test_taking_suggestions_off_keeps_the_text_and_renews_the_feedback_block() -> None:
    controls = Controls(feedback=FeedbackButtons(MESSAGE_ID), suggestions=("A?", "B?"))
    blocks = [{"type": "markdown", "text": "The answer"}, *ControlBlocks()(controls)]
    kept = without_suggestions(copy.deepcopy(blocks))
    assert [block["type"] for block in kept] == ["markdown", "context_actions"]
    assert kept[1]["block_id"] != blocks[1]["block_id"]
    check_blocks(kept)


# ---------------------------------------------------------------------- the fake's checks


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": "actions", "elements": [button("a", label="x" * 76)]}],
        [{"type": "actions", "elements": [button("a", value="v" * 2001)]}],
        [{"type": "actions", "elements": [button("a" * 256)]}],
        [{"type": "actions", "elements": [button("a"), button("a")]}],
        [{"type": "actions", "elements": [button(f"a{i}") for i in range(26)]}],
        [{"type": "actions", "elements": []}],
        [{"type": "actions", "elements": [{**button("a"), "text": {"type": "mrkdwn", "text": "*x*"}}]}],
        [{"type": "context_actions", "elements": []}],
        [{"type": "context_actions", "elements": [button("a")]}],
        [{"type": "context_actions", "elements": [{"type": "feedback_buttons", "positive_button": {}}]}],
        [{"type": "markdown", "text": "a", "block_id": "x"}, {"type": "markdown", "text": "b", "block_id": "x"}],
        [{"type": "markdown"}],
        [{"type": "markdown", "text": "a"}] * 51,
    ],
)
def test_fake_refuses_invalid_blocks(blocks: list[dict[str, Any]]) -> None:
    with pytest.raises(ApiError) as refused:
        check_blocks(blocks)
    assert refused.value.error == "invalid_blocks"


def test_fake_takes_valid_blocks() -> None:
    check_blocks(
        [
            {"type": "markdown", "text": "hi"},
            {"type": "actions", "block_id": "b", "elements": [button(f"a{i}") for i in range(25)]},
        ]
    )
