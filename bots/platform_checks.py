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
    return checks
