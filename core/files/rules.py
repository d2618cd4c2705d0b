"""Checks a user's files against what the app accepts, before and after download, without any I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.dify.parameters import MB, AppParameters, FileRules
from core.files.kinds import extension, kind_of
from core.files.model import FileKind, FileProblem, IncomingFile

SPEECH_LIMIT = 30 * MB  # /audio-to-text's own cap (413 audio_too_large)

Use = Literal["upload", "transcribe"]


@dataclass(frozen=True, slots=True)
class Planned:
    """One attachment that passed the checks: what it is for and how many bytes it may take."""

    source: IncomingFile
    use: Use
    cap: int  # bytes; the download stops past this


def dify_type(rules: FileRules, natural: FileKind, name: str) -> FileKind | None:
    """The `type` to send for a file of kind `natural`, or None when the app refuses it."""
    if natural != "custom" and natural in rules.allowed_types:
        return natural
    ext = extension(name)
    if "custom" in rules.allowed_types and ext and "." + ext.lower() in rules.allowed_extensions:
        return "custom"  # Dify compares "." + the extension it stores (lower case) with the list verbatim
    return None


def _refused(name: str) -> FileProblem:
    ext = extension(name)
    return FileProblem("type_refused", f"file type of {ext or 'a file'} refused", what=f".{ext}" if ext else "")


def _cap(rules: FileRules, kind: FileKind, platform_limit: int | None) -> int:
    cap = rules.size_limits.get(kind, rules.size_limits.get("document", 15 * MB))
    return min(cap, platform_limit) if platform_limit else cap


def _too_large(cap: int) -> FileProblem:
    return FileProblem("too_large", f"file over {cap} bytes", limit_mb=str(max(1, cap // MB)))


def plan(params: AppParameters, attachments: Sequence[IncomingFile]) -> list[Planned]:
    """What to do with each attachment, or the first FileProblem in the order users can act on."""
    rules = params.files
    speech = [f for f in attachments if f.voice and params.speech_to_text]
    uploads = [f for f in attachments if not (f.voice and params.speech_to_text)]
    if uploads and all(f.voice for f in uploads) and not (rules.enabled and "audio" in rules.allowed_types):
        raise FileProblem("voice_unsupported", "the app neither transcribes nor takes audio")
    if uploads and (not rules.enabled or not rules.local_file):
        raise FileProblem("files_disabled", "the app takes no uploaded files")
    kinds: list[FileKind] = []
    for item in uploads:
        natural = "audio" if item.voice else kind_of(item.name, item.mime, b"")
        if item.voice and "audio" not in rules.allowed_types:
            raise FileProblem("voice_unsupported", "the app neither transcribes nor takes audio")
        if dify_type(rules, natural, item.name) is None:
            raise _refused(item.name)
        kinds.append(natural)
    if len(uploads) > rules.number_limit:
        raise FileProblem("too_many", f"{len(uploads)} files", limit=str(rules.number_limit))
    images = kinds.count("image")
    if images > rules.image_number_limit:
        raise FileProblem("too_many", f"{images} images", limit=str(rules.image_number_limit))
    planned: list[Planned] = []
    for item in speech:
        cap = min(SPEECH_LIMIT, item.platform_limit) if item.platform_limit else SPEECH_LIMIT
        if item.size is not None and item.size > cap:
            raise _too_large(cap)
        planned.append(Planned(source=item, use="transcribe", cap=cap))
    for item, kind in zip(uploads, kinds, strict=True):
        cap = _cap(rules, kind, item.platform_limit)
        if item.size is not None and item.size > cap:
            raise _too_large(cap)
        planned.append(Planned(source=item, use="upload", cap=cap))
    return planned


def check_downloaded(rules: FileRules, item: Planned, *, name: str, head: bytes, size: int) -> FileKind:
    """The Dify `type` of a downloaded file, judged by its bytes; FileProblem when the app refuses it."""
    natural = kind_of(name, item.source.mime, head)
    sent = dify_type(rules, natural, name)
    if sent is None:
        raise _refused(name)
    cap = _cap(rules, natural, item.source.platform_limit)
    if size > cap:
        raise _too_large(cap)
    return sent
