"""bolt's global error handler: a failed listener or middleware is one log line, never a 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from bots.slack.errors import NETWORK_ERRORS, describe
from core.errors import BotError
from core.render.surface import SurfaceError
from core.texts import friendly_error

log = logging.getLogger(__name__)

# Failures of Dify, Redis, Slack or the network: worth a line, not a traceback.
EXPECTED_ERRORS = (BotError, SurfaceError, SlackApiError, *NETWORK_ERRORS)


def request_kind(body: Mapping[str, Any]) -> str:
    """A short, bounded description of a request for the log: its type, event type or command."""
    event = body.get("event")
    parts = (body.get("type"), event.get("type") if isinstance(event, Mapping) else None, body.get("command"))
    return " ".join(str(part)[:40] for part in parts if part) or "untyped request"


async def on_error(error: Exception, body: Mapping[str, Any], response: BoltResponse | None) -> BoltResponse | None:
    """bolt calls this for unhandled requests and for failing listeners or middleware."""
    kind = request_kind(body)
    if isinstance(error, BoltUnhandledRequestError):
        log.info("slack: acknowledged a request no listener takes (%s)", kind)
        return BoltResponse(status=200, body="")
    if isinstance(error, EXPECTED_ERRORS):
        log.warning("slack: %s failed: %s", kind, describe(error))
    else:
        log.error("slack: %s failed: %s", kind, describe(error), exc_info=error)
    if response is None:
        return None  # acknowledged before the listener ran; bolt refuses a replacement response here
    # Slack shows a command's 200 text to the user, and its own failure notice for a 500.
    return BoltResponse(status=200, body=friendly_error(error) if body.get("command") else "")
