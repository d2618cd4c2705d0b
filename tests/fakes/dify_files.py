"""The file side of the fake Dify: the app's file settings, uploads, file checks, speech to text, signed links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

# Dify's extension lists (api/constants/__init__.py); the size limit of an upload follows its extension.
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "svg"})
VIDEO_EXTENSIONS = frozenset({"mp4", "mov", "mpeg", "webm"})
AUDIO_EXTENSIONS = frozenset({"mp3", "m4a", "wav", "amr", "mpga"})
DOCUMENT_EXTENSIONS = frozenset(
    {
        "txt", "markdown", "md", "mdx", "pdf", "html", "htm", "xlsx", "xls", "vtt", "properties",
        "doc", "docx", "csv", "eml", "msg", "pptx", "xml", "epub",
    }
)  # fmt: skip
FILE_TYPES = ("image", "document", "audio", "video", "custom")
TRANSFER_METHODS = ("remote_url", "local_file", "tool_file", "datasource")
AUDIO_PART_TYPES = frozenset(f"audio/{ext}" for ext in ("mp3", "m4a", "wav", "amr", "mpga"))
AUDIO_LIMIT = 30 * 1024 * 1024  # /audio-to-text's own cap, whatever the app's limits say
FILES_ACCESS_TIMEOUT = 300  # seconds a signed file link stays valid
SECRET_KEY = b"fake-dify-secret-key"
MB = 1024 * 1024
# A 1x1 PNG served for tool-file URLs nobody registered (the fixed links in dify_transcripts).
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class DifyApiError(Exception):
    """Becomes Dify's JSON error body `{"code", "message", "status"}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class FileRefused(ValueError):
    """A `files` entry Dify's file factory refuses; the message is Dify's."""


def dify_dumps(value: Any) -> str:
    """JSON as Dify's API writes it outside streams: compact, ASCII with \\uXXXX, `/` escaped, newline."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/") + "\n"


def dify_json(value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(value, status=status, headers=headers, dumps=dify_dumps)


# ---------------------------------------------------------------------------
# What the app accepts
# ---------------------------------------------------------------------------


@dataclass
class FileUpload:
    """The app's `file_upload` feature: what /parameters shows and what chat-messages enforces."""

    enabled: bool = False
    allowed_file_types: list[str] = field(default_factory=lambda: ["image", "document"])
    allowed_file_extensions: list[str] = field(default_factory=list)  # verbatim, dot included: [".pdf"]
    allowed_file_upload_methods: list[str] = field(default_factory=lambda: ["local_file", "remote_url"])
    number_limits: int = 3
    image_number_limits: int | None = None  # shown as `image.number_limits` of chat apps; None: number_limits

    @property
    def image_limit(self) -> int:
        return self.number_limits if self.image_number_limits is None else self.image_number_limits


@dataclass
class SizeLimits:
    """`system_parameters`, in MB as Dify reports them; uploads over them get 413."""

    file_size_limit: int = 15
    image_file_size_limit: int = 10
    video_file_size_limit: int = 100
    audio_file_size_limit: int = 50
    workflow_file_upload_limit: int = 10

    def as_json(self) -> dict[str, int]:
        return {
            "file_size_limit": self.file_size_limit,
            "image_file_size_limit": self.image_file_size_limit,
            "video_file_size_limit": self.video_file_size_limit,
            "audio_file_size_limit": self.audio_file_size_limit,
            "workflow_file_upload_limit": self.workflow_file_upload_limit,
        }

    def for_extension(self, extension: str) -> int:
        """Bytes allowed for an upload with this (lower-case) extension (`FileService.is_file_size_within_limit`)."""
        if extension in IMAGE_EXTENSIONS:
            return self.image_file_size_limit * MB
        if extension in VIDEO_EXTENSIONS:
            return self.video_file_size_limit * MB
        if extension in AUDIO_EXTENSIONS:
            return self.audio_file_size_limit * MB
        return self.file_size_limit * MB


