"""The Dify error tree and the one classify() used for HTTP errors, in-stream errors and failed runs."""

from __future__ import annotations

import re

from core.errors import BotError


class DifyError(BotError):
    """Any failure talking to Dify."""


class DifyAuthError(DifyError):
    """The API key was refused (401)."""


class DifyAppUnavailable(DifyError):
    """The app is disabled, deleted, misconfigured or of the wrong type for this route."""


class DifyBadRequest(DifyError):
    """Dify refused the request itself (invalid_param, bad_request, ...)."""


class DifyNotFound(DifyError):
    """A resource Dify does not know."""


class ConversationNotFound(DifyNotFound):
    """The conversation id is unknown, deleted, or belongs to another user."""


class DifyAppBusy(DifyError):
    """The app's concurrency limit is reached (too_many_requests); worth retrying."""

    retryable = True


class DifyQuotaExceeded(DifyError):
    """A plan or hosted-model quota is used up (rate_limit_error, provider_quota_exceeded)."""


class DifyProviderError(DifyError):
    """The model provider failed (completion_request_error), its own rate limits included."""


class DifyRunFailed(DifyError):
    """A workflow or chatflow run failed inside Dify."""


class DifyServerError(DifyError):
    """Dify or a proxy in front of it answered 5xx."""

    retryable = True


class DifyTransportError(DifyError):
    """The connection failed or broke."""

    retryable = True


class DifyTimeout(DifyTransportError):
    """Nothing arrived from Dify within the read timeout."""


class DifyProtocolError(DifyError):
    """The stream was malformed or ended without an outcome."""


_BY_CODE: dict[str, type[DifyError]] = {
    "unauthorized": DifyAuthError,
    "forbidden": DifyAppUnavailable,
    "not_chat_app": DifyAppUnavailable,
    "not_workflow_app": DifyAppUnavailable,
    "app_unavailable": DifyAppUnavailable,
    "provider_not_initialize": DifyAppUnavailable,
    "model_currently_not_support": DifyAppUnavailable,
    "workflow_version_execution_not_allowed": DifyAppUnavailable,
    "too_many_requests": DifyAppBusy,
    "rate_limit_error": DifyQuotaExceeded,
    "provider_quota_exceeded": DifyQuotaExceeded,
    "completion_request_error": DifyProviderError,
    "internal_server_error": DifyServerError,
    "invalid_param": DifyBadRequest,
    "bad_request": DifyBadRequest,
}

# Failed workflow runs carry only a message; provider failures look like "[openai] Rate Limit Error, ...".
_PROVIDER_MESSAGE = re.compile(r"^\[[\w.-]+\]\s")


def classify(status: int | None, code: str | None, message: str | None) -> DifyError:
    """Map an HTTP error body, an in-stream `error` event or a failed run to one error class."""
    text = message or ""
    if "Conversation Not Exists" in text:
        return ConversationNotFound(text, status=status, code=code)
    if text.startswith("Workflow not published"):
        return DifyAppUnavailable(text, status=status, code=code)
    if code in _BY_CODE:
        return _BY_CODE[code](text, status=status, code=code)
    if status == 401:
        return DifyAuthError(text, status=status, code=code)
    if status == 403:
        return DifyAppUnavailable(text, status=status, code=code)
    if status == 404:
        return DifyNotFound(text, status=status, code=code)
    if status == 429:
        return DifyAppBusy(text, status=status, code=code)
    if status is not None and status >= 500:
        return DifyServerError(text, status=status, code=code)
    if status is not None and status >= 400:
        return DifyBadRequest(text, status=status, code=code)
    if _PROVIDER_MESSAGE.match(text):
        return DifyProviderError(text, status=status, code=code)
    return DifyRunFailed(text, status=status, code=code)
