"""slack-bolt listeners: mentions and DMs stream an answer into the thread; /reset starts over, /stop stops."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.addressing import SlackMessage, channel_generation_name, chat_key, is_reset, is_stop, query_of
from bots.slack.budgets import SlackBudgets
from bots.slack.failures import on_error
from bots.slack.files_in import file_fields, incoming_files
from bots.slack.reactions import AckReactions
from bots.slack.running import RunningAnswers
from bots.slack.surface import NativeStreamSurface, UpdateSurface
from core.answering import AnswerPipeline
from core.conversations import ChatKey, ConversationStore
from core.errors import BotError, StoreUnavailable
from core.keys import RedisKeys
from core.render.footers import UsageMode
from core.render.renderer import StreamRenderer
from core.render.surface import MessageSurface
from core.render.throttle import Throttle, TokenBucket
from core.service import ReplyStream
from core.texts import friendly_error, text

log = logging.getLogger(__name__)

# Slack sends these as strings; anything else is a malformed event, ignored rather than stringified.
MESSAGE_FIELDS = ("channel", "user", "text", "ts", "thread_ts", "team")
# DM message subtypes that are a user's question: a plain message, or one sharing files.
SHARED = frozenset({None, "file_share"})


@dataclass(slots=True)
class SlackContext:
    """Everything the listeners need, passed in by the composition root."""

    pipeline: AnswerPipeline
    store: ConversationStore
    streaming: str = "auto"  # auto | native | update
    update_interval: float = 1.0
    allowed_channels: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    status_delay: float = 1.0
    show_sources: bool = True
    show_usage: UsageMode = "off"
    budgets: SlackBudgets = field(default_factory=SlackBudgets)
    no_native: set[str] = field(default_factory=set)  # workspaces where native streaming was refused
    reactions: AckReactions = field(default_factory=AckReactions)
    running: RunningAnswers = field(default_factory=RunningAnswers)  # what /stop stops

    def allowed(self, message: SlackMessage) -> bool:
        if not self.allowed_channels and not self.allowed_users:
            return True
        return message.channel in self.allowed_channels or message.user in self.allowed_users


async def ignore_repeats(
    ctx: SlackContext, body: Mapping[str, Any], next_: Callable[[], Awaitable[None]]
) -> BoltResponse | None:
    """Answer a retried delivery (X-Slack-Retry-Num) or a repeated event_id once; acknowledge the rest."""
    event_id = body.get("event_id") if body.get("type") == "event_callback" else None
    if event_id:
        try:
            first = await ctx.store.first_delivery("slack", str(event_id))
        except StoreUnavailable as exc:
            log.warning("cannot de-duplicate slack event %s: %r", event_id, exc)
            first = True
        if not first:
            return BoltResponse(status=200, body="")
    await next_()
    return None


def register(app: AsyncApp, ctx: SlackContext) -> None:
    app.error(on_error)

    async def dedupe(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        return await ignore_repeats(ctx, body, next)

    app.middleware(dedupe)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient, context: Any) -> None:
        await handle_message(
            ctx, client, event, team=str(body.get("team_id") or ""), bot_user_id=context.bot_user_id, mentioned=True
        )

    @app.event("message")
    async def on_message(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient, context: Any) -> None:
        # Only plain DMs and files shared in them: edits, deletions, joins, other bots and echoes of our own
        # updates are acknowledged (bolt answers 200 because this listener matched) and dropped.
        if event.get("channel_type") != "im" or event.get("subtype") not in SHARED or event.get("bot_id"):
            return
        await handle_message(
            ctx, client, event, team=str(body.get("team_id") or ""), bot_user_id=context.bot_user_id, mentioned=False
        )

    @app.command("/stop")
    async def stop(ack: Callable[..., Awaitable[None]], command: dict[str, Any]) -> None:
        team, channel = str(command.get("team_id") or ""), str(command.get("channel_id") or "")
        user = str(command.get("user_id") or "")
        # Slash commands are typed in the channel (never in a thread): stop the user's running answer there.
        key = ctx.running.latest(team, channel, user)
        if key is None:
            await ack(text=text("stop_nothing"))
            return
        _, notice = await ctx.pipeline.controls.stop(by=user, lang="en", chat=key)
        await ack(text=notice)

    @app.command("/reset")
    async def reset(ack: Callable[..., Awaitable[None]], command: dict[str, Any]) -> None:
        team, channel = str(command.get("team_id") or ""), str(command.get("channel_id") or "")
        try:
            # Every conversation of this channel (every thread; in a DM, the DM) starts over.
            await ctx.store.bump_generation(channel_generation_name(team, channel))
        except BotError as exc:
            await ack(text=friendly_error(exc))
            return
        await ack(text=text("reset_done"))


async def handle_message(
    ctx: SlackContext,
    client: AsyncWebClient,
    event: dict[str, Any],
    *,
    team: str,
    bot_user_id: str | None,
    mentioned: bool,
) -> None:
    malformed = [name for name in MESSAGE_FIELDS if event.get(name) is not None and not isinstance(event[name], str)]
    if malformed:
        log.warning("slack: ignored a malformed %s event (not a string: %s)", event.get("type"), ", ".join(malformed))
        return
    message = SlackMessage.from_event(event, team=team)
    if not message.channel or not message.ts or event.get("bot_id"):
        return
    try:
        # app_mention and message.im can both carry a DM that mentions the bot: answer the message once.
        if not await ctx.store.first_delivery("slack-message", RedisKeys.part(message.channel, message.ts)):
            return
    except StoreUnavailable as exc:
        log.warning("cannot de-duplicate slack message: %r", exc)
    if not ctx.allowed(message):
        await ephemeral(client, message, text("not_allowed"))
        return
    query = query_of(message.text, bot_user_id=bot_user_id)
    files = file_fields(event.get("files"))
    try:
        key = await chat_key(ctx.store, message, mentioned=mentioned)
        if is_reset(query) and not files:
            await ctx.pipeline.service.reset(key)
            await _reply(client, message, text("reset_done"))
            return
        if is_stop(query) and not files:
            await stop_in_thread(ctx, client, message, key)
            return
    except BotError as exc:
        await _reply(client, message, friendly_error(exc))
        return
    if not query and not files:
        await _reply(client, message, text("help"))
        return
    await answer(ctx, client, message, key=key, query=query, files=files, asker=message.user)


async def stop_in_thread(ctx: SlackContext, client: AsyncWebClient, message: SlackMessage, key: ChatKey) -> None:
    """ "@bot stop" (or "stop" in a DM): stop the answer running in this conversation. Its message says
    "(Stopped.)" itself; anything else is told to the one who asked, privately."""
    outcome, notice = await ctx.pipeline.controls.stop(by=message.user, lang="en", chat=key)
    if outcome != "stopped":
        await ephemeral(client, message, notice)


def _order(message: SlackMessage) -> float | None:
    """Slack's `ts` orders a channel's messages: answered in the order sent."""
    try:
        return float(message.ts)
    except (TypeError, ValueError):
        return None


async def answer(
    ctx: SlackContext,
    client: AsyncWebClient,
    message: SlackMessage,
    *,
    key: ChatKey,
    query: str,
    files: Sequence[dict[str, Any]] = (),
    asker: str | None = None,
    quote: str = "",
    react: bool = True,
) -> None:
    """Stream Dify's answer to `query` (and the shared `files`, file objects as file_fields keeps them) into
    the message's thread. A blank query with files asks core's default question. `asker` (the Slack user)
    puts Stop, feedback and suggestion buttons on the answer; `quote` shows a pressed suggestion above it;
    `react` marks the message answered with the ack reaction (not for a button press: it has no message)."""
    attachments = (
        await incoming_files(client, files, budget=ctx.budgets.bucket(message.team, "files.info")) if files else []
    )
    surface = _surface(ctx, client, message)
    throttle = Throttle(ctx.update_interval)  # per message; the workspace's budgets are kept by the surface

    def renderer(stream: ReplyStream) -> StreamRenderer:
        return StreamRenderer(
            surface,
            throttle=throttle,
            status_delay=ctx.status_delay,
            stop_source=stream.stop,
            show_sources=ctx.show_sources,
            show_usage=ctx.show_usage,
        )

    reacting = ctx.reactions.around(client, message) if react else contextlib.nullcontext()
    with ctx.running.track(message, key):
        async with reacting:
            await ctx.pipeline.answer(
                chat=key,
                text=query,
                sink=renderer,
                where=f"{message.channel}/{message.root_ts}",
                order=_order(message) if react else None,
                # read by bots/slack/recovery.py (file objects hold no token: their URLs need it as a header)
                origin={"message": asdict(message), "query": query, "files": list(files)},
                attachments=attachments,
                asker=asker,
                quote=quote,
            )
    if isinstance(surface, NativeStreamSurface) and surface.native_failed and ctx.streaming == "auto":
        log.info(
            "native streaming unavailable in %s (%s); using chat.update there", message.team, surface.native_failed
        )
        ctx.no_native.add(message.team)


def _surface(ctx: SlackContext, client: AsyncWebClient, message: SlackMessage) -> MessageSurface:
    def budget(method: str) -> TokenBucket | None:
        return ctx.budgets.bucket(message.team, method)

    def update_surface() -> UpdateSurface:
        return UpdateSurface(client, channel=message.channel, thread_ts=message.root_ts, budget=budget)

    if ctx.streaming == "update" or (ctx.streaming == "auto" and message.team in ctx.no_native):
        return update_surface()
    if ctx.streaming == "auto" and not ctx.budgets.available(message.team, "chat.startStream"):
        return update_surface()  # starting streams has a low rate tier: busy workspaces use updates
    return NativeStreamSurface(
        client,
        channel=message.channel,
        thread_ts=message.root_ts,
        recipient_user_id=message.user,
        recipient_team_id=message.team,
        fallback=update_surface,
        budget=budget,
    )


async def _reply(client: AsyncWebClient, message: SlackMessage, body: str) -> None:
    try:
        await client.chat_postMessage(channel=message.channel, thread_ts=message.root_ts, markdown_text=body)
    except SlackApiError as exc:
        log.warning("could not reply in %s: %s", message.channel, exc.response.get("error"))


async def ephemeral(client: AsyncWebClient, message: SlackMessage, body: str) -> None:
    """Tell only `message.user`, in the message's thread."""
    try:
        await client.chat_postEphemeral(
            channel=message.channel, user=message.user, text=body, thread_ts=message.root_ts
        )
    except SlackApiError as exc:
        log.warning("could not refuse in %s: %s", message.channel, exc.response.get("error"))
