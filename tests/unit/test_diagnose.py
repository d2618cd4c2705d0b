"""Server-side Dify failures and wrong base URLs: classified as such and explained with the setting to fix."""

from __future__ import annotations

import pytest

from bots.diagnose import explain, suggested_base_url
from core.dify import errors
from core.texts import friendly_error

PLUGIN_DAEMON = "Failed to request plugin daemon, url: plugin/9630bb80/management/models"


@pytest.mark.parametrize(
    ("status", "code", "message", "cls"),
    [
        (400, "invalid_param", PLUGIN_DAEMON, errors.DifyModelUnavailable),
        (None, None, PLUGIN_DAEMON, errors.DifyModelUnavailable),
        (400, "provider_not_initialize", "No valid model provider credentials found.", errors.DifyModelUnavailable),
        (401, "unauthorized", "App token is missing.", errors.DifyBadBaseUrl),
        (401, "unauthorized", "Access token is invalid", errors.DifyAuthError),
        (400, "invalid_param", "Arg user must be provided.", errors.DifyBadRequest),
    ],
)
def test_classify_server_side_and_address_problems(
    status: int | None, code: str | None, message: str, cls: type[errors.DifyError]
) -> None:
    assert type(errors.classify(status, code, message)) is cls


def test_a_model_that_is_down_is_never_the_users_fault() -> None:
    error = errors.classify(400, "invalid_param", PLUGIN_DAEMON)
    for lang in ("en", "zh"):
        assert friendly_error(error, lang) != friendly_error(errors.DifyBadRequest(), lang)
    assert "rephras" not in friendly_error(error)
    assert "server-side problem" in explain(error, base_url="https://dify.example.com/v1")


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("https://dify.example.com", "https://dify.example.com/v1"),
        ("https://dify.example.com/", "https://dify.example.com/v1"),
        ("https://dify.example.com/api", "https://dify.example.com/v1"),
        ("https://dify.example.com/v1/chat-messages", "https://dify.example.com/v1"),
        ("https://example.com/dify/v1/info", "https://example.com/dify/v1"),
    ],
)
def test_the_suggested_base_url(given: str, meant: str) -> None:
    assert suggested_base_url(given) == meant
    line = explain(errors.DifyBadBaseUrl("HTTP 404"), base_url=given)
    assert line.startswith(f"DIFY_BASE_URL {given} does not lead to Dify's Service API") and line.endswith(meant)
