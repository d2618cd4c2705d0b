"""Finishing a Telegram answer a dead replica left in the journal: answer it again, or end it as interrupted.

A question that came with files is never answered again (its files are not in the journal): it ends interrupted."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.types import Message

from bots.telegram.addressing import topic_of
from bots.telegram.handlers import TelegramContext, answer
from bots.telegram.surface import TelegramSurface
from core.dify.errors import DifyError
from core.journal import JournalEntry, end_interrupted
from core.texts import language_for, text

log = logging.getLogger(__name__)


def handle_id(handle: Any) -> int:
    """A Telegram answer message as the journal stores it: its message id."""
    return int(handle)


async def recover(ctx: TelegramContext, bot: Bot, entry: JournalEntry) -> None:
    """Answer again when Dify never started; else end the half-written message and stop the Dify task."""
    message = Message.model_validate(entry.origin["message"]).as_(bot)
    surface = TelegramSurface(bot, chat_id=message.chat.id, thread_id=topic_of(message), reply_to=message.message_id)
    if not entry.started and not entry.origin.get("files"):
        for shown in entry.messages:  # a "Thinking…" placeholder; the new answer brings its own
            await surface.delete(handle_id(shown.handle))
        log.info("answering again a message whose answer never started (chat %s)", message.chat.id)
        await answer(ctx, bot, message, str(entry.origin["query"]))
        return
    lang = language_for(message.from_user.language_code if message.from_user else None)
    note = "⚠️ " + text("interrupted_resend", lang)
    await end_interrupted(surface, entry.messages, note=note)
    if entry.task_id is None:
        return  # a question with files that never reached Dify: the files are not journaled, so it is not re-asked
    try:
        await ctx.pipeline.service.dify.stop(task_id=entry.task_id, user=entry.dify_user or entry.chat.user)
    except DifyError as exc:
        log.warning("could not stop interrupted task %s: %r", entry.task_id, exc)
