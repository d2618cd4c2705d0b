"""Configuration: core's settings, the base of a front door's section, and the one loader that reads them all."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.redis_urls import RedisUrlError, parse_redis_url


def _items(value: Any) -> Any:
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


def _id_items(value: Any) -> Any:
    items = _items(value)
    if isinstance(value, str):
        try:
            return frozenset(int(item) for item in items)
        except ValueError:
            raise ValueError("must be numeric ids separated by commas") from None
    return items


def empty_is_none(value: Any) -> Any:
    """Blank strings mean "not set" (a commented-out or empty line in .env)."""
    return (value.strip() or None) if isinstance(value, str) else value


def http_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must start with http:// or https://")
    return value


# Comma-separated lists in the environment.
IdSet = Annotated[frozenset[int], NoDecode, BeforeValidator(_id_items)]
NameSet = Annotated[frozenset[str], NoDecode, BeforeValidator(lambda value: frozenset(_items(value)))]
SecretList = Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(lambda value: tuple(_items(value)))]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(empty_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(empty_is_none)]
HttpUrl = Annotated[str, BeforeValidator(lambda value: http_url(value) if isinstance(value, str) else value)]

_COMMON = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False, frozen=True
)


class SettingsError(Exception):
    """A setting is missing or malformed; `str()` is one line meant for the person running the bot."""


class SettingsSection(BaseSettings):
    """A front door's own settings, named `{env_prefix}{FIELD}` and read by the same loader as core's."""

    model_config = SettingsConfigDict(**_COMMON)

    @classmethod
    def prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix") or "")

    @classmethod
    def env_names(cls) -> list[str]:
        return [f"{cls.prefix()}{name}".upper() for name in cls.model_fields]

    def secrets(self) -> list[str]:
        """Values to redact from logs: every secret field that is set."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, SecretStr):
                    values.append(item.get_secret_value())
        return values


