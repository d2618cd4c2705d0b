"""A 👀 reaction on a group question while its answer runs (decoration: failures never touch the answer)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.types import Message, ReactionTypeCustomEmoji, ReactionTypeEmoji, ReactionTypePaid

from bots.acknowledgement import reacting
from bots.telegram.addressing import GROUP_TYPES

log = logging.getLogger(__name__)

ACK_EMOJI = "👀"  # one of the emoji Telegram allows bots to react with


@dataclass(slots=True)
class AckReactions:
    """Reacts in groups when enabled; remembers (per process) the chats that refused reactions."""

    enabled: bool = True
    refused: set[int] = field(default_factory=set)

    def wanted(self, message: Message) -> bool:
        return self.enabled and message.chat.type in GROUP_TYPES and message.chat.id not in self.refused

    @asynccontextmanager
    async def around(self, bot: Bot, message: Message) -> AsyncIterator[None]:
        """👀 on `message` while the block runs; the reaction is set in the background, removed at the end."""
        if not self.wanted(message):
            yield
            return
        async with reacting(lambda: self._set(bot, message, ACK_EMOJI), lambda: self._set(bot, message, None)):
            yield

    async def _set(self, bot: Bot, message: Message, emoji: str | None) -> bool:
        chat_id = message.chat.id
        reaction: list[ReactionTypeEmoji | ReactionTypeCustomEmoji | ReactionTypePaid] = (
            [ReactionTypeEmoji(emoji=emoji)] if emoji else []
        )
        try:
            await bot.set_message_reaction(chat_id=chat_id, message_id=message.message_id, reaction=reaction)
        except Exception as exc:
            if "REACTION_INVALID" in str(exc):
                self.refused.add(chat_id)
                log.info("reactions are not allowed in chat %s; not reacting there again", chat_id)
            else:
                log.debug("could not set the reaction in chat %s: %r", chat_id, exc)
            return False
        return True
