"""aiogram handlers: commands, text messages, files and albums, and the streamed answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import Message, User

from bots.telegram.addressing import GROUP_TYPES, Addressed, addressed_query, chat_key, group_key, topic_of
from bots.telegram.admins import admin_check
from bots.telegram.albums import AlbumCollector
from bots.telegram.files import has_files, incoming_files
from bots.telegram.filters import on_loop
from bots.telegram.reactions import AckReactions
from bots.telegram.surface import TelegramSurface
from core.answering import AnswerPipeline
from core.controls.model import Controls
from core.controls.suggestions import openers
from core.conversations import on_queued
from core.errors import BotError
from core.files.model import IncomingFile
from core.render.footers import UsageMode
from core.render.renderer import RenderStats, StreamRenderer
from core.render.surface import SurfaceError, SurfaceRateLimited
from core.render.throttle import Clock, Sleep, ThrottleRegistry
from core.service import ReplyStream
from core.texts import Lang, friendly_error, language_for, text

log = logging.getLogger(__name__)

COMMANDS = {
    "start": "Start talking to the assistant",
    "help": "How to use this bot",
    "reset": "Start a new conversation",
    "stop": "Stop the answer being written",
}


@dataclass(slots=True)
class TelegramContext:
    """Everything the handlers need, passed in by the composition root."""

    pipeline: AnswerPipeline
    throttles: ThrottleRegistry
    private_interval: float = 1.0
    group_interval: float = 3.0
    allowed_users: frozenset[int] = frozenset()
    allowed_chats: frozenset[int] = frozenset()
    status_delay: float = 1.0
    show_sources: bool = True
    show_usage: UsageMode = "off"
    clock: Clock | None = None
    sleep: Sleep | None = None
    opening_statement: str | None = None
    album_quiet: float = 0.5  # seconds without a new part before an album is answered
    callback_wait: float = 1.0  # seconds a button press waits for its notice before the press is answered
    reactions: AckReactions = field(default_factory=AckReactions)
    _albums: AlbumCollector | None = field(default=None, repr=False)

    @property
    def albums(self) -> AlbumCollector:
        """Album parts are collected in the conversation store's Redis, so any replica may receive them."""
        if self._albums is None:
            store = self.pipeline.service.store
            self._albums = AlbumCollector(store.redis, store.keys, quiet=self.album_quiet)
        return self._albums

    def interval(self, chat_type: str) -> float:
        return self.group_interval if chat_type in GROUP_TYPES else self.private_interval

    def allowed(self, message: Message) -> bool:
        """Answered when the chat or the sender is allowed; with both lists empty, everyone is."""
        return self.allows(chat_id=message.chat.id, user_id=message.from_user.id if message.from_user else None)

    def allows(self, *, chat_id: int, user_id: int | None) -> bool:
        if not self.allowed_users and not self.allowed_chats:
            return True
        return chat_id in self.allowed_chats or user_id in self.allowed_users


def _lang(message: Message) -> Lang:
    return language_for(message.from_user.language_code if message.from_user else None)


async def _say(
    ctx: TelegramContext, bot: Bot, message: Message, body: str, *, controls: Controls | None = None
) -> None:
    """A short one-off reply (commands, refusals), sharing the chat's send budget."""
    throttle = ctx.throttles.get(message.chat.id, ctx.interval(message.chat.type))
    surface = TelegramSurface(
        bot, chat_id=message.chat.id, thread_id=topic_of(message), reply_to=message.message_id, lang=_lang(message)
    )
    for _ in range(3):
        await throttle.take(ctx.sleep or asyncio.sleep)
        try:
            await surface.send(body, final=True, controls=controls)
            return
        except SurfaceRateLimited as exc:
            throttle.pause(exc.retry_after)
        except SurfaceError as exc:
            log.warning("could not reply in chat %s: %r", message.chat.id, exc)
            return
        finally:
            throttle.release()


