"""OpenAI-style error bodies, and the HTTP status each bot error maps to."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from core.dify import errors as dify
from core.errors import BotError, ConversationBusy, Interrupted, StoreUnavailable
from core.files.model import FileProblem
from core.question import QuestionTooLong
from core.texts import friendly_error

RETRY_AFTER = 5  # seconds a caller is asked to wait after a 429 or 503


class ApiError(Exception):
    """A request that ends with an error response in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry = retry  # sent as `x-should-retry`, which the official clients honour

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        headers: dict[str, str] = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.retry is not None:
            headers["x-should-retry"] = "true" if self.retry else "false"
        if self.status in (429, 503):
            headers["Retry-After"] = str(RETRY_AFTER)
        return web.json_response(self.body(), status=self.status, headers=headers)


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code, retry=False)


def invalid_api_key(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", retry=False)


@dataclass(frozen=True, slots=True)
class _Mapping:
    status: int
    type: str
    code: str | None
    retry: bool | None = None


# Most specific class first: the first match wins.
_BY_ERROR: list[tuple[type[BaseException], _Mapping]] = [
    (QuestionTooLong, _Mapping(400, "invalid_request_error", "context_length_exceeded", retry=False)),
    (ConversationBusy, _Mapping(409, "invalid_request_error", "conversation_busy")),
    # A refused Dify key or a broken app is the bot's configuration, not the caller's key.
    (dify.DifyAuthError, _Mapping(503, "server_error", "upstream_unavailable", retry=False)),
    (dify.DifyAppUnavailable, _Mapping(503, "server_error", "upstream_unavailable", retry=False)),
    (dify.DifyQuotaExceeded, _Mapping(429, "insufficient_quota", "insufficient_quota", retry=False)),
    (dify.DifyAppBusy, _Mapping(429, "requests", "rate_limit_exceeded")),
    (dify.DifyBadRequest, _Mapping(400, "invalid_request_error", None, retry=False)),
    (dify.DifyTimeout, _Mapping(504, "server_error", "upstream_timeout")),
    (dify.DifyTransportError, _Mapping(502, "server_error", "upstream_error")),
    (dify.DifyServerError, _Mapping(502, "server_error", "upstream_error")),
    (dify.DifyProviderError, _Mapping(502, "server_error", "upstream_error")),
    (dify.DifyRunFailed, _Mapping(502, "server_error", "upstream_error")),
    (dify.DifyNotFound, _Mapping(502, "server_error", "upstream_error")),
    (dify.DifyProtocolError, _Mapping(502, "server_error", "upstream_error")),
    (StoreUnavailable, _Mapping(503, "server_error", "service_unavailable")),
    (Interrupted, _Mapping(503, "server_error", "service_unavailable")),
]
_FALLBACK = _Mapping(500, "server_error", None)


def _file_problem(error: FileProblem) -> ApiError:
    """The caller's image was refused or could not be read (400), or Dify would not take it (502)."""
    if error.reason == "upload_failed":
        return ApiError(502, friendly_error(error), type="server_error", code="upstream_error")
    return ApiError(400, friendly_error(error), code=error.reason, retry=False)


def from_bot_error(error: BotError) -> ApiError:
    """The HTTP error for an answer that failed before any text was sent; the message is the friendly one."""
    if isinstance(error, FileProblem):
        return _file_problem(error)
    mapping = next((found for cls, found in _BY_ERROR if isinstance(error, cls)), _FALLBACK)
    return ApiError(mapping.status, friendly_error(error), type=mapping.type, code=mapping.code, retry=mapping.retry)


def shutting_down() -> ApiError:
    """A new completion while this process stops taking work; the caller should retry (another replica)."""
    return ApiError(
        503,
        "The service is restarting. Please retry in a moment.",
        type="server_error",
        code="service_unavailable",
        retry=True,
    )