class Settings(BaseSettings):
    """What core needs: Dify, store, logging, HTTP, shutdown. Descriptions double as the "expected" of errors."""

    model_config = SettingsConfigDict(**_COMMON)

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
    dify_files_url: str = Field(
        "", description="the address Dify's FILES_URL points to when it is not the API host (empty: the API host)"
    )
    dify_connect_timeout: float = Field(10.0, gt=0, description="seconds, a number above 0")
    dify_read_timeout: float = Field(
        120.0, ge=30, description="seconds of silence before a stream counts as dead (30 or more)"
    )
    dify_idle_timeout: float = Field(
        120.0, gt=0, description="seconds with nothing but pings from Dify before an answer is ended and stopped"
    )
    answer_timeout: float = Field(
        900.0, gt=0, description="seconds an answer may run in total before it is ended and stopped"
    )

    # Storage
    redis_url: str | None = Field(
        None,
        description=(
            "a redis://, rediss:// or unix:// URL, "
            "redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db] or "
            "redis+cluster://[[user]:password@]host:port[,host:port…] (rediss+ for TLS); "
            "empty to use the embedded Redis under DATA_DIR"
        ),
    )
    redis_prefix: str = Field("difybots", min_length=1, description="the prefix of every Redis key")
    data_dir: Path = Field(Path("./data"), description="a writable directory for the embedded Redis")
    conversation_ttl: int = Field(
        7 * 24 * 3600, ge=0, description="seconds a conversation is kept after its last message (0 = forever)"
    )
    lock_timeout: float = Field(
        120.0, gt=0, description="seconds a message waits for the previous answer in the same chat"
    )
    journal_lease: float = Field(
        15.0,
        gt=0,
        description="seconds after which another replica finishes the answers of a replica that stopped renewing",
    )

    # What a completed answer shows under it
    show_sources: bool = Field(True, description="on or off: end answers with the knowledge sources they cite")
    show_usage: Literal["off", "tokens", "full"] = Field(
        "off", description="off, tokens (total tokens) or full (tokens, price, time, workflow steps)"
    )

    # Buttons on answers (Telegram inline keyboards, Slack blocks)
    stop_button: bool = Field(True, description="on or off: a Stop button on answers while they stream")
    feedback_buttons: bool = Field(True, description="on or off: 👍/👎 buttons under completed answers")

    # Groups: a 👀 reaction on the question while its answer runs
    ack_reaction: bool = Field(True, description="on or off: react 👀 to a group question while it is answered")

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )
    log_format: Literal["text", "json"] = Field("text", description="text or json")

    # HTTP server (webhooks, Slack events, health, metrics, OpenAI API)
    http_host: str = Field("0.0.0.0", description="the address the web server listens on")
    http_port: int = Field(8080, ge=0, le=65535, description="a TCP port number (0-65535)")

    shutdown_grace: float = Field(25.0, ge=0, description="seconds in-flight answers get to finish on shutdown")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="auto (uvloop where it is installed), uvloop or asyncio"
    )

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

    @field_validator("dify_app_mode")
    @classmethod
    def _supported_mode(cls, value: str) -> str:
        if value == "completion":
            raise ValueError(
                "is completion: completion apps are not supported; use a chat, agent, chatflow or workflow app"
            )
        return value

    @field_validator("dify_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("dify_files_url")
    @classmethod
    def _files_url(cls, value: str) -> str:
        return http_url(value) if value.strip() else ""

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_redis_url(value)
            except RedisUrlError as exc:  # its text never quotes the URL, which may hold a password
                raise ValueError(
                    exc.problem if exc.problem.startswith("must") else f"is unusable: it {exc.problem}"
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the loader read: core's settings and each front door's section, by front door name."""

    core: Settings
    sections: Mapping[str, SettingsSection] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        return self.sections[name]

    def secrets(self) -> list[str]:
        values = [self.core.dify_api_key.get_secret_value()]
        for section in self.sections.values():
            values.extend(section.secrets())
        return values


def _describe(model: type[BaseSettings], prefix: str, error: Mapping[str, Any]) -> str:
    field_name = str(error["loc"][0]) if error.get("loc") else "?"
    name = f"{prefix}{field_name}".upper()
    info = model.model_fields.get(field_name)
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


def load_config(
    env_file: str | Path | None = ".env",
    sections: Mapping[str, type[SettingsSection]] | None = None,
    **overrides: Any,
) -> Config:
    """Read core's settings and every section from the environment (and `env_file`).

    `overrides` use lower-case environment names (`dify_api_key=`, `telegram_bot_token=`); every problem of
    every section is reported together as one readable line (SettingsError).
    """
    sections = dict(sections or {})
    split: dict[str, dict[str, Any]] = {name: {} for name in sections}
    core_overrides: dict[str, Any] = {}
    for key, value in overrides.items():
        owner = next(
            (
                name
                for name, model in sections.items()
                if model.prefix() and key.lower().startswith(model.prefix().lower())
            ),
            None,
        )
        if owner is None:
            core_overrides[key] = value
        else:
            split[owner][key[len(sections[owner].prefix()) :].lower()] = value
    problems: list[str] = []
    core: Settings | None = None
    loaded: dict[str, SettingsSection] = {}
    try:
        core = Settings(_env_file=env_file, **core_overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems.extend(_describe(Settings, "", dict(error)) for error in exc.errors())
    for name, model in sections.items():
        try:
            loaded[name] = model(_env_file=env_file, **split[name])  # type: ignore[call-arg]
        except ValidationError as exc:
            problems.extend(_describe(model, model.prefix(), dict(error)) for error in exc.errors())
    if problems or core is None:
        raise SettingsError("; ".join(problems))
    return Config(core=core, sections=loaded)


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Core's settings alone (no front door sections), raising SettingsError with one readable line."""
    return load_config(env_file, None, **overrides).core