def build_router(ctx: TelegramContext) -> Router:
    router = Router(name="dify-bots")

    @router.message(Command("start", ignore_case=True))
    async def start(message: Message, bot: Bot) -> None:
        if not ctx.allowed(message):
            await _say(ctx, bot, message, text("not_allowed", _lang(message)))
            return
        lang = _lang(message)
        greeting = ctx.opening_statement or text("greeting", lang)
        questions = await openers(ctx.pipeline.service.parameters)
        if not questions:
            await _say(ctx, bot, message, greeting)
            return
        body = f"{greeting}\n\n{text('suggestions_intro', lang)}"
        await _say(ctx, bot, message, body, controls=Controls(suggestions=questions))

    @router.message(Command("help", ignore_case=True))
    async def help_command(message: Message, bot: Bot) -> None:
        await _say(ctx, bot, message, text("help", _lang(message)))

    @router.message(Command("reset", "new", ignore_case=True))
    async def reset(message: Message, bot: Bot) -> None:
        if not ctx.allowed(message):
            await _say(ctx, bot, message, text("not_allowed", _lang(message)))
            return
        try:
            existed = await ctx.pipeline.service.reset(chat_key(message, bot_id=bot.id))
        except BotError as exc:
            await _say(ctx, bot, message, friendly_error(exc, _lang(message)))
            return
        await _say(ctx, bot, message, text("reset_done" if existed else "reset_empty", _lang(message)))

    @router.message(Command("stop", ignore_case=True))
    async def stop(message: Message, bot: Bot) -> None:
        if not ctx.allowed(message):
            await _say(ctx, bot, message, text("not_allowed", _lang(message)))
            return
        user_id = message.from_user.id if message.from_user else message.chat.id
        is_admin = admin_check(bot, chat_id=message.chat.id, chat_type=message.chat.type, user_id=user_id)
        outcome, notice = await ctx.pipeline.controls.stop(
            by=str(user_id), lang=_lang(message), chat=chat_key(message, bot_id=bot.id), is_admin=is_admin
        )
        if outcome != "stopped":  # a stopped answer says so itself
            await _say(ctx, bot, message, notice)

    @router.message(on_loop(F.text.startswith("/")))
    async def unknown_command(message: Message, bot: Bot) -> None:
        me = await bot.me()
        command = (message.text or "").split(maxsplit=1)[0]
        mention = command.partition("@")[2]
        if mention and mention.lower() != (me.username or "").lower():
            return  # a command for another bot
        if message.chat.type in GROUP_TYPES and not mention:
            return  # unaddressed commands in groups may belong to other bots
        await _say(ctx, bot, message, text("unknown_command", _lang(message)))

    @router.message(on_loop(F.text))
    async def on_text(message: Message, bot: Bot) -> None:
        addressed = addressed_query(message, me=await bot.me())
        if addressed is None:
            return
        if not ctx.allowed(message):
            await _say(ctx, bot, message, text("not_allowed", _lang(message)))
            return
        if not addressed.query:
            await _say(ctx, bot, message, text("help", _lang(message)))
            return
        await answer(ctx, bot, message, addressed.query)

    @router.message(on_loop(has_files))
    async def on_file(message: Message, bot: Bot) -> None:
        if message.media_group_id:
            await on_album_part(ctx, bot, message)
            return
        addressed = addressed_caption(message, me=await bot.me())
        if addressed is None:
            return
        if not ctx.allowed(message):
            await _say(ctx, bot, message, text("not_allowed", _lang(message)))
            return
        await answer(ctx, bot, message, addressed.query, attachments=incoming_files(message, bot))

    @router.message(on_loop(F.migrate_to_chat_id))
    async def migrated(message: Message, bot: Bot) -> None:
        """The group became a supergroup: its conversation continues there."""
        assert message.migrate_to_chat_id is not None
        old = group_key(message.chat.id, bot_id=bot.id)
        new = group_key(message.migrate_to_chat_id, bot_id=bot.id)
        service = ctx.pipeline.service
        try:
            # Behind any answer still running in the old group, so that its conversation moves too.
            async with service.store.lock(old, wait=service.lock_wait, order=message.message_id):
                await service.store.move(old, new)
        except BotError as exc:
            log.warning("could not move the conversation of chat %s: %r", message.chat.id, exc)

    @router.message(on_loop(F.chat.type == "private"))
    async def non_text(message: Message, bot: Bot) -> None:
        await _say(ctx, bot, message, text("empty_message", _lang(message)))

    return router


