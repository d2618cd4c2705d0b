"""Friendly texts: one per error class, English and Chinese, never codes or raw messages."""

from __future__ import annotations

import pytest

from core.dify import errors
from core.errors import BotError, ConversationBusy, Interrupted, StoreUnavailable
from core.texts import _ERRORS, friendly_error, language_for, text

ALL_ERRORS = [
    errors.DifyAuthError,
    errors.DifyAppUnavailable,
    errors.DifyBadRequest,
    errors.DifyNotFound,
    errors.ConversationNotFound,
    errors.DifyAppBusy,
    errors.DifyQuotaExceeded,
    errors.DifyProviderError,
    errors.DifyRunFailed,
    errors.DifyServerError,
    errors.DifyTransportError,
    errors.DifyTimeout,
    errors.DifyProtocolError,
    StoreUnavailable,
    ConversationBusy,
    Interrupted,
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_each_error_class_has_its_own_sentence(cls: type[BotError], lang: str) -> None:
    secret = 'code=xyz_internal {"message": "boom"}'
    sentence = friendly_error(cls(secret, status=400, code="xyz_internal"), lang)  # type: ignore[arg-type]
    own = [row for row in _ERRORS if row[0] is cls]
    assert own, f"{cls.__name__} has no sentence of its own"
    assert sentence == own[0][2 if lang == "zh" else 1]
    assert "xyz" not in sentence and "{" not in sentence and "boom" not in sentence


def test_sentences_are_distinct() -> None:
    english = [row[1] for row in _ERRORS]
    assert len(set(english)) == len(english)


def test_quota_sentence_tells_the_user_what_to_do() -> None:
    assert friendly_error(errors.DifyQuotaExceeded("x")) == (
        "The assistant has reached its usage limit. Please tell the bot owner."
    )


def test_unknown_exceptions_get_a_generic_sentence() -> None:
    assert "try again" in friendly_error(RuntimeError("Traceback ...")).lower()


@pytest.mark.parametrize(("code", "lang"), [("zh-hans", "zh"), ("zh", "zh"), ("en", "en"), (None, "en"), ("de", "en")])
def test_language_for(code: str | None, lang: str) -> None:
    assert language_for(code) == lang


def test_templates_fill_in() -> None:
    assert text("progress_tool", "en", label="Search") == "Using Search…"


@pytest.mark.parametrize(
    ("status", "code", "message", "cls"),
    [
        (404, "not_found", "Conversation Not Exists.", errors.ConversationNotFound),
        (401, "unauthorized", "Access token is invalid", errors.DifyAuthError),
        (429, "too_many_requests", "Too many", errors.DifyAppBusy),
        (429, "rate_limit_error", "quota", errors.DifyQuotaExceeded),
        (400, "completion_request_error", "[openai] x", errors.DifyProviderError),
        (502, None, "HTTP 502", errors.DifyServerError),
        (400, "invalid_param", "Workflow not published", errors.DifyAppUnavailable),
        (None, None, "[anthropic] Rate Limit Error", errors.DifyProviderError),
        (None, None, "query is required", errors.DifyBadRequest),
        (418, None, "teapot", errors.DifyBadRequest),
    ],
)
def test_classify(status: int | None, code: str | None, message: str, cls: type[errors.DifyError]) -> None:
    assert type(errors.classify(status, code, message)) is cls
    assert errors.classify(429, "too_many_requests", "").retryable
