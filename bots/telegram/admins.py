"""Whether a group member may stop someone else's answer: the group's creator and administrators may."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from bots.telegram.addressing import GROUP_TYPES
from bots.telegram.surface import UNREACHABLE
from core.controls.stops import IsAdmin

log = logging.getLogger(__name__)

ADMIN_STATUSES = frozenset({"creator", "administrator"})


def admin_check(bot: Bot, *, chat_id: int, chat_type: str, user_id: int) -> IsAdmin | None:
    """The check for groups (asked only when needed: one getChatMember call); None in private chats."""
    if chat_type not in GROUP_TYPES:
        return None

    async def is_admin() -> bool:
        try:
            member = await bot.get_chat_member(chat_id=chat_id, user_id=user_id)
        except (TelegramAPIError, *UNREACHABLE) as exc:
            log.info("could not check whether a member of chat %s is an admin: %s", chat_id, type(exc).__name__)
            return False
        return member.status in ADMIN_STATUSES

    return is_admin
