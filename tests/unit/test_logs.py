"""Secrets never reach log output: known values and anything shaped like a token are redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.logs import JsonFormatter, RedactingFilter, Redactor

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor(["app-supersecretkey", "signing-secret-value"])))
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_telegram_token_in_a_url_is_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.warning("POST https://api.telegram.org/bot%s/sendMessage failed", TOKEN)
    assert TOKEN not in stream.getvalue() and "/bot[redacted]/sendMessage" in stream.getvalue()


def test_known_secrets_and_token_shapes_are_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("key=%s secret=%s", "app-supersecretkey", "signing-secret-value")
    logger.info("slack xoxb-1234-5678-abcdef app xapp-1-A1-2-abc auth Bearer app-ZZZZZZZZZZZZ")
    text = stream.getvalue()
    for secret in ("app-supersecretkey", "signing-secret-value", "xoxb-1234", "xapp-1-A1", "app-ZZZZ"):
        assert secret not in text


def test_exception_text_is_redacted(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise RuntimeError(f"cannot reach https://api.telegram.org/bot{TOKEN}/getMe")
    except RuntimeError:
        logger.exception("request failed")
    assert TOKEN not in stream.getvalue() and "RuntimeError" in stream.getvalue()


def test_json_lines_carry_context_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "answered", None, None)
    record.platform, record.chat_id, record.task_id = "telegram", 42, "t-1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "answered" and entry["platform"] == "telegram" and entry["task_id"] == "t-1"


def test_lines_inside_an_answer_carry_its_context(capture: tuple[logging.Logger, io.StringIO]) -> None:
    from core.logs import TextFormatter, add_log_context, log_context

    logger, stream = capture
    logger.handlers[0].setFormatter(TextFormatter())
    with log_context(platform="telegram", chat_id=42):
        logger.info("streaming")
        add_log_context(task_id="task-9")
        logger.info("finished")
    logger.info("outside")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("streaming [platform=telegram chat_id=42]")
    assert lines[1].endswith("finished [platform=telegram chat_id=42 task_id=task-9]")
    assert lines[2].endswith("outside")
