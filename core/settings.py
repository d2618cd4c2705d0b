"""All configuration, read from the environment and `.env` in this one place, with readable errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

IdSet = Annotated[frozenset[int], NoDecode]
NameSet = Annotated[frozenset[str], NoDecode]

_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class SettingsError(Exception):
    """A setting is missing or malformed; `str()` is one line meant for the person running the bot."""


class Settings(BaseSettings):
    """Every setting of dify-bots. Field descriptions double as the 'expected' part of error messages."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False, frozen=True
    )

    # Dify
    dify_api_key: SecretStr = Field(description="the Dify app's API key (starts with 'app-')")
    dify_base_url: str = Field(
        "https://api.dify.ai/v1", description="the Dify Service API base URL, e.g. https://api.dify.ai/v1"
    )
    dify_app_mode: Literal["", "chat", "agent-chat", "advanced-chat", "workflow", "agent", "completion"] = Field(
        "",
        description="empty (detect with GET /info) or chat, agent-chat, advanced-chat, workflow, agent",
    )
    dify_workflow_input: str = Field(
        "query", min_length=1, description="the workflow input variable that receives the user's message"
    )
    dify_workflow_output: str = Field(
        "", description="the workflow output key holding the answer (empty: pick answer/text/result/output)"
    )
    dify_connect_timeout: float = Field(10.0, gt=0, description="seconds, a number above 0")
    dify_read_timeout: float = Field(
        120.0, ge=30, description="seconds of silence before a stream counts as dead (30 or more)"
    )

    # Storage
    redis_url: str | None = Field(
        None, description="a redis:// or rediss:// URL; empty to use the embedded Redis under DATA_DIR"
    )
    redis_prefix: str = Field("difybots", min_length=1, description="the prefix of every Redis key")
    data_dir: Path = Field(Path("./data"), description="a writable directory for the embedded Redis")
    conversation_ttl: int = Field(
        7 * 24 * 3600, ge=0, description="seconds a conversation is kept after its last message (0 = forever)"
    )
    lock_timeout: float = Field(
        120.0, gt=0, description="seconds a message waits for the previous answer in the same chat"
    )

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )
    log_format: Literal["text", "json"] = Field("text", description="text or json")

    # HTTP server (webhooks, Slack events, health, metrics, OpenAI API)
    http_host: str = Field("0.0.0.0", description="the address the web server listens on")
    http_port: int = Field(8080, ge=0, le=65535, description="a TCP port number (0-65535)")

    # Telegram
    telegram_bot_token: SecretStr | None = Field(None, description="the token BotFather gave you")
    telegram_api_base: str = Field(
        "https://api.telegram.org", description="the Bot API server URL, e.g. https://api.telegram.org"
    )
    telegram_webhook_url: str | None = Field(
        None, description="the public https URL Telegram should post updates to (empty: long polling)"
    )
    telegram_webhook_secret: SecretStr | None = Field(None, description="1-256 characters of A-Z, a-z, 0-9, _ and -")
    telegram_allowed_users: IdSet = Field(
        frozenset(), description="comma-separated numeric Telegram user ids (empty: everyone)"
    )
    telegram_allowed_chats: IdSet = Field(
        frozenset(), description="comma-separated numeric Telegram chat ids (empty: every chat)"
    )
    telegram_private_interval: float = Field(
        1.0, ge=1.0, description="seconds between edits in a private chat (1.0 or more)"
    )
    telegram_group_interval: float = Field(3.0, ge=3.0, description="seconds between edits in a group (3.0 or more)")

    # Slack
    slack_bot_token: SecretStr | None = Field(None, description="the bot token (xoxb-...)")
    slack_signing_secret: SecretStr | None = Field(None, description="the app's signing secret")
    slack_app_token: SecretStr | None = Field(None, description="an app-level token (xapp-...) for Socket Mode")
    slack_api_base: str = Field("https://slack.com/api/", description="the Slack Web API base URL")
    slack_streaming: Literal["auto", "native", "update"] = Field("auto", description="auto, native or update")
    slack_allowed_channels: NameSet = Field(frozenset(), description="comma-separated channel ids")
    slack_allowed_users: NameSet = Field(frozenset(), description="comma-separated user ids")
    slack_update_interval: float = Field(
        1.0, ge=1.0, description="seconds between chat.update calls on one message (1.0 or more)"
    )

    # OpenAI-compatible API
    openai_api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="comma-separated bearer keys clients must present"
    )
    openai_model_name: str = Field("dify", min_length=1, description="the model id /v1/models lists")
    openai_system_input: str = Field("system_prompt", description="the Dify input that receives a system message")

    shutdown_grace: float = Field(25.0, ge=0, description="seconds in-flight answers get to finish on shutdown")

    @field_validator("dify_api_key", mode="before")
    @classmethod
    def _strip_key(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("dify_api_key")
    @classmethod
    def _non_empty_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("is empty")
        return value

    @field_validator("dify_base_url", "telegram_api_base", "slack_api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator(
        "redis_url",
        "telegram_bot_token",
        "telegram_webhook_url",
        "telegram_webhook_secret",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://") and not value.startswith("http://"):
            raise ValueError("must be an https:// URL")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WEBHOOK_SECRET.match(value.get_secret_value()):
            raise ValueError("has characters Telegram does not allow")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("telegram_allowed_users", "telegram_allowed_chats", mode="before")
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            try:
                return frozenset(int(item) for item in items)
            except ValueError:
                raise ValueError("must be numeric ids separated by commas") from None
        return value

    @field_validator("slack_allowed_channels", "slack_allowed_users", mode="before")
    @classmethod
    def _name_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("openai_api_keys", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value


def _describe(error: dict[str, Any]) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    name = field.upper()
    info = Settings.model_fields.get(field)
    expected = info.description if info is not None else None
    if error.get("type") == "missing":
        problem = "is not set"
    else:
        message = str(error.get("msg", "is invalid"))
        problem = message.removeprefix("Value error, ")
        problem = problem[0].lower() + problem[1:] if problem else "is invalid"
        if not problem.startswith(("must", "has", "is")):
            problem = f"is invalid ({problem})"
    return f"{name} {problem}" + (f"; expected {expected}" if expected else "")


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read settings from the environment (and `env_file`), raising SettingsError with one readable line."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(dict(error)) for error in exc.errors())) from None
