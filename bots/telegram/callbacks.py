"""Button presses (callback queries): Stop, 👍/👎 and suggested questions; every press is answered first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import CallbackQuery, InaccessibleMessage, InlineKeyboardMarkup, Message

from bots.telegram.addressing import GROUP_TYPES, group_key, private_key, topic_of
from bots.telegram.admins import admin_check
from bots.telegram.handlers import TelegramContext, answer
from bots.telegram.keyboards import suggestion_text, with_feedback, without_suggestions
from bots.telegram.surface import UNREACHABLE
from core.controls.model import AskAction, FeedbackAction, FeedbackButtons, StopAction, parse_action
from core.conversations import ChatKey
from core.texts import Lang, language_for, text

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_NOTICE = 200  # answerCallbackQuery's text limit (characters)
MARKUP_ATTEMPTS = 3  # a buttons edit tried this often through flood limits
MARKUP_MAX_WAIT = 10  # seconds of "retry after" worth waiting for a buttons edit


def build_callback_router(ctx: TelegramContext) -> Router:
    router = Router(name="dify-bots-buttons")

    @router.callback_query()
    async def pressed(query: CallbackQuery, bot: Bot) -> None:
        await on_press(ctx, bot, query)

    return router


async def on_press(ctx: TelegramContext, bot: Bot, query: CallbackQuery) -> None:
    """Route one press. The query is answered exactly once, before any slow work (Dify, a new answer)."""
    lang = language_for(query.from_user.language_code)
    where = query.message
    if where is None:  # a button on an inline message: none of ours
        await respond(bot, query, text("stop_ended", lang))
        return
    if not ctx.allows(chat_id=where.chat.id, user_id=query.from_user.id):
        await respond(bot, query, text("not_allowed", lang))
        return
    message = _accessible(where)
    action = parse_action(query.data)
    if isinstance(action, StopAction):
        await _stop(ctx, bot, query, action, lang=lang)
    elif isinstance(action, FeedbackAction):
        await _rate(ctx, bot, query, action, message, lang=lang)
    elif isinstance(action, AskAction):
        await _ask(ctx, bot, query, action, message, lang=lang)
    else:  # old, forged or foreign data
        await respond(bot, query, text("stop_ended", lang))


async def _stop(ctx: TelegramContext, bot: Bot, query: CallbackQuery, action: StopAction, *, lang: Lang) -> None:
    assert query.message is not None
    chat = query.message.chat
    is_admin = admin_check(bot, chat_id=chat.id, chat_type=chat.type, user_id=query.from_user.id)

    async def stop() -> str:
        _, notice = await ctx.pipeline.controls.stop(
            by=str(query.from_user.id), lang=lang, token=action.token, is_admin=is_admin
        )
        return notice

    await answered(bot, query, stop(), notice=lambda notice: notice, wait=ctx.callback_wait)


async def _rate(
    ctx: TelegramContext,
    bot: Bot,
    query: CallbackQuery,
    action: FeedbackAction,
    message: Message | None,
    *,
    lang: Lang,
) -> None:
    assert query.message is not None
    chat = _chat_key(query, bot_id=bot.id)
    rate = ctx.pipeline.controls.rate(action, chat=chat, lang=lang)
    rated = await answered(bot, query, rate, notice=lambda done: done.notice, wait=ctx.callback_wait)
    if rated is None or not rated.ok or message is None:
        return
    markup = with_feedback(message.reply_markup, FeedbackButtons(message_id=action.message_id, rating=rated.rating))
    await _set_markup(bot, message, markup)


async def _ask(
    ctx: TelegramContext,
    bot: Bot,
    query: CallbackQuery,
    action: AskAction,
    message: Message | None,
    *,
    lang: Lang,
) -> None:
    question = suggestion_text(message.reply_markup, action.index) if message is not None else None
    if message is None or question is None:
        await respond(bot, query, text("suggestion_gone", lang))
        return
    await respond(bot, query)
    await _set_markup(bot, message, without_suggestions(message.reply_markup))
    # Asked by the presser, in the pressed message's chat and topic, as a reply to that message.
    asked = message.model_copy(update={"from_user": query.from_user})
    await answer(ctx, bot, asked, question, quote=question, react=False)


async def answered(
    bot: Bot, query: CallbackQuery, work: Awaitable[T], *, notice: Callable[[T], str], wait: float
) -> T | None:
    """Answer `query` with `work`'s notice if it is done within `wait` seconds, else without one (Telegram
    gives a press only a few seconds); returns `work`'s result, or None when it failed."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=wait)
    if task not in done:
        await respond(bot, query)
        try:
            return await task
        except Exception as exc:
            log.warning("a button press failed: %r", exc)
            return None
    try:
        result = task.result()
    except Exception as exc:
        await respond(bot, query)
        log.warning("a button press failed: %r", exc)
        return None
    await respond(bot, query, notice(result))
    return result


async def respond(bot: Bot, query: CallbackQuery, notice: str = "") -> None:
    """answerCallbackQuery: the client's spinner stops and `notice`, if any, shows at the top of the chat."""
    try:
        await bot.answer_callback_query(callback_query_id=query.id, text=notice[:MAX_NOTICE] or None)
    except (TelegramAPIError, *UNREACHABLE) as exc:
        log.info("could not answer a button press: %s", type(exc).__name__)


async def _set_markup(bot: Bot, message: Message, markup: InlineKeyboardMarkup | None) -> None:
    """Change a message's buttons (None: remove them); a keyboard already so is fine. A flood limit is
    waited out (briefly): the press was accepted, so its buttons must show it."""
    for _ in range(MARKUP_ATTEMPTS):
        try:
            await bot.edit_message_reply_markup(
                chat_id=message.chat.id, message_id=message.message_id, reply_markup=markup
            )
            return
        except TelegramRetryAfter as exc:
            if exc.retry_after > MARKUP_MAX_WAIT:
                log.info("could not change the buttons of message %s: flood limit", message.message_id)
                return
            await asyncio.sleep(exc.retry_after)
        except TelegramBadRequest as exc:
            if "message is not modified" not in exc.message.lower():
                log.info("could not change the buttons of message %s: %s", message.message_id, exc.message)
            return
        except (TelegramAPIError, *UNREACHABLE) as exc:
            log.info("could not change the buttons of message %s: %s", message.message_id, type(exc).__name__)
            return


def _accessible(message: Message | InaccessibleMessage) -> Message | None:
    """The pressed message, or None when Telegram no longer shows it to the bot (its `date` is 0)."""
    if isinstance(message, InaccessibleMessage) or message.date.timestamp() == 0:
        return None
    return message


def _chat_key(query: CallbackQuery, *, bot_id: int) -> ChatKey:
    """The conversation a pressed message belongs to, as the presser's own message there would name it."""
    assert query.message is not None
    chat = query.message.chat
    if chat.type in GROUP_TYPES:
        message = _accessible(query.message)
        return group_key(chat.id, bot_id=bot_id, topic=topic_of(message) if message is not None else None)
    return private_key(chat.id, bot_id=bot_id, user_id=query.from_user.id)
