"""The first time someone opens the bot's DM, a greeting with the app's opening questions as buttons."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.addressing import SlackMessage
from bots.slack.blocks import ControlBlocks, markdown_block
from bots.slack.errors import NETWORK_ERRORS, describe
from bots.slack.handlers import SlackContext
from core.controls.model import Controls
from core.controls.suggestions import openers
from core.errors import StoreUnavailable
from core.keys import RedisKeys
from core.texts import text

log = logging.getLogger(__name__)

GREETED_FOR = 10 * 365 * 24 * 3600  # seconds a person counts as greeted: the greeting comes once


def register_welcome(app: AsyncApp, ctx: SlackContext) -> None:
    """Greet a person in the DM's Messages tab once, when the app has opening questions to offer."""

    @app.event("app_home_opened")
    async def opened(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "messages":
            return
        user, channel = str(event.get("user") or ""), str(event.get("channel") or "")
        team = str(body.get("team_id") or "")
        where = SlackMessage(team=team, channel=channel, user=user, text="", ts="", thread_ts=None, is_dm=True)
        if not user or not channel or not ctx.allowed(where):
            return
        questions = await openers(ctx.pipeline.service.parameters)
        if not questions:
            return
        try:
            if not await ctx.store.first_delivery("slack-welcome", RedisKeys.part(team, user), ttl=GREETED_FOR):
                return
        except StoreUnavailable as exc:
            log.info("slack: no greeting without the store: %r", exc)
            return
        greeting = text("greeting")
        blocks = [markdown_block(greeting), *ControlBlocks()(Controls(suggestions=questions))]
        try:
            await client.chat_postMessage(channel=channel, text=greeting, blocks=blocks)
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.info("slack: could not greet in %s: %s", channel, describe(exc))
