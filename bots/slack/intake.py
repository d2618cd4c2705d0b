"""Reading a Slack HTTP request before bolt does: signature first, then 400 for bodies that are no Slack payload."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest

MAX_CLOCK_SKEW = 300  # seconds, as Slack's own verifier allows


class Rejected(Exception):
    """A signed request bolt must not see: answer `status` (400 unreadable, 200 nothing to act on)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_signed(secret: str, raw: bytes, *, timestamp: str, signature: str, now: float | None = None) -> bool:
    """Whether `signature` (X-Slack-Signature) is `v0=HMAC_SHA256(secret, "v0:{timestamp}:{body}")` over `raw`.

    slack_sdk's verifier takes the body as text; this one must also judge bodies that are not text."""
    if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii()):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_CLOCK_SKEW:
        return False
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={digest}".encode(), signature.encode())


def bolt_request(raw: bytes, *, query: str, headers: Mapping[str, str]) -> AsyncBoltRequest:
    """The request as bolt reads it, or Rejected when bolt would fail on it or it carries no event object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "the body is not UTF-8 text") from None
    normalized: dict[str, str | Sequence[str]] = dict(headers)
    try:
        request = AsyncBoltRequest(body=text, query=query, headers=normalized)
    except ValueError as exc:  # json.JSONDecodeError, of the body or of a form's `payload`
        raise Rejected(400, f"the body is not valid JSON ({exc})") from None
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        # Building the request reads ids out of the envelope; these mean it is not shaped like Slack's.
        raise Rejected(400, f"the body is not a Slack payload ({type(exc).__name__})") from None
    if not isinstance(request.body, dict):
        raise Rejected(400, f"the payload is a JSON {type(request.body).__name__}, not an object")
    problem = event_problem(request.body)
    if problem:
        raise Rejected(200, problem)
    return request


def event_problem(body: Mapping[str, Any]) -> str | None:
    """Why an event_callback carries nothing bolt's middleware can read (None when it does, or is no event)."""
    if body.get("type") != "event_callback":
        return None
    event = body.get("event")
    if event is None:
        return "an event_callback without an event"
    if not isinstance(event, dict):
        return f"an event_callback whose event is a {type(event).__name__}"
    if not isinstance(event.get("type"), str):
        return "an event without a type"
    return None
