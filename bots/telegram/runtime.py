"""TelegramBot: the aiogram Bot and Dispatcher, de-duplication, per-chat ordering, polling (one replica) or webhook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import BotCommand, TelegramObject, Update, User
from aiohttp import web

from bots.front_door import DoorServices
from bots.ordering import ChatGate
from bots.telegram.callbacks import build_callback_router
from bots.telegram.errors import handle_errors
from bots.telegram.fast_methods import LeanSession
from bots.telegram.handlers import COMMANDS, TelegramContext, build_router
from bots.telegram.poller import LeaseTiming, PollerElection, PollerLease
from bots.telegram.reactions import AckReactions
from bots.telegram.recovery import recover
from bots.telegram.settings import TelegramSettings
from bots.telegram.shared_budget import SharedChatBudget
from bots.telegram.webhook import CheckedRequestHandler
from core.conversations import ConversationStore, on_queued
from core.errors import BotError, StartupError, StoreUnavailable
from core.journal import JournalEntry
from core.keys import RedisKeys
from core.render.throttle import ThrottleRegistry

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


ApiCallRecorder = Callable[[str, str], None]


class CallRecorder(BaseRequestMiddleware):
    """Reports every Bot API call's method and result (ok, rate_limited, error) for metrics."""

    def __init__(self, record: ApiCallRecorder) -> None:
        self._record = record

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        name = method.__api_method__
        try:
            response = await make_request(bot, method)
        except TelegramRetryAfter:
            self._record(name, "rate_limited")
            raise
        except TelegramAPIError:
            self._record(name, "error")
            raise
        self._record(name, "ok")
        return response


def open_bot(token: str, api_base: str) -> Bot:
    # Many chats edit at once; aiogram's default pool of 100 connections would make them queue.
    session = LeanSession(api=TelegramAPIServer.from_base(api_base.rstrip("/")), limit=1000)
    return Bot(token, session=session)


def create_door(section: TelegramSettings, services: DoorServices) -> TelegramBot:
    """The Telegram front door for these settings (the plug-in's factory)."""
    assert section.bot_token is not None
    context = TelegramContext(
        pipeline=services.pipeline,
        throttles=ThrottleRegistry(),
        private_interval=section.private_interval,
        group_interval=section.group_interval,
        allowed_users=section.allowed_users,
        allowed_chats=section.allowed_chats,
        show_sources=services.settings.show_sources,
        show_usage=services.settings.show_usage,
        reactions=AckReactions(enabled=services.settings.ack_reaction),
    )
    for name, value in services.tuning.items():
        setattr(context, name, value)
    secret = section.webhook_secret
    door = TelegramBot(
        token=section.bot_token.get_secret_value(),
        api_base=section.api_base,
        store=services.core.store,
        context=context,
        webhook_url=section.webhook_url,
        webhook_secret=secret.get_secret_value() if secret else None,
        on_api_call=services.record_api_call,
    )
    door.bot.session.middleware(
        SharedChatBudget(
            services.core.budgets,
            bot_id=door.bot.id,
            private_interval=context.private_interval,
            group_interval=context.group_interval,
            global_rate=section.global_rate,
        )
    )
    return door


