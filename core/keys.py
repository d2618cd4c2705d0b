"""RedisKeys: the one place every Redis key is spelled, mostly `prefix:kind:app:...` joined by ":"."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.conversations import ChatKey

SEPARATOR = ":"


def hash_source(key: str) -> str:
    """The part of `key` Redis Cluster hashes to choose its slot: a non-empty `{tag}`, else the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


class RedisKeys:
    """Builds the keys of one Dify app under one prefix, like aiogram's DefaultKeyBuilder.

    The strings are a storage format: changing one orphans what existing deployments have stored.
    Keys that one script or multi-key command touches together share a Redis Cluster hash tag.
    """

    def __init__(self, *, prefix: str, app: str) -> None:
        self.prefix = prefix
        self.app = app

    @staticmethod
    def part(*pieces: str | int) -> str:
        """One name or id made of several pieces (a Slack channel, a Telegram update), joined like keys are."""
        return SEPARATOR.join(str(piece) for piece in pieces)

    def _app_key(self, kind: str, *rest: str | int) -> str:
        return self.part(self.prefix, kind, self.app, *rest)

    def conversation(self, chat: ChatKey) -> str:
        """The chat's Dify conversation (JSON), with a sliding TTL."""
        return self._app_key("conv", chat.platform, chat.scope)

    def lock(self, chat: ChatKey) -> str:
        """The cross-process lease that lets one answer at a time run in the chat; in the conversation's slot."""
        return self._conversation_family(chat, "lock")

    def queue(self, chat: ChatKey) -> str:
        """Tickets waiting for the lock, scored by the platform's order; in the lock's slot."""
        return self._conversation_family(chat, "queue")

    def queue_alive(self, chat: ChatKey) -> str:
        """When each waiting ticket expires unless its owner asks again (a dead replica's ticket goes)."""
        return self._conversation_family(chat, "alive")

    def _conversation_family(self, chat: ChatKey, kind: str) -> str:
        # The conversation key keeps its spelling (it is stored data); the keys the lock script touches
        # together hash like it, so in a Cluster they share its slot.
        conversation = self.conversation(chat)
        if hash_source(conversation) != conversation:  # the scope brings a hash tag of its own, kept here too
            return self._app_key(kind, chat.platform, chat.scope)
        if "}" not in conversation:
            return f"{{{conversation}}}:{kind}"
        # A '}' without a tag cannot be wrapped: the lock family gets a slot of its own (no script or
        # multi-key command touches the conversation together with it).
        digest = hashlib.sha256(conversation.encode()).hexdigest()[:32]
        return f"{{{digest}}}:{kind}"

    def delivery(self, platform: str, delivery_id: str) -> str:
        """A platform delivery already answered; shared by every app under the prefix."""
        return self.part(self.prefix, "seen", platform, delivery_id)

    def generation(self, name: str) -> str:
        """A counter that starts every conversation under `name` over when bumped."""
        return self._app_key("gen", name)

    def flag(self, name: str) -> str:
        """A small remembered fact."""
        return self._app_key("flag", name)

    def journal_entry(self, answer_id: str) -> str:
        """One answer in flight (hash); `{answer_id}` is a hash tag, so the entry stays in one Cluster slot."""
        return self._app_key("journal", "{" + answer_id + "}")

    def journal_index(self) -> str:
        """The ids of the answers in flight (set), which replicas scan for orphans."""
        return self._app_key("journal-index")

    def journal_owner(self, owner: str) -> str:
        """A replica's lease: while it exists, the answers that replica journals are its own."""
        return self._app_key("journal-owner", owner)

    def album(self, chat_id: int | str, group_id: str) -> str:
        """The parts of one Telegram album (list) as they arrive, possibly on different replicas."""
        return self._app_key("album", "{" + self.part(chat_id, group_id) + "}", "parts")

    def album_owner(self, chat_id: int | str, group_id: str) -> str:
        """Set once by the replica that answers the album; shares the parts' Cluster slot."""
        return self._app_key("album", "{" + self.part(chat_id, group_id) + "}", "owner")

    def feedback(self, message_id: str) -> str:
        """The Dify user an answer belongs to and the rating it was given in the chat (JSON)."""
        return self._app_key("feedback", message_id)

    def stop_channel(self) -> str:
        """The pub/sub channel that carries Stop presses to the replica running the answer."""
        return self._app_key("stops")

    def poller(self, platform: str, bot_id: int | str) -> str:
        """The lease naming the one replica that polls the platform for this bot; shared by every app."""
        return self.part(self.prefix, "poller", platform, bot_id)

    def budget(self, scope: str) -> str:
        """A platform rate budget shared by every replica (a Telegram chat, a Slack workspace's method);
        `{scope}` is its own hash tag, so the one key its script touches stays in one Cluster slot."""
        return self.part(self.prefix, "budget", "{" + scope.replace("{", "(").replace("}", ")") + "}")
