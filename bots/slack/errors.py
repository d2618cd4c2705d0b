"""Slack Web API failures: reading error codes and mapping them to what the renderer reacts to."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from core.render.surface import (
    SurfaceBlocked,
    SurfaceError,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)

__all__ = [
    "BLOCKED",
    "DEFAULT_RETRY_AFTER",
    "GONE",
    "NETWORK_ERRORS",
    "RATE_LIMITED",
    "TOO_LONG",
    "describe",
    "error_code",
    "retry_after",
    "status_code",
    "surface_error",
]

DEFAULT_RETRY_AFTER = 1.0

RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "markdown_text_too_long"})
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
BLOCKED = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "account_inactive",
        "invalid_auth",
        "token_revoked",
        "restricted_action",
        "ekm_access_denied",
    }
)
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, SlackClientError)


def error_code(exc: SlackApiError) -> str:
    """The `error` field of a failed Web API answer ('' when the body had none)."""
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or "")


def status_code(exc: SlackApiError) -> int:
    """The HTTP status of a failed Web API answer (0 when unknown)."""
    status = getattr(exc.response, "status_code", 0)
    return status if isinstance(status, int) else 0


def retry_after(exc: SlackApiError) -> float:
    """Seconds the Retry-After header asks for, or DEFAULT_RETRY_AFTER."""
    headers = getattr(exc.response, "headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return DEFAULT_RETRY_AFTER


def surface_error(exc: Exception) -> SurfaceError:
    """Map a slack_sdk or network failure to what the renderer reacts to."""
    if not isinstance(exc, SlackApiError):
        return SurfaceTransient(repr(exc))
    code = error_code(exc)
    status = status_code(exc)
    if status == 429 or code in RATE_LIMITED:
        return SurfaceRateLimited(retry_after(exc))
    if status >= 500:
        # A 5xx, often a proxy's HTML error page rather than the Web API's JSON: try again later.
        return SurfaceTransient(code or f"HTTP {status}")
    if code in TOO_LONG:
        return SurfaceTooLong(code)
    if code in GONE:
        return SurfaceMessageGone(code)
    if code in BLOCKED:
        return SurfaceBlocked(code)
    return SurfaceTransient(code or f"HTTP {status}")


def describe(exc: Exception) -> str:
    """A short form of a failure for the log: the Slack error code when there is one."""
    return (error_code(exc) or repr(exc)) if isinstance(exc, SlackApiError) else repr(exc)