def file_upload_json(config: FileUpload, limits: SizeLimits, *, mode: str) -> dict[str, Any]:
    """`file_upload` as /parameters shows it: Chatflow/workflow apps (1.15) have no `image` key."""
    upload_config = {
        "audio_file_size_limit": limits.audio_file_size_limit,
        "batch_count_limit": 5,
        "file_size_limit": limits.file_size_limit,
        "image_file_size_limit": limits.image_file_size_limit,
        "video_file_size_limit": limits.video_file_size_limit,
        "workflow_file_upload_limit": limits.workflow_file_upload_limit,
    }
    if mode in ("advanced-chat", "workflow"):
        return {
            "allowed_file_extensions": list(config.allowed_file_extensions),
            "allowed_file_types": list(config.allowed_file_types),
            "allowed_file_upload_methods": list(config.allowed_file_upload_methods),
            "enabled": config.enabled,
            "fileUploadConfig": upload_config,
            "number_limits": config.number_limits,
        }
    if not config.enabled:
        return {
            "image": {
                "enabled": False,
                "number_limits": config.image_limit,
                "detail": "high",
                "transfer_methods": ["remote_url", "local_file"],
            }
        }
    return {
        "image": {
            "detail": "high",
            "enabled": "image" in config.allowed_file_types,
            "number_limits": config.image_limit,
            "transfer_methods": list(config.allowed_file_upload_methods),
        },
        "enabled": True,
        "allowed_file_types": list(config.allowed_file_types),
        "allowed_file_extensions": list(config.allowed_file_extensions),
        "allowed_file_upload_methods": list(config.allowed_file_upload_methods),
        "number_limits": config.number_limits,
        "fileUploadConfig": upload_config,
    }


def standard_type(extension: str, mime_type: str) -> str:
    """Dify's `_standardize_file_type`: by extension first, then by MIME type, else `custom`."""
    ext = extension.lstrip(".").lower()
    for kind, known in (
        ("image", IMAGE_EXTENSIONS),
        ("document", DOCUMENT_EXTENSIONS),
        ("audio", AUDIO_EXTENSIONS),
        ("video", VIDEO_EXTENSIONS),
    ):
        if ext in known:
            return kind
    for kind in ("image", "audio", "video"):
        if mime_type.startswith(f"{kind}/"):
            return kind
    return "document" if mime_type.startswith("text/") or mime_type == "application/pdf" else "custom"


# ---------------------------------------------------------------------------
# Stored files and signed links
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """An upload (or a file the app produced), kept on disk so a big one is never held in memory twice."""

    id: str
    name: str
    extension: str  # lower case, no dot, as Dify stores it
    mime_type: str
    size: int
    user: str  # who uploaded it ("" for produced files)
    created_at: int
    path: Path
    sha256: str

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class AcceptedFile:
    """One entry of `files` that chat-messages / workflows/run accepted: what Dify received."""

    type: str
    transfer_method: str
    upload_file_id: str | None
    url: str | None
    file: StoredFile | None

    @property
    def name(self) -> str:
        return self.file.name if self.file is not None else (self.url or "").rsplit("/", 1)[-1]

    @property
    def data(self) -> bytes:
        assert self.file is not None, "only local files have bytes"
        return self.file.data


@dataclass(frozen=True)
class AudioCall:
    """One /audio-to-text call as the fake saw it."""

    user: str
    name: str
    mime_type: str
    size: int
    detected: str | None  # the format the bytes really have (mp3, wav, m4a, amr), None when unknown
    status: int


async def _parts(request: web.Request) -> AsyncIterator[BodyPartReader]:
    """The parts of a multipart body, read as they arrive; any other body has none (Flask's empty `request.files`)."""
    if request.content_type != "multipart/form-data":
        return
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader):
            yield part


def sign(kind: str, file_id: str, timestamp: int, nonce: str) -> str:
    message = f"{kind}|{file_id}|{timestamp}|{nonce}".encode()
    return base64.urlsafe_b64encode(hmac.new(SECRET_KEY, message, hashlib.sha256).digest()).decode()


def audio_format(head: bytes) -> str | None:
    """The audio container the first bytes announce (MP3 frame sync or ID3, RIFF WAVE, ftyp, #!AMR)."""
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"#!AMR"):
        return "amr"
    return None


_CLAIMED_FORMAT = {"audio/mp3": "mp3", "audio/mpga": "mp3", "audio/wav": "wav", "audio/m4a": "m4a", "audio/amr": "amr"}


