"""The shapes files take between a front door and the answer pipeline, in and out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import BotError

FileKind = Literal["image", "document", "audio", "video", "custom"]

CHUNK = 64 * 1024

Fetch = Callable[[], AsyncIterator[bytes]]
"""Opens a download and yields its bytes in chunks; raises FileFetchFailed (with no URL or token in it)."""


@dataclass(frozen=True, slots=True)
class IncomingFile:
    """A file a user sent, not downloaded yet. The front door knows how to fetch it; core decides the rest."""

    name: str  # with an extension where one is known ("photo.jpg" for a Telegram photo)
    mime: str  # as the platform declared it ("" when unknown); bytes are sniffed before trusting it
    size: int | None  # declared size in bytes; None when the platform does not say
    fetch: Fetch
    voice: bool = False  # a voice note or clip spoken to the bot: transcribed when the app can
    platform_limit: int | None = None  # the platform's own download cap in bytes (Telegram: 20 MB)


@dataclass(frozen=True, slots=True)
class ProducedFile:
    """A file the Dify app produced, already downloaded to `path` (removed when the answer is done)."""

    name: str
    mime: str
    size: int
    path: Path
    kind: FileKind  # "image" goes out as a picture, anything else as a document
    url: str  # the absolute URL it came from (for logs and link-only front doors; it expires)

    async def chunks(self, size: int = CHUNK) -> AsyncIterator[bytes]:
        """The file's bytes, read from disk in chunks (never all at once)."""
        with self.path.open("rb") as handle:
            while block := handle.read(size):
                yield block


class FileProblem(BotError):
    """A file could not be taken or delivered; `reason` picks the friendly sentence, `values` fill it in.

    Reasons: files_disabled, type_refused, too_large, too_many, fetch_failed, upload_failed,
    voice_unsupported, transcription_failed."""

    def __init__(self, reason: str, message: str = "", **values: str) -> None:
        super().__init__(message or reason, code=reason)
        self.reason = reason
        self.values = values


class FileFetchFailed(FileProblem):
    """Downloading a user's file failed; the message never holds a URL (Telegram's carry the bot token)."""

    def __init__(self, message: str = "") -> None:
        super().__init__("fetch_failed", message)
