"""The messages an answer has put in the chat so far, and what each of them shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.controls.model import Controls
from core.render.surface import Handle

__all__ = ["SentMessage", "SentMessages"]


@dataclass(slots=True)
class SentMessage:
    handle: Handle
    shown: tuple[str, bool]  # the markdown the platform last accepted for it, and whether it was final
    controls: Controls | None = None  # the buttons it carries (None: the answer offers none)


class SentMessages:
    """The answer's messages in chat order."""

    def __init__(self) -> None:
        self._items: list[SentMessage] = []

    def __len__(self) -> int:
        return len(self._items)

    def handle(self, index: int) -> Handle:
        return self._items[index].handle

    def handles_from(self, index: int) -> list[Handle]:
        return [message.handle for message in self._items[index:]]

    def shown(self, index: int) -> tuple[str, bool]:
        return self._items[index].shown

    def first_difference(
        self, parts: list[str], *, final: bool, controls: Sequence[Controls] | None = None
    ) -> int | None:
        """The first message that does not show what it should (parts before the last are final), buttons
        included when `controls` lists each message's."""
        last = len(parts) - 1
        for index, part in enumerate(parts):
            wanted = (part, final or index < last)
            if index >= len(self._items):
                return index
            item = self._items[index]
            if item.shown != wanted or (controls is not None and item.controls != controls[index]):
                return index
        return None

    def replace(self, index: int, handle: Handle, part: str, *, final: bool, controls: Controls | None = None) -> None:
        """Message `index` now shows `part` (an edit may hand back a new handle)."""
        self._items[index] = SentMessage(handle=handle, shown=(part, final), controls=controls)

    def append(self, handle: Handle, part: str, *, final: bool, controls: Controls | None = None) -> None:
        self._items.append(SentMessage(handle=handle, shown=(part, final), controls=controls))

    def drop_from(self, index: int) -> None:
        """Forget message `index` and every later one."""
        del self._items[index:]
