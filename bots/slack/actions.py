"""Button presses (block_actions, over HTTP or Socket Mode): Stop, 👍/👎 and suggested questions."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.addressing import SlackMessage, chat_key
from bots.slack.blocks import ASK_PREFIX, FEEDBACK_ACTION, STOP_ACTION, Block, without_suggestions
from bots.slack.errors import NETWORK_ERRORS, describe
from bots.slack.handlers import SlackContext, answer, ephemeral
from core.controls.model import FeedbackAction, StopAction, parse_action
from core.errors import BotError, StoreUnavailable
from core.keys import RedisKeys
from core.texts import Lang, friendly_error, text

log = logging.getLogger(__name__)

ASK_ACTION = re.compile(rf"^{ASK_PREFIX}\d+$")
LANG: Lang = "en"

Ack = Callable[..., Awaitable[None]]
Handler = Callable[["SlackContext", AsyncWebClient, "Press"], Awaitable[None]]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Press:
    """One button press: who pressed what, on which message of which thread."""

    team: str
    channel: str
    user: str
    message_ts: str
    root_ts: str
    value: str
    message: dict[str, Any]

    @classmethod
    def of(cls, body: dict[str, Any]) -> Press | None:
        """The press a block_actions payload describes; None when it lacks what a press needs."""
        user, team, channel = body.get("user"), body.get("team"), body.get("channel")
        container, message = body.get("container"), body.get("message")
        actions = body.get("actions")
        if not isinstance(user, dict) or not isinstance(actions, list) or not actions:
            return None
        if not isinstance(message, dict) or not isinstance(actions[0], dict):
            return None  # presses on ephemeral messages carry no message: the bot posts none with buttons
        container = container if isinstance(container, dict) else {}
        team_id = _text(team.get("id")) if isinstance(team, dict) else ""
        channel_id = _text(channel.get("id")) if isinstance(channel, dict) else ""
        press = cls(
            team=team_id or _text(user.get("team_id")),
            channel=channel_id or _text(container.get("channel_id")),
            user=_text(user.get("id")),
            message_ts=_text(message.get("ts")) or _text(container.get("message_ts")),
            root_ts=_text(message.get("thread_ts")) or _text(message.get("ts")),
            value=_text(actions[0].get("value")),
            message=message,
        )
        return press if press.channel and press.user and press.message_ts and press.root_ts else None

    def as_message(self, query: str = "") -> SlackMessage:
        """The press as a message in the answer's thread, from the one who pressed."""
        return SlackMessage(
            team=self.team,
            channel=self.channel,
            user=self.user,
            text=query,
            ts=self.message_ts,
            thread_ts=self.root_ts,
            is_dm=self.channel.startswith("D"),
        )


def register_actions(app: AsyncApp, ctx: SlackContext) -> None:
    """Listen for the buttons bots/slack/blocks.py puts under answers; each press is acknowledged first."""
    for action_id, handle in ((STOP_ACTION, press_stop), (FEEDBACK_ACTION, press_feedback), (ASK_ACTION, press_ask)):
        app.action(action_id)(_listener(ctx, handle))


def _listener(ctx: SlackContext, handle: Handler) -> Callable[..., Awaitable[None]]:
    async def on_press(ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        press = await _allowed(ctx, client, body)
        if press is not None:
            await handle(ctx, client, press)

    return on_press


async def _allowed(ctx: SlackContext, client: AsyncWebClient, body: dict[str, Any]) -> Press | None:
    press = Press.of(body)
    if press is None:
        log.info("slack: ignored a button press without a message, user or channel")
        return None
    if not ctx.allowed(press.as_message()):
        await ephemeral(client, press.as_message(), text("not_allowed", LANG))
        return None
    return press


async def press_stop(ctx: SlackContext, client: AsyncWebClient, press: Press) -> None:
    action = parse_action(press.value)
    if not isinstance(action, StopAction):
        log.info("slack: ignored a Stop press with foreign data")
        return
    outcome, notice = await ctx.pipeline.controls.stop(by=press.user, lang=LANG, token=action.token)
    if outcome != "stopped":  # a stopped answer says so in its own message
        await ephemeral(client, press.as_message(), notice)


async def press_feedback(ctx: SlackContext, client: AsyncWebClient, press: Press) -> None:
    """Slack's feedback_buttons show the choice themselves; only a failure or a cleared rating is told."""
    action = parse_action(press.value)
    if not isinstance(action, FeedbackAction):
        log.info("slack: ignored a feedback press with foreign data")
        return
    try:
        key = await chat_key(ctx.store, press.as_message(), mentioned=False)
    except BotError as exc:
        await ephemeral(client, press.as_message(), friendly_error(exc, LANG))
        return
    rated = await ctx.pipeline.controls.rate(action, chat=key, lang=LANG)
    if not rated.ok or rated.rating is None:
        await ephemeral(client, press.as_message(), rated.notice)


async def press_ask(ctx: SlackContext, client: AsyncWebClient, press: Press) -> None:
    """Ask the pressed suggestion in the answer's thread, once per set of suggestions."""
    question = press.value.strip()
    message = press.as_message(question)
    try:
        first = await ctx.store.first_delivery("slack-ask", RedisKeys.part(press.channel, press.message_ts))
    except StoreUnavailable as exc:
        log.warning("cannot tell a repeated suggestion press: %r", exc)
        first = True
    if not question or not first:
        await ephemeral(client, message, text("suggestion_gone", LANG))
        return
    await _take_suggestions_off(client, press)
    try:
        key = await chat_key(ctx.store, message, mentioned=False)
    except BotError as exc:
        await ephemeral(client, message, friendly_error(exc, LANG))
        return
    await answer(ctx, client, message, key=key, query=question, asker=press.user, quote=question, react=False)


async def _take_suggestions_off(client: AsyncWebClient, press: Press) -> None:
    """Rewrite the pressed message without its suggestions, keeping its text and feedback buttons."""
    blocks = press.message.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(block, dict) for block in blocks):
        return
    kept: list[Block] = without_suggestions(blocks)
    try:
        await client.chat_update(
            channel=press.channel, ts=press.message_ts, blocks=kept, text=_text(press.message.get("text")) or " "
        )
    except (SlackApiError, *NETWORK_ERRORS) as exc:
        log.info("could not take the suggestions off %s: %s", press.channel, describe(exc))
