"""Where a Slack message belongs: its reply thread, its conversation key and the Dify user."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.conversations import ChatKey, ConversationStore
from core.keys import RedisKeys

MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
RESET_WORDS = frozenset({"reset", "/reset", "new", "start over", "重置"})
STOP_WORDS = frozenset({"stop", "/stop", "停止"})


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """The parts of an `app_mention` or `message.im` event the bot uses."""

    team: str
    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str | None
    is_dm: bool

    @property
    def root_ts(self) -> str:
        """Replies go into the thread of the root message (a new thread under a top-level message)."""
        return self.thread_ts or self.ts

    @classmethod
    def from_event(cls, event: dict[str, Any], *, team: str) -> SlackMessage:
        channel = str(event.get("channel") or "")
        return cls(
            team=str(event.get("team") or team),
            channel=channel,
            user=str(event.get("user") or ""),
            text=str(event.get("text") or ""),
            ts=str(event.get("ts") or ""),
            thread_ts=str(event["thread_ts"]) if event.get("thread_ts") else None,
            is_dm=event.get("channel_type") == "im" or channel.startswith("D"),
        )


def query_of(text: str, *, bot_user_id: str | None) -> str:
    """The question with the bot's mention removed (other people's mentions stay)."""

    def drop(match: re.Match[str]) -> str:
        return "" if bot_user_id is None or match.group(1) == bot_user_id else match.group(0)

    return " ".join(MENTION.sub(drop, text).split())


def is_reset(query: str) -> bool:
    return query.strip().lower() in RESET_WORDS


def is_stop(query: str) -> bool:
    return query.strip().lower().rstrip(".!") in STOP_WORDS


def channel_generation_name(team: str, channel: str) -> str:
    return RedisKeys.part("slack", team, channel)


def thread_flag_name(message: SlackMessage) -> str:
    return RedisKeys.part("slack-dm-thread", message.team, message.channel, message.root_ts)


async def chat_key(store: ConversationStore, message: SlackMessage, *, mentioned: bool) -> ChatKey:
    """Channels: one conversation per thread (generation-scoped, so /reset in a channel starts all over).
    DMs: one conversation for the DM, except threads started by a mention, which get their own."""
    generation = await store.generation(channel_generation_name(message.team, message.channel))
    if not message.is_dm:
        return ChatKey(
            platform="slack",
            scope=f"slack:{message.team}:{message.channel}:g{generation}:{message.root_ts}",
            user=f"slack-{message.team}-{message.channel}",
        )
    own_thread = False
    if message.thread_ts is None and mentioned:
        await store.set_flag(thread_flag_name(message))
        own_thread = True
    elif message.thread_ts is not None:
        own_thread = await store.has_flag(thread_flag_name(message))
    scope = f"slack:{message.team}:{message.channel}:g{generation}"
    if own_thread:
        scope += f":{message.root_ts}"
    return ChatKey(platform="slack", scope=scope, user=f"slack-{message.team}-{message.user}")
