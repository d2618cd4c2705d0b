"""Takes a user's files for one answer: check, download to a temp dir, transcribe voice, upload for the user."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.dify.client import DifyClient
from core.dify.errors import DifyError
from core.dify.parameters import AppParameters, ParametersCache
from core.files.kinds import HEAD, mime_for, proper_name
from core.files.model import FileFetchFailed, FileKind, FileProblem, IncomingFile
from core.files.rules import Planned, check_downloaded, plan
from core.files.voice import speech_file

log = logging.getLogger(__name__)

DEFAULT_QUESTION = "Please look at the attached file."
DEFAULT_QUESTION_MANY = "Please look at the attached files."


def default_question(count: int) -> str:
    """The question asked for files sent without any text."""
    return DEFAULT_QUESTION_MANY if count > 1 else DEFAULT_QUESTION


def _safe_name(name: str, index: int) -> str:
    # Dify refuses names with path separators; a name is also never used as a path here.
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned or f"file-{index}"


@dataclass(frozen=True, slots=True)
class _Taken:
    """A downloaded file, ready to upload."""

    path: Path
    name: str
    mime: str
    type: FileKind


class FileIntake:
    """The attachments of one answer. `prepare()` once (inside the chat's turn), `files_for(user)` per attempt,
    `close()` at the end (removes the temp dir)."""

    def __init__(self, dify: DifyClient, parameters: ParametersCache, attachments: Sequence[IncomingFile]) -> None:
        self._dify = dify
        self._parameters = parameters
        self._attachments = tuple(attachments)
        self._dir: Path | None = None
        self._taken: list[_Taken] = []
        self._uploaded: dict[str, list[dict[str, Any]]] = {}

    @property
    def count(self) -> int:
        return len(self._attachments)

    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="dify-bots-"))
        return self._dir

    async def prepare(self, *, user: str) -> str | None:
        """Check, download and transcribe; the transcript of any voice message (None without one).

        Raises FileProblem (or the DifyError of an unreadable /parameters) before anything reaches the chat."""
        params: AppParameters = await self._parameters.get()
        planned = plan(params, self._attachments)
        heard: list[str] = []
        for index, item in enumerate(planned):
            path, head, size = await self._download(item, index)
            name = proper_name(_safe_name(item.source.name, index), head)
            if item.use == "transcribe":
                heard.append(await self._transcribe(path, name, head, user=user))
                continue
            kind = check_downloaded(params.files, item, name=name, head=head, size=size)
            self._taken.append(_Taken(path=path, name=name, mime=mime_for(name, head, item.source.mime), type=kind))
        return "\n".join(heard) if heard else None

    async def files_for(self, user: str) -> list[dict[str, Any]]:
        """The `files` of a chat message: every taken file uploaded for `user` (once per user)."""
        if user in self._uploaded:
            return self._uploaded[user]
        files: list[dict[str, Any]] = []
        for taken in self._taken:
            try:
                upload_id = await self._dify.upload_file(path=taken.path, name=taken.name, mime=taken.mime, user=user)
            except DifyError as exc:
                log.warning("uploading a file to Dify failed: %r", exc)
                reason = "too_large" if exc.status == 413 else "upload_failed"  # Dify's 413 has no message
                raise FileProblem(reason, f"upload refused: {exc.code or exc.status}") from None
            files.append({"type": taken.type, "transfer_method": "local_file", "upload_file_id": upload_id})
        self._uploaded[user] = files
        return files

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def _download(self, item: Planned, index: int) -> tuple[Path, bytes, int]:
        """Stream the file to disk, stopping past its cap; (path, first bytes, size)."""
        path = self._workdir() / f"in-{index}"
        size = 0
        head = b""
        chunks = item.source.fetch()
        try:
            with path.open("wb") as handle:
                async for block in chunks:
                    size += len(block)
                    if size > item.cap:
                        raise FileProblem("too_large", "download over the cap", limit_mb=str(max(1, item.cap >> 20)))
                    if len(head) < HEAD:
                        head += block[: HEAD - len(head)]
                    handle.write(block)
        except FileProblem:
            raise
        except Exception as exc:  # the door's own failure: its text may hold a URL with a token, so drop it
            log.warning("downloading a user's file failed: %s", type(exc).__name__)
            raise FileFetchFailed(f"download failed: {type(exc).__name__}") from None
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        if size == 0:
            raise FileFetchFailed("the download was empty")
        return path, head, size

    async def _transcribe(self, path: Path, name: str, head: bytes, *, user: str) -> str:
        speech = await speech_file(path, name, head, self._workdir())
        try:
            transcript = await self._dify.audio_to_text(path=speech.path, name=speech.name, mime=speech.mime, user=user)
        except DifyError as exc:
            log.warning("Dify could not transcribe a voice message: %r", exc)
            raise FileProblem("transcription_failed", f"audio-to-text: {exc.code or exc.status}") from None
        if not transcript.strip():
            raise FileProblem("transcription_failed", "empty transcript")
        return transcript.strip()
