"""SLACK_* settings: the Slack front door's section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.settings import HttpUrl, NameSet, OptionalSecret, SettingsSection


class SlackSettings(SettingsSection):
    """Set SLACK_BOT_TOKEN to enable Slack."""

    model_config = SettingsConfigDict(env_prefix="SLACK_")

    bot_token: OptionalSecret = Field(None, description="the bot token (xoxb-...)")
    signing_secret: OptionalSecret = Field(None, description="the app's signing secret")
    app_token: OptionalSecret = Field(None, description="an app-level token (xapp-...) for Socket Mode")
    api_base: HttpUrl = Field("https://slack.com/api/", description="the Slack Web API base URL")
    streaming: Literal["auto", "native", "update"] = Field("auto", description="auto, native or update")
    allowed_channels: NameSet = Field(frozenset(), description="comma-separated channel ids")
    allowed_users: NameSet = Field(frozenset(), description="comma-separated user ids")
    update_interval: float = Field(
        1.0, ge=1.0, description="seconds between chat.update calls on one message (1.0 or more)"
    )