def addressed_caption(message: Message, *, me: User) -> Addressed | None:
    """Like addressed_query, for a file's caption: the question, or None when the file is not for the bot."""
    as_text = message.model_copy(update={"text": message.caption or "", "entities": message.caption_entities})
    return addressed_query(as_text, me=me)


async def on_album_part(ctx: TelegramContext, bot: Bot, message: Message) -> None:
    """Store one part of an album; the replica that stored the first part answers the whole album."""
    assert message.media_group_id is not None
    part = message.model_dump(mode="json", exclude_none=True, by_alias=True)
    try:
        first = await ctx.albums.add(message.chat.id, message.media_group_id, part)
    except BotError as exc:
        log.warning("cannot collect album parts in chat %s: %r", message.chat.id, exc)
        await _say(ctx, bot, message, friendly_error(exc, _lang(message)))
        return
    if not first:
        return
    release = on_queued.get()
    if release is not None:
        release()  # the album's other parts of this chat must get through while this one waits for them
    try:
        parts = await ctx.albums.collect(message.chat.id, message.media_group_id)
    except BotError as exc:
        log.warning("cannot read album parts in chat %s: %r", message.chat.id, exc)
        parts = [part]
    messages = [Message.model_validate(raw).as_(bot) for raw in parts] or [message]
    me = await bot.me()
    addressed = [found for item in messages if (found := addressed_caption(item, me=me)) is not None]
    if not addressed:
        return
    if not ctx.allowed(messages[0]):
        await _say(ctx, bot, messages[0], text("not_allowed", _lang(messages[0])))
        return
    query = next((found.query for found in addressed if found.query), "")
    files = [file for item in messages for file in incoming_files(item, bot)]
    await answer(ctx, bot, messages[0], query, attachments=files)


# The parts of the user's message an answer needs again after a crash: where to reply, who asked.
ORIGIN_FIELDS = {"message_id", "date", "chat", "from_user", "message_thread_id", "is_topic_message"}


def origin_of(message: Message, query: str, *, files: int = 0) -> dict[str, Any]:
    """The answer journal's description of the user's message (JSON); bots/telegram/recovery.py reads it.

    `files`: how many files came with the question (they are not journaled, so such a question is not re-asked)."""
    dumped = message.model_dump(mode="json", include=ORIGIN_FIELDS, exclude_none=True, by_alias=True)
    origin: dict[str, Any] = {"message": dumped, "query": query}
    if files:
        origin["files"] = files
    return origin


async def answer(
    ctx: TelegramContext,
    bot: Bot,
    message: Message,
    query: str,
    *,
    attachments: Sequence[IncomingFile] = (),
    quote: str = "",
    react: bool = True,
) -> RenderStats:
    """Stream Dify's answer to `query` (and `attachments`) into the chat as a reply to `message`, with
    controls for its sender; `quote` shows the question above the answer (a pressed suggestion)."""
    surface = TelegramSurface(
        bot, chat_id=message.chat.id, thread_id=topic_of(message), reply_to=message.message_id, lang=_lang(message)
    )
    throttle = ctx.throttles.get(message.chat.id, ctx.interval(message.chat.type))
    timing: dict[str, Any] = {}
    if ctx.clock is not None:
        timing["clock"] = ctx.clock
    if ctx.sleep is not None:
        timing["sleep"] = ctx.sleep

    def renderer(stream: ReplyStream) -> StreamRenderer:
        return StreamRenderer(
            surface,
            throttle=throttle,
            lang=_lang(message),
            status_delay=ctx.status_delay,
            stop_source=stream.stop,
            show_sources=ctx.show_sources,
            show_usage=ctx.show_usage,
            **timing,
        )

    asker = str(message.from_user.id) if message.from_user else None
    reactions = ctx.reactions.around(bot, message) if react else contextlib.nullcontext()
    async with reactions:
        return await ctx.pipeline.answer(
            chat=chat_key(message, bot_id=bot.id),
            text=query,
            sink=renderer,
            where=message.chat.id,
            origin=origin_of(message, query, files=len(attachments)),
            order=message.message_id,  # rises with every message of a chat: answered in the order sent
            attachments=attachments,
            asker=asker,
            quote=quote,
        )
