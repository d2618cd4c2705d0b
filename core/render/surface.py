"""The seam between the renderer and a platform: what a chat surface can do and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.controls.model import Controls


@dataclass(frozen=True, slots=True)
class SurfaceLimits:
    """`max_length` is in the unit `measure()` returns (Telegram: UTF-16 units of the rendered text);
    `cursor_length` is the room the surface's typing cursor takes on interim frames."""

    max_length: int
    cursor_length: int = 2
    placeholder: bool = True  # False: progress goes to status() and the first message waits for text


class SurfaceError(Exception):
    """A platform call failed in a way the renderer must react to."""


class SurfaceRateLimited(SurfaceError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:g}s")
        self.retry_after = retry_after


class SurfaceBusy(SurfaceError):
    """Our own budget for the platform is spent (no call was made): skip this interim frame, no strike."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"budget spent for {retry_after:g}s")
        self.retry_after = retry_after


class SurfaceMessageGone(SurfaceError):
    """The message to edit was deleted or can no longer be edited: continue in a new one."""


class SurfaceTooLong(SurfaceError):
    """The platform measured the frame as too long: split it further."""


class SurfaceBlocked(SurfaceError):
    """The bot may not write here any more (blocked, kicked): stop the answer."""


class SurfaceTransient(SurfaceError):
    """Network trouble or a 5xx: skip an interim frame, retry a final one."""


Handle = Any  # whatever the surface uses to find a message again (message id, ts, stream)


class MessageSurface(Protocol):
    """One answer's view of a chat. Implementations treat 'not modified' as success and fall back to
    plain text on formatting errors themselves; everything else is raised as a SurfaceError."""

    limits: SurfaceLimits

    def measure(self, markdown: str) -> int:
        """Length of the rendered form of `markdown`, in `limits` units."""
        ...

    async def send(self, markdown: str, *, final: bool) -> Handle:
        """Post a new message (the first one replies to the user's message) and return its handle.
        A frame that is not final shows a typing cursor after the rendered text."""
        ...

    async def edit(self, handle: Handle, markdown: str, *, final: bool) -> Handle:
        """Replace a message's content (cursor as for send); returns the (possibly new) handle."""
        ...

    async def delete(self, handle: Handle) -> None:
        """Remove a message the answer no longer needs (best effort)."""
        ...

    async def typing(self) -> None:
        """Show that the bot is working (best effort; errors are swallowed by the caller)."""
        ...

    async def status(self, text: str) -> None:
        """Show a progress line outside the answer (only called when `limits.placeholder` is False)."""
        ...


class ControlledSurface(MessageSurface, Protocol):
    """A surface that shows buttons under messages. The renderer passes `controls` only to answers given a
    control plan; `Controls()` (empty) means the message shows none (a previous keyboard is removed)."""

    async def send(self, markdown: str, *, final: bool, controls: Controls | None = None) -> Handle: ...

    async def edit(self, handle: Handle, markdown: str, *, final: bool, controls: Controls | None = None) -> Handle: ...
