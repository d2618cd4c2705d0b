"""Files the app produced, fetched for sinks that deliver files: downloads start at once (links expire in 5 min)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path, PurePosixPath

from yarl import URL

from core.answer import Done, Failed, Files, FilesReady, ReplyEvent
from core.dify.client import DifyClient
from core.files.kinds import HEAD, kind_of, mime_for, proper_name, sniff
from core.files.links import absolute_url, dify_images
from core.files.model import FileKind, ProducedFile

log = logging.getLogger(__name__)

MAX_PRODUCED = 50 * 1024 * 1024  # Telegram's upload cap for documents
WAIT_LIMIT = 60.0  # seconds the final frame waits for the answer's files
_PICTURES = frozenset({"png", "jpg", "gif", "webp"})


def _name_of(url: str, index: int) -> str:
    try:
        name = PurePosixPath(URL(url).path).name
    except ValueError:
        name = ""
    return name or f"file-{index}"


def _quiet(task: asyncio.Task[ProducedFile]) -> None:
    # An answer cut short never collects its downloads: retrieve their outcome so nothing is reported twice.
    if not task.cancelled():
        task.exception()


def _safe(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).name


class ProducedFiles:
    """Downloads of one answer's files into a temp dir; `close()` removes them once the answer is delivered."""

    def __init__(self, dify: DifyClient, *, extra_hosts: Iterable[str] = (), wait_limit: float = WAIT_LIMIT) -> None:
        self._dify = dify
        self._extra_hosts = tuple(host for host in extra_hosts if host)
        self._wait_limit = wait_limit
        self._dir: Path | None = None
        self._tasks: dict[str, asyncio.Task[ProducedFile]] = {}
        self._names: dict[str, str] = {}
        self._seen: set[str] = set()

    async def relay(self, events: AsyncIterable[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
        """The events, minus `Files`, with `FilesReady` just before the outcome when there were any files."""
        async for event in events:
            if isinstance(event, Files):
                for ref in event.files:
                    self._start(ref.url, ref.name)
                continue
            if isinstance(event, Done):
                for url in dify_images(event.answer, self._dify.host_url, self._extra_hosts):
                    self._start(url)
            if isinstance(event, Done | Failed) and self._tasks:
                yield await self._collect()
            yield event

    def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _start(self, url: str, name: str = "") -> None:
        absolute = absolute_url(url, self._dify.host_url)
        if absolute.split("?", 1)[0] in self._seen:
            return  # the same file, perhaps under a newer signature (a tool's image repeated in the text)
        self._seen.add(absolute.split("?", 1)[0])
        index = len(self._tasks)
        self._names[absolute] = _safe(name) or _name_of(absolute, index)
        task = asyncio.create_task(self._fetch(absolute, index))
        task.add_done_callback(_quiet)
        self._tasks[absolute] = task

    async def _fetch(self, url: str, index: int) -> ProducedFile:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="dify-bots-out-"))
        path = self._dir / f"out-{index}"
        content_type, size = await self._dify.fetch_file(url, path, max_bytes=MAX_PRODUCED)
        with path.open("rb") as handle:
            head = handle.read(HEAD)
        name = proper_name(self._names[url], head)
        picture = sniff(head) in _PICTURES
        kind: FileKind = "image" if picture else kind_of(name, content_type, head)
        if kind == "image" and not picture:
            kind = "document"  # an image a chat can't show as a picture (SVG, ...) goes as a file
        mime = mime_for(name, head, content_type)
        return ProducedFile(name=name, mime=mime, size=size, path=path, kind=kind, url=url)

    async def _collect(self) -> FilesReady:
        tasks = list(self._tasks.items())
        _, pending = await asyncio.wait([task for _, task in tasks], timeout=self._wait_limit)
        for task in pending:
            task.cancel()
        files: list[ProducedFile] = []
        missing: list[str] = []
        for url, task in tasks:
            if task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                log.warning("a file of the answer took too long to fetch")
                missing.append(self._names[url])
                continue
            try:
                files.append(task.result())
            except Exception as exc:  # expired link (403/404), too large, connection trouble
                log.warning("could not fetch a file of the answer: %r", exc)
                missing.append(self._names[url])
        self._tasks.clear()
        return FilesReady(files=tuple(files), missing=tuple(missing))
