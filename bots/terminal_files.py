"""`/file PATH [question]` and `/voice PATH` in `dify-bots chat`: a local file handed to the answer pipeline."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from core.files.model import CHUNK, FileFetchFailed, IncomingFile

COMMAND = "/file"
VOICE_COMMAND = "/voice"
USAGE = "Usage: /file PATH [question]  (quote a path that has spaces)"
VOICE_USAGE = "Usage: /voice PATH  (a recording to transcribe and answer)"


@dataclass(frozen=True, slots=True)
class FileRequest:
    """What a `/file` line asks: the file to send, and the question that goes with it ("" for the default)."""

    path: Path
    question: str
    voice: bool = False  # a recording: transcribed (when the app can) and its words answered


class FileCommandError(ValueError):
    """A `/file` line that cannot be sent; the message is for the user."""


def is_file_command(line: str) -> bool:
    return any(line == command or line.startswith(command + " ") for command in (COMMAND, VOICE_COMMAND))


def _split_path(rest: str) -> tuple[str, str]:
    """The path (quoted with ' or " when it has spaces) and what follows it."""
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise FileCommandError(f"The path has no closing {rest[0]}. {USAGE}")
        return rest[1:end], rest[end + 1 :]
    path, _, question = rest.partition(" ")
    return path, question


def parse_file_command(line: str) -> FileRequest:
    """`/file PATH [question]` or `/voice PATH` → the checked file and the question; FileCommandError says
    what is wrong."""
    voice = line.startswith(VOICE_COMMAND)
    usage = VOICE_USAGE if voice else USAGE
    rest = line[len(VOICE_COMMAND if voice else COMMAND) :].strip()
    if not rest:
        raise FileCommandError(usage)
    raw, question = _split_path(rest)
    if not raw:
        raise FileCommandError(usage)
    if voice and question.strip():
        raise FileCommandError(f"A recording is its own question. {usage}")
    path = Path(raw).expanduser()
    if not path.exists():
        raise FileCommandError(f"No such file: {raw}")
    if path.is_dir():
        raise FileCommandError(f"{raw} is a folder; /file sends one file.")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise FileCommandError(f"Cannot read {raw}: {exc.strerror or exc}") from None
    return FileRequest(path=path, question=question.strip(), voice=voice)


def local_file(path: Path, *, voice: bool = False) -> IncomingFile:
    """The file as an attachment; its bytes are read from disk in chunks only when the pipeline fetches it."""

    async def fetch() -> AsyncIterator[bytes]:
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise FileFetchFailed(f"cannot read {path.name}: {exc.strerror or exc}") from None
        with handle:
            while block := handle.read(CHUNK):
                yield block

    mime = mimetypes.guess_type(path.name)[0] or ""
    return IncomingFile(name=path.name, mime=mime, size=path.stat().st_size, fetch=fetch, voice=voice)
