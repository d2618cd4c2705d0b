"""Signed Events API / slash-command requests as Slack sends them to a bolt endpoint, and their event bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any


def signed_headers(secret: str, body: bytes, content_type: str, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers for a Slack request: `v0=HMAC_SHA256(secret, "v0:{ts}:{body}")` over the exact bytes sent."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def event_body(
    *, event: dict[str, Any], team_id: str = "T1", event_id: str | None = None, api_app_id: str = "A1"
) -> bytes:
    envelope = {
        "token": "legacy-verification-token",
        "type": "event_callback",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": "UBOT", "is_bot": True}],
    }
    return json.dumps(envelope).encode()


def _with_files(event: dict[str, Any], files: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    if files is not None:
        event.update(files=list(files), upload=False, display_as_bot=False)
    return event


def mention_event(
    *,
    channel: str,
    user: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    team: str = "T1",
    files: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An `app_mention`; with `files` (file objects from `FakeSlack.add_file`) as a mention sharing files."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": team,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return _with_files(event, files)


def dm_event(
    *,
    channel: str,
    user: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    files: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `message.im`; with `files` it is the `file_share` message Slack sends for files shared in a DM."""
    event: dict[str, Any] = {
        "type": "message",
        "channel_type": "im",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if files is not None:
        event["subtype"] = "file_share"
    return _with_files(event, files)


def slash_command_body(
    *, command: str, channel_id: str, user_id: str, text: str = "", response_url: str, team_id: str = "T1"
) -> bytes:
    form = {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "team_domain": "test",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else "general",
        "user_id": user_id,
        "user_name": "user",
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "response_url": response_url,
        "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex[:8]}",
    }
    return urllib.parse.urlencode(form).encode()
