"""Pressing a button of a message on the fake Slack: the block_actions payload Slack sends, over HTTP or Socket Mode."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from tests.fakes.slack import FakeSlack, StoredMessage
from tests.fakes.slack_payloads import signed_headers
from tests.fakes.slack_socket import Envelope, FakeSocketMode

Side = Literal["positive", "negative"]


@dataclass(frozen=True)
class Button:
    """A button found on a message: the action Slack would report for a press on it."""

    type: str
    action_id: str
    block_id: str
    value: str
    text: dict[str, Any]


def buttons(message: StoredMessage) -> list[Button]:
    """Every button the message shows now (feedback buttons as two, with action ids `<id>:positive` / `:negative`)."""
    found: list[Button] = []
    for block in message.blocks:
        if block.get("type") not in ("actions", "context_actions"):
            continue
        block_id = str(block.get("block_id", ""))
        for element in block.get("elements", []):
            if element.get("type") == "feedback_buttons":
                for side in ("positive", "negative"):
                    button = element[f"{side}_button"]
                    found.append(
                        Button(
                            "feedback_buttons",
                            f"{element.get('action_id', '')}:{side}",
                            block_id,
                            button["value"],
                            button["text"],
                        )
                    )
            elif element.get("type") == "button":
                found.append(
                    Button("button", element["action_id"], block_id, element.get("value", ""), element["text"])
                )
    return found


def find_button(message: StoredMessage, action_id: str, *, side: Side | None = None) -> Button:
    wanted = f"{action_id}:{side}" if side else action_id
    for button in buttons(message):
        if button.action_id == wanted:
            return button
    raise AssertionError(f"no button {wanted!r} on message {message.ts}: {[b.action_id for b in buttons(message)]}")


def block_actions_payload(
    slack: FakeSlack,
    *,
    channel: str,
    ts: str,
    action_id: str,
    user: str,
    side: Side | None = None,
    team_id: str = "T1",
) -> dict[str, Any]:
    """The `block_actions` payload of `user` pressing `action_id` on message `ts` (reference §2.4)."""
    message = slack.messages[(channel, ts)]
    assert not message.deleted, f"message {ts} is deleted"
    button = find_button(message, action_id, side=side)
    container: dict[str, Any] = {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
    shown: dict[str, Any] = {
        "type": "message",
        "ts": ts,
        "text": message.text,
        "blocks": json.loads(json.dumps(message.blocks)),
        "bot_id": slack.bot_id,
        "user": slack.bot_user_id,
        "team": team_id,
    }
    if message.thread_ts:
        container["thread_ts"] = message.thread_ts
        shown["thread_ts"] = message.thread_ts
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": container,
        "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:8]}",
        "team": {"id": team_id, "domain": "test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else "general"},
        "message": shown,
        "state": {"values": {}},
        "response_url": slack.response_url(),
        "actions": [
            {
                "type": button.type,
                "action_id": button.action_id.partition(":")[0] if side else button.action_id,
                "block_id": button.block_id,
                "value": button.value,
                "text": button.text,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def block_actions_body(payload: dict[str, Any]) -> bytes:
    """The form body Slack posts for an interaction: `payload=<JSON>`."""
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


async def press_over_http(events_url: str, secret: str, payload: dict[str, Any]) -> tuple[int, str]:
    """POST the signed press to the app's request URL; its status and body."""
    body = block_actions_body(payload)
    headers = signed_headers(secret, body, "application/x-www-form-urlencoded")
    async with aiohttp.ClientSession() as session, session.post(events_url, data=body, headers=headers) as response:
        return response.status, await response.text()


async def press_over_socket(socket: FakeSocketMode, payload: dict[str, Any]) -> Envelope:
    """Deliver the press as an `interactive` envelope; returns it once acknowledged (AssertionError if not)."""
    envelope = await socket.deliver("interactive", payload)
    return await socket.acknowledged(envelope)
