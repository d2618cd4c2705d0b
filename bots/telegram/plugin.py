"""The Telegram front door as the registry sees it: settings, `check` lines and a lazy factory."""

from __future__ import annotations

from bots.front_door import Check, FrontDoorPlugin, lazy_factory
from bots.telegram.settings import TelegramSettings
from core.errors import BotError
from core.settings import Settings


def _configured(section: TelegramSettings) -> bool:
    return section.bot_token is not None


def _warnings(section: TelegramSettings) -> list[str]:
    if section.bot_token is None:
        others = [name for name in ("webhook_url", "webhook_secret") if getattr(section, name) is not None]
        others += [name for name in ("allowed_users", "allowed_chats") if getattr(section, name)]
        if others:
            names = ", ".join(f"TELEGRAM_{name.upper()}" for name in others)
            return [f"{names} set but TELEGRAM_BOT_TOKEN is not: Telegram stays off"]
        return []
    if section.webhook_url and section.webhook_secret is None:
        return ["TELEGRAM_WEBHOOK_URL without TELEGRAM_WEBHOOK_SECRET: anyone who finds the URL can post updates"]
    return []


def _checks(section: TelegramSettings, settings: Settings) -> list[tuple[str, Check]]:
    token = section.bot_token
    if token is None:
        return []

    async def get_me() -> str:
        from bots.telegram.lean_models import load_aiogram

        load_aiogram()
        from aiogram.exceptions import TelegramUnauthorizedError

        from bots.telegram.runtime import open_bot

        bot = open_bot(token.get_secret_value(), section.api_base)
        try:
            me = await bot.get_me()
        except TelegramUnauthorizedError:
            raise BotError("Telegram refused the token. Check TELEGRAM_BOT_TOKEN.") from None
        finally:
            await bot.session.close()
        mode = "webhook" if section.webhook_url else "long polling"
        return f"@{me.username} (id {me.id}), {mode}"

    return [("Telegram getMe", get_me)]


PLUGIN = FrontDoorPlugin(
    name="telegram",
    settings=TelegramSettings,
    configured=_configured,
    create=lazy_factory("bots.telegram.lean_models:load_aiogram", "bots.telegram.runtime:create_door"),
    warnings=_warnings,
    checks=_checks,
)
