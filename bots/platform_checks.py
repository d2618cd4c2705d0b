"""Checks for the platform tokens that are configured (Telegram getMe, Slack auth.test)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.settings import Settings

Check = Callable[[], Awaitable[str]]


def platform_checks(settings: Settings) -> list[tuple[str, Check]]:
    checks: list[tuple[str, Check]] = []
    token = settings.telegram_bot_token
    if token is not None:

        async def telegram() -> str:
            from aiogram.exceptions import TelegramUnauthorizedError

            from bots.telegram.runtime import open_bot
            from core.errors import BotError

            bot = open_bot(token.get_secret_value(), settings.telegram_api_base)
            try:
                me = await bot.get_me()
            except TelegramUnauthorizedError:
                raise BotError("Telegram refused the token. Check TELEGRAM_BOT_TOKEN.") from None
            finally:
                await bot.session.close()
            mode = "webhook" if settings.telegram_webhook_url else "long polling"
            return f"@{me.username} (id {me.id}), {mode}"

        checks.append(("Telegram getMe", telegram))
    slack_token = settings.slack_bot_token
    if slack_token is not None:

        async def slack() -> str:
            from slack_sdk.errors import SlackApiError
            from slack_sdk.web.async_client import AsyncWebClient

            from core.errors import BotError

            base = settings.slack_api_base if settings.slack_api_base.endswith("/") else settings.slack_api_base + "/"
            client = AsyncWebClient(token=slack_token.get_secret_value(), base_url=base)
            try:
                identity = await client.auth_test()
            except SlackApiError as exc:
                raise BotError(
                    f"Slack refused the token ({exc.response.get('error')}). Check SLACK_BOT_TOKEN."
                ) from None
            if settings.slack_app_token is not None:
                mode = "Socket Mode"
            elif settings.slack_signing_secret is not None:
                mode = "HTTP mode at /slack/events"
            else:
                raise BotError("SLACK_SIGNING_SECRET is not set (needed for HTTP mode; or set SLACK_APP_TOKEN).")
            return f"team {identity.get('team_id')}, bot user {identity.get('user_id')}, {mode}"

        checks.append(("Slack auth.test", slack))
    return checks