class FileSide:
    """Uploads, file references, speech to text and the signed file routes of one FakeDify."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.config = FileUpload()
        self.limits = SizeLimits()
        self.speech_to_text = False
        self.clock = clock  # signs and checks file links (expiry after FILES_ACCESS_TIMEOUT)
        self.uploads: dict[str, StoredFile] = {}
        self.produced: dict[str, StoredFile] = {}  # tool files and workflow output files, by id
        self.received: list[list[AcceptedFile]] = []  # per accepted request that carried files
        self.audio_calls: list[AudioCall] = []
        self.transcripts: deque[str] = deque()
        self.downloads: list[str] = []  # ids of produced or uploaded files served through a signed link
        self._dir = Path(tempfile.mkdtemp(prefix="fake-dify-files-"))
        # Removed with the fake, not when the server stops: tests read what Dify received afterwards.
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)

    # --- /parameters -----------------------------------------------------------------------------

    def parameters_json(self, mode: str) -> dict[str, Any]:
        return {
            "speech_to_text": {"enabled": self.speech_to_text},
            "file_upload": file_upload_json(self.config, self.limits, mode=mode),
            "system_parameters": self.limits.as_json(),
        }

    # --- POST /v1/files/upload --------------------------------------------------------------------

    async def upload(self, request: web.Request, host_url: str) -> web.Response:
        """Multipart `file` (with a file name and a content type) and `user`; 201 with a signed source_url."""
        user = "DEFAULT-USER"
        files: list[tuple[str | None, str | None, Path, int, str]] = []
        async for part in _parts(request):
            if part.name == "user":
                user = (await part.text()) or user
            elif part.name == "file":
                files.append((part.filename, part.headers.get("Content-Type"), *await self._spool(part)))
            else:
                await part.release()
        try:
            if not files:
                raise DifyApiError(400, "no_file_uploaded", "Please upload your file.")
            if len(files) > 1:
                raise DifyApiError(400, "too_many_files", "Only one file is allowed.")
            name, mime, path, size, digest = files[0]
            if not mime:
                raise DifyApiError(415, "unsupported_file_type", "File type not allowed.")
            if not name:
                raise DifyApiError(400, "filename_not_exists_error", "The specified filename does not exist.")
            if "/" in name or "\\" in name:
                raise DifyApiError(400, "invalid_param", "Filename contains invalid characters")
            extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            if size > self.limits.for_extension(extension):
                raise DifyApiError(413, "file_too_large", "")  # Dify's message is empty here
        except DifyApiError:
            for _, _, leftover, _, _ in files:
                leftover.unlink(missing_ok=True)
            raise
        stored = StoredFile(
            id=str(uuid.uuid4()),
            name=name,
            extension=extension,
            mime_type=mime,
            size=size,
            user=user,
            created_at=int(self.clock()),
            path=path,
            sha256=digest,
        )
        self.uploads[stored.id] = stored
        record = {
            "id": stored.id,
            "reference": None,
            "name": name,
            "size": size,
            "extension": extension,
            "mime_type": mime,
            "created_by": str(uuid.uuid5(uuid.NAMESPACE_URL, f"end-user:{user}")),
            "created_at": stored.created_at,
            "preview_url": None,
            "source_url": self.preview_url(stored.id, host_url),
            "original_url": None,
            "user_id": None,
            "tenant_id": "5d6f1c0a-3b7e-4f4a-9a51-0c2b8e7d9f10",
            "conversation_id": None,
            "file_key": None,
        }
        return dify_json(record, status=201)

    async def _spool(self, part: BodyPartReader) -> tuple[Path, int, str]:
        """Write a part to disk chunk by chunk: (path, size, sha256)."""
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=self._dir, delete=False) as handle:
            while chunk := await part.read_chunk(64 * 1024):
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        return Path(handle.name), size, digest.hexdigest()

    # --- `files` in chat-messages / workflows/run ----------------------------------------------------

    def accept(self, mappings: Sequence[Any] | None, *, user: str) -> list[AcceptedFile]:
        """Dify's `build_from_mappings` against the app's config; raises FileRefused with Dify's message.

        With file upload disabled the files are dropped without an error, as Dify does."""
        if not mappings or not self.config.enabled:
            return []
        accepted = [self._one(mapping, user) for mapping in mappings]
        images = sum(1 for item in accepted if item.type == "image")
        if images > self.config.image_limit:
            raise FileRefused(f"Number of image files exceeds the maximum limit {self.config.image_limit}")
        if self.config.number_limits and len(accepted) > self.config.number_limits:
            raise FileRefused(f"Number of files exceeds the maximum limit {self.config.number_limits}")
        self.received.append(accepted)
        return accepted

    def _one(self, mapping: Any, user: str) -> AcceptedFile:
        if not isinstance(mapping, Mapping):
            raise FileRefused("Invalid file mapping")
        method = mapping.get("transfer_method")
        if method is None:
            raise FileRefused("transfer_method is required in file mapping")
        if method not in TRANSFER_METHODS:
            raise FileRefused(f"No matching enum found for value '{method}'")
        specified = mapping.get("type") or "custom"
        if specified not in FILE_TYPES:
            raise FileRefused(f"'{specified}' is not a valid FileType")
        stored: StoredFile | None = None
        url: str | None = None
        if method == "local_file":
            stored = self._own_upload(mapping.get("upload_file_id"), user)
            extension, detected, name = (
                "." + stored.extension,
                standard_type(stored.extension, stored.mime_type),
                stored.name,
            )
        elif method == "remote_url":
            url = mapping.get("url")
            if not url:
                raise FileRefused("Invalid file url")
            name = str(url).split("?", 1)[0].rsplit("/", 1)[-1]
            extension = "." + name.rsplit(".", 1)[-1] if "." in name else ""
            detected = standard_type(extension, "")
        else:
            raise FileRefused(f"Invalid file transfer method: {method}")
        file_type = specified if specified != "custom" else detected
        if not self._valid(specified, extension, method):
            raise FileRefused(f"File validation failed for file: {name}")
        return AcceptedFile(
            type=file_type,
            transfer_method=method,
            upload_file_id=stored.id if stored is not None else None,
            url=url,
            file=stored,
        )

    def _own_upload(self, upload_file_id: Any, user: str) -> StoredFile:
        if not upload_file_id:
            raise FileRefused("Invalid upload file id")
        try:
            key = str(uuid.UUID(str(upload_file_id)))
        except ValueError:
            raise FileRefused("Invalid upload file id format") from None
        stored = self.uploads.get(key)
        if stored is None or stored.user != user:  # only the uploading end user may reference it
            raise FileRefused("Invalid upload file")
        return stored

    def _valid(self, specified: str, extension: str, method: str) -> bool:
        """Dify's `is_file_valid_with_config`: custom passes the type list but needs a listed extension."""
        config = self.config
        if config.allowed_file_types and specified not in config.allowed_file_types and specified != "custom":
            return False
        if specified == "custom" and extension not in config.allowed_file_extensions:
            return False
        # Images are checked against image_config.transfer_methods, which Dify copies from the same list.
        return not (config.allowed_file_upload_methods and method not in config.allowed_file_upload_methods)

    # --- POST /v1/audio-to-text ------------------------------------------------------------------------

    async def audio_to_text(self, request: web.Request) -> web.Response:
        user, name, mime, data = "DEFAULT-USER", "", "", b""
        found = False
        async for part in _parts(request):
            if part.name == "user":
                user = (await part.text()) or user
            elif part.name == "file":
                found = True
                name, mime = part.filename or "", part.headers.get("Content-Type", "")
                data = await part.read()
            else:
                await part.release()
        detected = audio_format(data[:16])
        status = 200
        try:
            if not self.speech_to_text:
                raise DifyApiError(400, "speech_to_text_disabled", "Speech to text is disabled.")
            if not found:
                raise DifyApiError(400, "no_audio_uploaded", "Please upload your audio.")
            if mime not in AUDIO_PART_TYPES:
                raise DifyApiError(415, "unsupported_audio_type", "Audio type not allowed.")
            if len(data) > AUDIO_LIMIT:
                raise DifyApiError(413, "audio_too_large", "Audio size larger than 30 mb")
            if detected != _CLAIMED_FORMAT[mime]:
                raise DifyApiError(400, "completion_request_error", "[openai] Bad Request Error, Invalid file format.")
        except DifyApiError as err:
            status = err.status
            raise
        finally:
            self.audio_calls.append(AudioCall(user, name, mime, len(data), detected, status))
        text = self.transcripts.popleft() if self.transcripts else f"transcript of {len(data)} bytes"
        return dify_json({"text": text})

    # --- files the app produces, and the signed routes ----------------------------------------------

    def store(self, data: bytes, *, name: str, mime_type: str) -> StoredFile:
        """Keep a file the app produced (tool image, workflow output) for the signed routes to serve."""
        file_id = str(uuid.uuid4())
        path = self._dir / file_id
        path.write_bytes(data)
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        stored = StoredFile(
            id=file_id,
            name=name,
            extension=extension,
            mime_type=mime_type,
            size=len(data),
            user="",
            created_at=int(self.clock()),
            path=path,
            sha256=hashlib.sha256(data).hexdigest(),
        )
        self.produced[file_id] = stored
        return stored

    def _query(self, kind: str, file_id: str) -> str:
        timestamp, nonce = int(self.clock()), secrets.token_hex(16)
        signature = sign(kind, file_id, timestamp, nonce)
        return f"timestamp={timestamp}&nonce={nonce}&sign={signature.replace('=', '%3D')}"

    def tool_file_url(self, stored: StoredFile) -> str:
        """A relative signed link, as Dify puts in `message_file.url` (self-hosted default FILES_URL="")."""
        suffix = f".{stored.extension}" if stored.extension else ""
        return f"/files/tools/{stored.id}{suffix}?{self._query('file-preview', stored.id)}"

    def preview_url(self, file_id: str, host_url: str) -> str:
        """The absolute signed `file-preview` link of an upload or produced file."""
        return f"{host_url}/files/{file_id}/file-preview?{self._query('file-preview', file_id)}"

    def _signed(self, file_id: str, query: Mapping[str, str]) -> bool:
        try:
            timestamp = int(query["timestamp"])
            expected = sign("file-preview", file_id, timestamp, query["nonce"])
        except (KeyError, ValueError):
            return False
        fresh = self.clock() - timestamp <= FILES_ACCESS_TIMEOUT
        return fresh and hmac.compare_digest(expected, query.get("sign", ""))

    async def tool_file(self, request: web.Request) -> web.StreamResponse:
        """GET /files/tools/<id>.<ext>: 403 "Invalid request." without a valid, unexpired signature."""
        file_id = request.match_info["filename"].split(".", 1)[0]
        stored = self.produced.get(file_id)
        if stored is None:
            if not {"timestamp", "nonce", "sign"} <= request.query.keys():
                raise DifyApiError(403, "forbidden", "Invalid request.")
            return web.Response(body=TINY_PNG, content_type="image/png")  # a fixed link from a transcript
        if not self._signed(file_id, request.query):
            raise DifyApiError(403, "forbidden", "Invalid request.")
        self.downloads.append(file_id)
        return web.FileResponse(stored.path, headers={"Content-Type": stored.mime_type})

    async def file_preview(self, request: web.Request) -> web.StreamResponse:
        """GET /files/<id>/file-preview: 404 "File not found or signature is invalid" when unsigned or expired."""
        file_id = request.match_info["file_id"]
        stored = self.uploads.get(file_id) or self.produced.get(file_id)
        if stored is None or not self._signed(file_id, request.query):
            raise DifyApiError(404, "not_found", "File not found or signature is invalid")
        self.downloads.append(file_id)
        return web.FileResponse(stored.path, headers={"Content-Type": stored.mime_type})


