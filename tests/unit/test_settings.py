"""Settings: defaults, parsing, and one readable line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.config import load, setting_names
from core.settings import SettingsError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DIFY_API_KEY",
        "DIFY_BASE_URL",
        "REDIS_URL",
        "CONVERSATION_TTL",
        "TELEGRAM_ALLOWED_USERS",
        "TELEGRAM_BOT_TOKEN",
        "LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFY_API_KEY", "app-abc")
    config = load(None)
    settings = config.core
    assert settings.dify_base_url == "https://api.dify.ai/v1"
    assert settings.conversation_ttl == 7 * 24 * 3600
    assert settings.redis_url is None and settings.data_dir == Path("data")
    assert config.section("telegram").bot_token is None and settings.http_port == 8080
    assert config.section("telegram").private_interval == 1.0 and config.section("slack").streaming == "auto"
    assert config.section("openai").model_name == "dify" and config.section("openai").api_keys == ()


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DIFY_API_KEY=app-from-file\nTELEGRAM_ALLOWED_USERS=1, 2 ,3\nREDIS_URL=\n")
    config = load(env)
    assert config.core.dify_api_key.get_secret_value() == "app-from-file"
    assert config.section("telegram").allowed_users == frozenset({1, 2, 3})
    assert config.core.redis_url is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "DIFY_API_KEY is not set; expected the Dify app's API key (starts with 'app-')"),
        ({"DIFY_API_KEY": "  "}, "DIFY_API_KEY is empty"),
        ({"DIFY_API_KEY": "app-x", "CONVERSATION_TTL": "soon"}, "CONVERSATION_TTL is invalid"),
        ({"DIFY_API_KEY": "app-x", "CONVERSATION_TTL": "-1"}, "CONVERSATION_TTL is invalid"),
        (
            {"DIFY_API_KEY": "app-x", "TELEGRAM_ALLOWED_USERS": "1,bob"},
            "TELEGRAM_ALLOWED_USERS must be numeric",
        ),
        ({"DIFY_API_KEY": "app-x", "DIFY_BASE_URL": "api.dify.ai"}, "DIFY_BASE_URL must start with http"),
        ({"DIFY_API_KEY": "app-x", "REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://"),
        ({"DIFY_API_KEY": "app-x", "LOG_LEVEL": "loud"}, "LOG_LEVEL is invalid"),
    ],
)
def test_errors_are_one_readable_line(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load(None)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and "pydantic" not in message and "validation error" not in message


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    names = setting_names()
    assert {"DIFY_API_KEY", "TELEGRAM_BOT_TOKEN", "SLACK_APP_TOKEN", "OPENAI_API_KEYS", "SHUTDOWN_GRACE"} <= set(names)
    missing = [name for name in names if f"`{name}`" not in readme]
    assert missing == []
