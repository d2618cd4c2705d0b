"""What kind of file Dify will see: sniffed from the first bytes, else Dify's extension lists, else the MIME type."""

from __future__ import annotations

import mimetypes
from pathlib import PurePath

from core.files.model import FileKind

HEAD = 64  # bytes needed to sniff every signature below

# Dify's own extension lists (api/constants/__init__.py); anything else is "custom".
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "svg"})
VIDEO_EXTENSIONS = frozenset({"mp4", "mov", "mpeg", "webm"})
AUDIO_EXTENSIONS = frozenset({"mp3", "m4a", "wav", "amr", "mpga"})
DOCUMENT_EXTENSIONS = frozenset(
    {
        "txt", "markdown", "md", "mdx", "pdf", "html", "htm", "xlsx", "xls", "vtt", "properties", "doc", "docx",
        "csv", "eml", "msg", "pptx", "xml", "epub", "ppt",
    }
)  # fmt: skip

_MIMES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "pdf": "application/pdf",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "amr": "audio/amr",
    "zip": "application/zip",
}


def sniff(head: bytes) -> str | None:
    """The extension the magic bytes at the start of a file stand for, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 6):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:11] in (b"M4A", b"M4B") else "mp4"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm"
    return None


def extension(name: str) -> str:
    """The name's extension without the dot, as written ("" when there is none)."""
    return PurePath(name).suffix[1:]


def _kind_of_extension(ext: str) -> FileKind | None:
    lower = ext.lower()
    if lower in IMAGE_EXTENSIONS:
        return "image"
    if lower in AUDIO_EXTENSIONS:
        return "audio"
    if lower in VIDEO_EXTENSIONS:
        return "video"
    if lower in DOCUMENT_EXTENSIONS:
        return "document"
    return None


def proper_name(name: str, head: bytes) -> str:
    """`name` with an extension that matches the bytes (Dify types a file by its extension)."""
    sniffed = sniff(head)
    ext = extension(name)
    if sniffed is None or ext.lower() == sniffed or (sniffed == "jpg" and ext.lower() == "jpeg"):
        return name or "file"
    if sniffed == "mp4" and ext.lower() in ("mov", "m4a"):
        return name  # the same container under another name
    return f"{PurePath(name).stem or 'file'}.{sniffed}"


def kind_of(name: str, mime: str, head: bytes) -> FileKind:
    """The Dify file type: sniffed bytes first, then Dify's extension lists, then the declared MIME type."""
    sniffed = sniff(head)
    if sniffed == "ogg":
        return "audio" if not mime.startswith("video/") else "video"
    kind = _kind_of_extension(sniffed) if sniffed else None
    if kind is None:
        kind = _kind_of_extension(extension(name))
    if kind is not None:
        return kind
    ext = extension(name)
    if ext:
        return "custom"
    major = mime.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return major  # type: ignore[return-value]
    return "document" if mime.startswith("text/") or mime == "application/pdf" else "custom"


def mime_for(name: str, head: bytes = b"", declared: str = "") -> str:
    """The MIME type to upload with: sniffed, else guessed from the name, else the declared one."""
    sniffed = sniff(head)
    if sniffed in _MIMES:
        return _MIMES[sniffed]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or declared or "application/octet-stream"
