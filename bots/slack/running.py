"""The conversations with an answer running, per channel and asker: what a /stop typed in a channel means."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bots.slack.addressing import SlackMessage
from core.conversations import ChatKey

_Place = tuple[str, str]  # team, channel


class RunningAnswers:
    """Answers this process is writing, newest last, by the channel they are in and who asked."""

    def __init__(self) -> None:
        self._by_place: dict[_Place, list[tuple[str, ChatKey]]] = {}

    @contextmanager
    def track(self, message: SlackMessage, key: ChatKey) -> Iterator[None]:
        """Count `key` as running for `message.user` in its channel while the block runs."""
        place = (message.team, message.channel)
        entry = (message.user, key)
        self._by_place.setdefault(place, []).append(entry)
        try:
            yield
        finally:
            entries = self._by_place.get(place, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self._by_place.pop(place, None)

    def latest(self, team: str, channel: str, user: str) -> ChatKey | None:
        """The newest answer `user` asked for in the channel, else the channel's newest one (not theirs to
        stop, which the stop itself says), else None."""
        entries = self._by_place.get((team, channel), [])
        for asker, key in reversed(entries):
            if asker == user:
                return key
        return entries[-1][1] if entries else None