class TelegramBot:
    """The Telegram front door: `async with` logs in and registers commands; `start()` polls or sets a webhook."""

    def __init__(
        self,
        *,
        token: str,
        api_base: str,
        store: ConversationStore,
        context: TelegramContext,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        on_api_call: ApiCallRecorder | None = None,
    ) -> None:
        self.bot = open_bot(token, api_base)
        if on_api_call is not None:
            self.bot.session.middleware(CallRecorder(on_api_call))
        self.store = store
        self.context = context
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(build_router(context))
        self.dispatcher.include_router(build_callback_router(context))
        handle_errors(self.dispatcher)
        self.dispatcher.update.outer_middleware(self._in_order_once)
        self._gate = ChatGate()
        self._polling: asyncio.Task[None] | None = None
        self._election: PollerElection | None = None
        self.lease_timing = LeaseTiming()
        self.me: User | None = None

    async def __aenter__(self) -> Self:
        try:
            self.me = await self.bot.me()
        except (TelegramUnauthorizedError, TelegramNotFound):
            await self.bot.session.close()
            raise StartupError("Telegram refused the bot token (getMe); check TELEGRAM_BOT_TOKEN") from None
        except TelegramNetworkError:
            await self.bot.session.close()
            raise StartupError("cannot reach the Telegram Bot API; check the network and TELEGRAM_API_BASE") from None
        try:
            await self.bot.set_my_commands([BotCommand(command=c, description=d) for c, d in COMMANDS.items()])
        except TelegramAPIError as exc:
            log.warning("could not register commands: %s", exc.message)
        if self.context.opening_statement is None:
            try:
                params = await self.context.pipeline.service.dify.parameters()
                self.context.opening_statement = str(params.get("opening_statement") or "") or None
            except BotError as exc:
                log.warning("could not read the app's opening statement: %r", exc)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_intake()
        await self.bot.session.close()

    # ---- update pipeline ------------------------------------------------------------------------

    async def _in_order_once(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Serialize each chat's updates in arrival order and answer a redelivered update only once."""
        assert isinstance(event, Update)
        message = event.message
        key = (message.chat.id, message.message_thread_id if message.is_topic_message else None) if message else None
        turn = self._gate.turn(key) if key is not None else None  # queued now, before any await
        if turn is None:
            return await self._once(handler, event, data)
        async with turn:
            # Arrival order matters only until the answer has its place in the chat's queue.
            on_queued.set(turn.release)
            return await self._once(handler, event, data)

    async def _once(self, handler: Handler, event: Update, data: dict[str, Any]) -> Any:
        try:
            first = await self.store.first_delivery("telegram", RedisKeys.part(self.bot.id, event.update_id))
        except StoreUnavailable as exc:
            log.warning("cannot de-duplicate update %s: %r", event.update_id, exc)
            first = True  # better a rare double answer than a lost message
        if not first:
            log.info("update %s was already handled", event.update_id)
            return None
        return await handler(event, data)

    # ---- front door -----------------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        if self.webhook_url:
            self.mount_webhook(app)

    async def start(self) -> None:
        """Webhook mode: register the webhook. Polling mode: poll if this replica wins the lease, else stand by."""
        if self.webhook_url:
            await self.register_webhook()
            return
        lease = PollerLease(
            self.store.redis, self.store.keys.poller("telegram", self.bot.id), ttl=self.lease_timing.ttl
        )
        self._election = PollerElection(
            lease,
            lead=self.start_polling,
            step_down=self.stop_polling,
            alive=self.polling,
            timing=self.lease_timing,
        )
        await self._election.start()

    async def stop_intake(self) -> None:
        if self._election is not None:
            await self._election.stop()  # hands the lease back: a standby polls at once
        await self.stop_polling()

    @property
    def role(self) -> str:
        """`webhook`, or in polling mode `poller` (this replica calls getUpdates) or `standby`."""
        if self.webhook_url:
            return "webhook"
        return self._election.role if self._election is not None else "standby"

    def readiness(self) -> Mapping[str, str]:
        return {"telegram": self.role}

    async def recover(self, entry: JournalEntry) -> None:
        """Finish an answer a dead replica left in the journal (see bots/telegram/recovery.py)."""
        await recover(self.context, self.bot, entry)

    # ---- transports -----------------------------------------------------------------------------

    async def start_polling(self) -> None:
        """Long polling in the background (any webhook is removed first); only while holding the poller lease."""
        if self._polling is not None:
            return
        try:
            await self.bot.delete_webhook(drop_pending_updates=False, request_timeout=2)  # within the lease
        except TelegramAPIError as exc:  # getUpdates will say so if a webhook is still set
            log.warning("could not remove the webhook before polling: %s", exc.message)
        # Each lease win or loss starts and stops the dispatcher: its startup/shutdown hooks must stay
        # empty, and the bot's session outlives polling.
        self._polling = asyncio.create_task(
            self.dispatcher.start_polling(
                self.bot,
                handle_signals=False,
                close_bot_session=False,
                polling_timeout=20,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            ),
            name="telegram polling",
        )
        await asyncio.sleep(0)  # let it take the dispatcher's running lock, so stop_polling can stop it

    async def stop_polling(self) -> None:
        """Stop calling getUpdates now; updates already taken are still answered."""
        polling, self._polling = self._polling, None
        if polling is None:
            return
        try:
            await self.dispatcher.stop_polling()
        except RuntimeError:  # not started yet (or already ended)
            polling.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(polling, timeout=5)

    def polling(self) -> bool:
        """Whether the long-polling loop runs."""
        return self._polling is not None and not self._polling.done()

    def webhook_path(self) -> str:
        if not self.webhook_url:
            raise RuntimeError("no webhook URL configured")
        return urlparse(self.webhook_url).path or "/"

    def mount_webhook(self, app: web.Application) -> None:
        """Serve Telegram's webhook on `app`; updates are answered at once and handled in the background."""
        CheckedRequestHandler(
            dispatcher=self.dispatcher,
            bot=self.bot,
            secret_token=self.webhook_secret,
            handle_in_background=True,
        ).register(app, path=self.webhook_path())

    async def register_webhook(self) -> None:
        assert self.webhook_url is not None
        await self.bot.set_webhook(
            self.webhook_url,
            secret_token=self.webhook_secret,
            allowed_updates=self.dispatcher.resolve_used_update_types(),
        )
