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


class DifyBadBaseUrl(DifyAppUnavailable):
    """DIFY_BASE_URL does not point at the Service API (an HTML page, a 404 on a known route, the web-app API)."""


class DifyModelUnavailable(DifyAppUnavailable):
    """The app's model provider is not set up or not reachable on the Dify server (plugin daemon, credentials)."""


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


class DifyUnreachable(DifyTransportError):
    """No connection could be made to DIFY_BASE_URL's host (refused, unknown host, no route)."""


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
    "provider_not_initialize": DifyModelUnavailable,
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

# Dify reports a model it cannot reach as `invalid_param`: the server's fault, not the message's.
_MODEL_DOWN = re.compile(r"plugin daemon|No valid model provider credentials", re.I)

# Failed workflow runs carry only a message; provider failures look like "[openai] Rate Limit Error, ...".
_PROVIDER_MESSAGE = re.compile(r"^\[[\w.-]+\]\s")
# Refusals Dify reports as a failed run after HTTP 200 (empty query, missing input, another user's file)
# that a chat app answers with HTTP 400 invalid_param: classified like that twin.
_REFUSAL_MESSAGE = re.compile(r"^(query is required\b|Invalid upload file\b|.+ (is required|must be .+) in input form)")
# flask-restx appends a route suggestion to 404 messages, so only the start of the message is Dify's.
_CONVERSATION_GONE = "Conversation Not Exists"


def classify(status: int | None, code: str | None, message: str | None) -> DifyError:
    """Map an HTTP error body, an in-stream `error` event or a failed run to one error class."""
    text = message or ""
    if code in (None, "not_found") and status in (None, 404) and text.startswith(_CONVERSATION_GONE):
        return ConversationNotFound(text, status=status, code=code)
    if text.startswith("Workflow not published"):
        return DifyAppUnavailable(text, status=status, code=code)
    if _MODEL_DOWN.search(text):
        return DifyModelUnavailable(text, status=status, code=code)
    if status == 401 and text.startswith("App token is missing"):
        return DifyBadBaseUrl(text, status=status, code=code)
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
    if status is None and code is None and _REFUSAL_MESSAGE.match(text):
        return DifyBadRequest(text, status=status, code=code)
    if _PROVIDER_MESSAGE.match(text):
        return DifyProviderError(text, status=status, code=code)
    return DifyRunFailed(text, status=status, code=code)
