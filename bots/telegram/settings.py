"""TELEGRAM_* settings: the Telegram front door's section."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from core.settings import HttpUrl, IdSet, OptionalSecret, OptionalText, SettingsSection

_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramSettings(SettingsSection):
    """Set TELEGRAM_BOT_TOKEN to enable Telegram."""

    model_config = SettingsConfigDict(env_prefix="TELEGRAM_")

    bot_token: OptionalSecret = Field(None, description="the token BotFather gave you")
    api_base: HttpUrl = Field(
        "https://api.telegram.org", description="the Bot API server URL, e.g. https://api.telegram.org"
    )
    webhook_url: OptionalText = Field(
        None, description="the public https URL Telegram should post updates to (empty: long polling)"
    )
    webhook_secret: OptionalSecret = Field(None, description="1-256 characters of A-Z, a-z, 0-9, _ and -")
    allowed_users: IdSet = Field(frozenset(), description="comma-separated numeric Telegram user ids (empty: everyone)")
    allowed_chats: IdSet = Field(
        frozenset(), description="comma-separated numeric Telegram chat ids (empty: every chat)"
    )
    private_interval: float = Field(1.0, ge=1.0, description="seconds between edits in a private chat (1.0 or more)")
    group_interval: float = Field(3.0, ge=3.0, description="seconds between edits in a group (3.0 or more)")
    global_rate: float = Field(
        0.0, ge=0.0, description="new messages per second across all chats, edits not counted (0: no limit)"
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^/\s]+", value):
            raise ValueError("must be an https:// URL (Telegram only posts updates over HTTPS)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: OptionalSecret) -> OptionalSecret:
        if value is not None and not _WEBHOOK_SECRET.match(value.get_secret_value()):
            raise ValueError("has characters Telegram does not allow")
        return value