def dify_file(
    stored: StoredFile, url: str, *, file_type: str = "image", transfer_method: str = "tool_file"
) -> dict[str, Any]:
    """A file object as Dify puts it in workflow outputs, `workflow_finished.files` and `message_end.files`."""
    reference = base64.b64encode(json.dumps({"record_id": stored.id}).encode()).decode()
    return {
        "dify_model_identity": "__dify__file__",
        "id": None,
        "type": file_type,
        "transfer_method": transfer_method,
        "remote_url": "",
        "reference": f"dify-file-ref:{reference}",
        "filename": stored.name,
        "extension": f".{stored.extension}" if stored.extension else "",
        "mime_type": stored.mime_type,
        "size": stored.size,
        "related_id": stored.id,
        "url": url,
    }


def sys_file(accepted: AcceptedFile, host_url: str, side: FileSide) -> dict[str, Any]:
    """An accepted file as `sys.files` shows it in `workflow_started`."""
    if accepted.file is None:
        return {"dify_model_identity": "__dify__file__", "type": accepted.type, "remote_url": accepted.url or ""}
    url = side.preview_url(accepted.file.id, host_url)
    return dify_file(accepted.file, url, file_type=accepted.type, transfer_method=accepted.transfer_method)


def message_file(file: Mapping[str, Any]) -> dict[str, Any]:
    """A file the user sent, as `GET /messages` lists it under `message_files`."""
    return {
        "id": file.get("related_id"),
        "filename": file.get("filename"),
        "type": file.get("type"),
        "url": file.get("url") or file.get("remote_url"),
        "mime_type": file.get("mime_type"),
        "size": file.get("size"),
        "transfer_method": file.get("transfer_method"),
        "belongs_to": "user",
        "upload_file_id": file.get("related_id"),
    }
