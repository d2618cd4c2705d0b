"""Finishing a Slack answer a dead replica left in the journal: answer it again, or end it as interrupted."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.addressing import SlackMessage
from bots.slack.errors import NETWORK_ERRORS
from bots.slack.files_in import file_fields
from bots.slack.handlers import SlackContext, answer
from bots.slack.update_surface import UpdateSurface
from core.dify.errors import DifyError
from core.journal import JournalEntry, end_interrupted
from core.render.surface import SurfaceError
from core.texts import text

log = logging.getLogger(__name__)


def handle_id(handle: Any) -> str:
    """A Slack answer message as the journal stores it: its ts (update surface and native stream alike)."""
    return str(handle)


async def recover(ctx: SlackContext, client: AsyncWebClient, entry: JournalEntry) -> None:
    """Answer again when Dify never started; else end the half-written message and stop the Dify task."""
    message = SlackMessage(**entry.origin["message"])
    # The dead replica's last frame may carry a Stop button: the rewrite takes it off.
    surface = UpdateSurface(client, channel=message.channel, thread_ts=message.root_ts, clear_buttons=True)
    if not entry.started:
        for shown in entry.messages:
            with contextlib.suppress(SurfaceError):
                await surface.delete(handle_id(shown.handle))
        log.info("answering again a message whose answer never started (%s)", message.channel)
        files = file_fields(entry.origin.get("files"))
        await answer(ctx, client, message, key=entry.chat, query=str(entry.origin["query"]), files=files)
        return
    if entry.messages:
        # A native stream takes no chat.update while it is open; the stream of a dead replica may still be.
        with contextlib.suppress(SlackApiError, *NETWORK_ERRORS):
            await client.chat_stopStream(channel=message.channel, ts=handle_id(entry.messages[-1].handle))
    await end_interrupted(surface, entry.messages, note="⚠️ " + text("interrupted_resend"))
    assert entry.task_id is not None
    try:
        await ctx.pipeline.service.dify.stop(task_id=entry.task_id, user=entry.dify_user or entry.chat.user)
    except DifyError as exc:
        log.warning("could not stop interrupted task %s: %r", entry.task_id, exc)
