"""An :eyes: reaction on a channel question while its answer runs (decoration: failures never touch the answer)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.acknowledgement import reacting
from bots.slack.addressing import SlackMessage

log = logging.getLogger(__name__)

ACK_NAME = "eyes"
# Another replica (or a retry) already did it: the reaction is where it should be.
ALREADY = {"reactions_add": "already_reacted", "reactions_remove": "no_reaction"}


@dataclass(slots=True)
class AckReactions:
    """Reacts to channel messages (not DMs) when enabled."""

    enabled: bool = True

    @asynccontextmanager
    async def around(self, client: AsyncWebClient, message: SlackMessage) -> AsyncIterator[None]:
        """:eyes: on `message` while the block runs; added in the background, removed at the end."""
        if not self.enabled or message.is_dm:
            yield
            return
        async with reacting(
            lambda: _call(client, "reactions_add", message), lambda: _call(client, "reactions_remove", message)
        ):
            yield


async def _call(client: AsyncWebClient, method: str, message: SlackMessage) -> bool:
    try:
        await getattr(client, method)(channel=message.channel, timestamp=message.ts, name=ACK_NAME)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error == ALREADY[method]:
            return True
        log.info("slack %s failed in %s: %s", method, message.channel, error)
        return False
    except Exception as exc:
        log.debug("slack %s failed in %s: %r", method, message.channel, exc)
        return False
    return True
