"""Files in the fake Slack: hosted files behind `url_private` (bot token required), `files.info`, and the
external upload flow (`files.getUploadURLExternal` → POST bytes → `files.completeUploadExternal`)."""

from __future__ import annotations

import itertools
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.slack_base import ApiError, Args, json_list

FILE_SCOPES = frozenset({"files:read", "files:write"})
MAX_ALT_TEXT = 1000
# What files.slack.com serves to a request without a valid bot token: a sign-in page with status 200.
SIGN_IN_HTML = (
    '<!DOCTYPE html><html lang="en-US"><head><meta charset="utf-8"><title>Slack</title></head>'
    '<body><div id="page"><h1>Sign in to your workspace</h1>'
    "<p>This browser is no longer supported, or you are not signed in.</p></div></body></html>"
)
DEPRECATED_FILES_UPLOAD = "method_deprecated"


@dataclass
class HostedFile:
    """A file a user shared, stored by the fake and served at its `url_private(_download)`."""

    id: str
    name: str
    title: str
    mimetype: str
    filetype: str
    data: bytes
    user: str
    created: int
    subtype: str | None = None  # "slack_audio" for a voice clip
    connect_stub: bool = False  # events carry only a stub (`file_access: check_file_info`)
    mode: str = "hosted"


@dataclass
class Download:
    """One GET of a file URL: who asked (the Authorization header) and what was answered."""

    file_id: str
    authorization: str | None
    status: int
    served_file: bool  # False: a sign-in page or an error, not the file's bytes
    path: str


