"""The Slack front door as the registry sees it: settings, `check` lines and a lazy factory."""

from __future__ import annotations

from bots.front_door import Check, FrontDoorPlugin, lazy_factory
from bots.slack.settings import SlackSettings
from core.errors import BotError
from core.settings import Settings


def _configured(section: SlackSettings) -> bool:
    return section.bot_token is not None


def _warnings(section: SlackSettings) -> list[str]:
    if section.bot_token is None:
        others = [name for name in ("signing_secret", "app_token") if getattr(section, name) is not None]
        if others:
            names = ", ".join(f"SLACK_{name.upper()}" for name in others)
            return [f"{names} set but SLACK_BOT_TOKEN is not: Slack stays off"]
        return []
    if section.app_token is None and section.signing_secret is None:
        return ["SLACK_BOT_TOKEN without SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)"]
    return []


def _checks(section: SlackSettings, settings: Settings) -> list[tuple[str, Check]]:
    token = section.bot_token
    if token is None:
        return []

    async def auth_test() -> str:
        from slack_sdk.errors import SlackApiError
        from slack_sdk.web.async_client import AsyncWebClient

        base = section.api_base if section.api_base.endswith("/") else section.api_base + "/"
        client = AsyncWebClient(token=token.get_secret_value(), base_url=base)
        try:
            identity = await client.auth_test()
        except SlackApiError as exc:
            raise BotError(f"Slack refused the token ({exc.response.get('error')}). Check SLACK_BOT_TOKEN.") from None
        if section.app_token is not None:
            mode = "Socket Mode"
        elif section.signing_secret is not None:
            mode = "HTTP mode at /slack/events"
        else:
            raise BotError("SLACK_SIGNING_SECRET is not set (needed for HTTP mode; or set SLACK_APP_TOKEN).")
        return f"team {identity.get('team_id')}, bot user {identity.get('user_id')}, {mode}"

    return [("Slack auth.test", auth_test)]


PLUGIN = FrontDoorPlugin(
    name="slack",
    settings=SlackSettings,
    configured=_configured,
    create=lazy_factory("bots.slack.runtime:create_door"),
    warnings=_warnings,
    checks=_checks,
)
