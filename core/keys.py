"""RedisKeys: the one place every Redis key is spelled, `prefix:kind:app:...` joined by ':'."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.conversations import ChatKey

SEPARATOR = ":"


class RedisKeys:
    """Builds the keys of one Dify app under one prefix, like aiogram's DefaultKeyBuilder.

    The strings are a storage format: changing one orphans what existing deployments have stored.
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
        """The cross-process lease that lets one answer at a time run in the chat."""
        return self._app_key("lock", chat.platform, chat.scope)

    def queue(self, chat: ChatKey) -> str:
        """Tickets waiting for the lock, scored by the platform's order; hash-tagged to the lock's slot."""
        return f"{{{self.lock(chat)}}}:queue"

    def queue_alive(self, chat: ChatKey) -> str:
        """When each waiting ticket expires unless its owner asks again (a dead replica's ticket goes)."""
        return f"{{{self.lock(chat)}}}:alive"

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