@dataclass
class UploadTicket:
    """An upload started with files.getUploadURLExternal; `data` once its bytes were posted."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None
    data: bytes | None = None
    completed: bool = False


@dataclass
class UploadPost:
    """One POST to an upload URL, as sent (tests check that bodies arrive with a known length)."""

    file_id: str | None
    status: int
    size: int
    content_length: int | None
    chunked: bool
    authorization: str | None


@dataclass
class SharedFile:
    """A file the bot completed into a conversation (files.completeUploadExternal)."""

    id: str
    channel: str | None
    thread_ts: str | None
    filename: str
    title: str
    data: bytes
    initial_comment: str | None = None


@dataclass
class _Faults:
    downloads: deque[int] = field(default_factory=deque)
    uploads: deque[int] = field(default_factory=deque)


class SlackFiles:
    """The files part of a FakeSlack (see `FakeSlack.files`)."""

    def __init__(
        self,
        *,
        bot_token: str,
        team_id: str,
        base_url: Callable[[], str],
        scopes: Callable[[], frozenset[str]],
    ) -> None:
        self._bot_token = bot_token
        self._team_id = team_id
        self._base_url = base_url
        self._scopes = scopes
        self._ids = itertools.count(1)
        self._faults = _Faults()
        self.hosted: dict[str, HostedFile] = {}
        self.downloads: list[Download] = []
        self.tickets: dict[str, UploadTicket] = {}
        self.upload_posts: list[UploadPost] = []
        self.shared: list[SharedFile] = []

    # ------------------------------------------------------------------ wiring

    def handlers(self) -> dict[str, Callable[[Args], Args]]:
        return {
            "files.info": self._info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.upload": self._deprecated_upload,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._serve)
        app.router.add_get("/files-pri/{team_file}/{name}", self._serve)
        app.router.add_post("/upload/v1/{file_id}", self._receive_upload)

    # ------------------------------------------------------------------ test controls and queries

    def add(
        self,
        data: bytes,
        *,
        name: str,
        mimetype: str,
        filetype: str | None = None,
        title: str | None = None,
        user: str = "U1",
        subtype: str | None = None,
        connect_stub: bool = False,
        mode: str = "hosted",
    ) -> dict[str, Any]:
        """Store a user's file; returns what an event's `files` list carries for it (a stub for Slack Connect)."""
        file_id = f"F{next(self._ids):08d}"
        hosted = HostedFile(
            id=file_id,
            name=name,
            title=title if title is not None else name,
            mimetype=mimetype,
            filetype=filetype if filetype is not None else (name.rsplit(".", 1)[-1].lower() if "." in name else ""),
            data=data,
            user=user,
            created=int(time.time()),
            subtype=subtype,
            connect_stub=connect_stub,
            mode=mode,
        )
        self.hosted[file_id] = hosted
        if connect_stub:
            return {
                "id": file_id,
                "mode": "file_access",
                "file_access": "check_file_info",
                "created": 0,
                "timestamp": 0,
                "user": "",
            }
        return self.file_object(hosted)

    def file_object(self, hosted: HostedFile) -> dict[str, Any]:
        """The full file object (events, files.info)."""
        base = f"{self._base_url()}/files-pri/{self._team_id}-{hosted.id}"
        quoted = urllib.parse.quote(hosted.name)
        obj: dict[str, Any] = {
            "id": hosted.id,
            "created": hosted.created,
            "timestamp": hosted.created,
            "name": hosted.name,
            "title": hosted.title,
            "mimetype": hosted.mimetype,
            "filetype": hosted.filetype,
            "pretty_type": hosted.filetype.upper(),
            "user": hosted.user,
            "user_team": self._team_id,
            "editable": False,
            "size": len(hosted.data),
            "mode": hosted.mode,
            "is_external": hosted.mode == "external",
            "external_type": "gdrive" if hosted.mode == "external" else "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{quoted}",
            "url_private_download": f"{base}/download/{quoted}",
            "permalink": f"https://test.slack.com/files/{hosted.user}/{hosted.id}/{quoted}",
            "permalink_public": f"https://slack-files.com/{self._team_id}-{hosted.id}-0000000000",
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if hosted.mode == "external":
            # An external file (Google Drive, …): its URLs point at the other service, not at Slack.
            obj["url_private"] = obj["url_private_download"] = f"https://drive.example.com/file/{hosted.id}"
        if hosted.subtype:
            obj["subtype"] = hosted.subtype
        if hosted.subtype == "slack_audio":
            obj["transcription"] = {"status": "processing"}
        return obj

    def fail_downloads(self, status: int = 500, *, count: int = 1) -> None:
        """Answer the next `count` authorized file downloads with `status` (a plain-text error body)."""
        self._faults.downloads.extend([status] * count)

    def fail_uploads(self, status: int = 500, *, count: int = 1) -> None:
        """Answer the next `count` POSTs to an upload URL with `status`."""
        self._faults.uploads.extend([status] * count)

    def in_thread(self, channel: str, thread_ts: str) -> list[SharedFile]:
        """Files shared into the thread under `thread_ts` (which must be the thread's root ts)."""
        return [f for f in self.shared if f.channel == channel and f.thread_ts == thread_ts]

    # ------------------------------------------------------------------ url_private(_download)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        team, _, file_id = request.match_info["team_file"].partition("-")
        hosted = self.hosted.get(file_id)
        authorization = request.headers.get("Authorization")
        record = Download(file_id, authorization, 200, False, request.path)
        self.downloads.append(record)
        if hosted is None or team != self._team_id or request.match_info["name"] != hosted.name:
            record.status = 404
            return web.Response(status=404, text="file not found", content_type="text/plain")
        if authorization != f"Bearer {self._bot_token}" or "files:read" not in self._scopes():
            return web.Response(text=SIGN_IN_HTML, content_type="text/html")
        if self._faults.downloads:
            record.status = self._faults.downloads.popleft()
            return web.Response(status=record.status, text="internal error", content_type="text/plain")
        record.served_file = True
        headers = {"Content-Type": hosted.mimetype or "application/octet-stream"}
        if request.path.split("/")[-2] == "download":
            headers["Content-Disposition"] = f'attachment; filename="{hosted.name}"'
        return web.Response(body=hosted.data, headers=headers)

    # ------------------------------------------------------------------ methods

    def _need(self, scope: str) -> None:
        if scope not in self._scopes():
            raise ApiError("missing_scope")

    def _info(self, args: Args) -> Args:
        self._need("files:read")
        hosted = self.hosted.get(str(args.get("file") or ""))
        if hosted is None:
            raise ApiError("file_not_found")
        return {"ok": True, "file": self.file_object(hosted), "comments": [], "response_metadata": {"next_cursor": ""}}

    def _get_upload_url(self, args: Args) -> Args:
        self._need("files:write")
        filename = str(args.get("filename") or "")
        try:
            length = int(str(args.get("length")))
        except ValueError:
            raise ApiError("invalid_arguments") from None
        if not filename or length <= 0:
            raise ApiError("invalid_arguments")
        alt_txt = args.get("alt_txt")
        if alt_txt is not None and len(str(alt_txt)) > MAX_ALT_TEXT:
            raise ApiError("alt_txt_too_large")
        file_id = f"F{next(self._ids):08d}"
        self.tickets[file_id] = UploadTicket(file_id, filename, length, None if alt_txt is None else str(alt_txt))
        return {"ok": True, "upload_url": f"{self._base_url()}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, args: Args) -> Args:
        self._need("files:write")
        items = json_list(args.get("files"), "invalid_arguments")
        if not items:
            raise ApiError("invalid_arguments")
        tickets: list[tuple[UploadTicket, str]] = []
        for item in items:
            ticket = self.tickets.get(str(item.get("id") or ""))
            if ticket is None or ticket.completed or ticket.data is None:
                raise ApiError("file_not_found")  # "Could not find the file from the upload ticket."
            tickets.append((ticket, str(item.get("title") or ticket.filename)))
        channel = str(args["channel_id"]) if args.get("channel_id") else None
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        if thread_ts is not None and channel is None:
            raise ApiError("invalid_arguments")
        for ticket, title in tickets:
            assert ticket.data is not None
            ticket.completed = True
            # Slack takes a reply's ts without complaint, but the file then does not show in the thread:
            # it is stored under the ts given, so `in_thread(root)` does not list it.
            self.shared.append(
                SharedFile(
                    id=ticket.file_id,
                    channel=channel,
                    thread_ts=thread_ts,
                    filename=ticket.filename,
                    title=title,
                    data=ticket.data,
                    initial_comment=args.get("initial_comment"),
                )
            )
        return {"ok": True, "files": [{"id": t.file_id, "title": title} for t, title in tickets]}

    def _deprecated_upload(self, args: Args) -> Args:
        raise ApiError(DEPRECATED_FILES_UPLOAD)

    # ------------------------------------------------------------------ upload URL

    async def _receive_upload(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        ticket = self.tickets.get(file_id)
        content_length = request.content_length
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if request.content_type.startswith("multipart/"):
            data = b""
            reader = await request.multipart()
            async for part in reader:
                if getattr(part, "filename", None):
                    data = await part.read()  # type: ignore[union-attr]
        else:
            data = await request.read()
        post = UploadPost(
            file_id if ticket else None, 200, len(data), content_length, chunked, request.headers.get("Authorization")
        )
        self.upload_posts.append(post)
        if ticket is None or ticket.completed:
            post.status = 404
            return web.Response(status=404, text="upload ticket not found", content_type="text/plain")
        if self._faults.uploads:
            post.status = self._faults.uploads.popleft()
            return web.Response(status=post.status, text="upload failed", content_type="text/plain")
        if len(data) != ticket.length:
            post.status = 400
            return web.Response(status=400, text="length does not match the upload ticket", content_type="text/plain")
        ticket.data = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")
