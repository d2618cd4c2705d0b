"""What the Dify app accepts (GET /parameters), parsed defensively and cached with a refresh."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.dify.errors import DifyError
from core.files.model import FileKind

if TYPE_CHECKING:
    from core.dify.client import DifyClient

log = logging.getLogger(__name__)

MB = 1024 * 1024
FILE_TYPES = frozenset({"image", "document", "audio", "video", "custom"})
# Dify's defaults (MB) when system_parameters does not say.
_DEFAULT_LIMITS_MB: dict[FileKind, int] = {"image": 10, "document": 15, "audio": 50, "video": 100, "custom": 15}
_LIMIT_KEYS: dict[FileKind, str] = {
    "image": "image_file_size_limit",
    "document": "file_size_limit",
    "audio": "audio_file_size_limit",
    "video": "video_file_size_limit",
    "custom": "file_size_limit",
}
_DEFAULT_NUMBER_LIMIT = 3


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _positive_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return default


def _strings(value: Any) -> frozenset[str]:
    return frozenset(str(item) for item in value if isinstance(item, str)) if isinstance(value, list) else frozenset()


def _enabled(value: Any) -> bool:
    return _mapping(value).get("enabled") is True


def _default_sizes() -> dict[FileKind, int]:
    return {kind: mb * MB for kind, mb in _DEFAULT_LIMITS_MB.items()}


@dataclass(frozen=True, slots=True)
class FileRules:
    """The app's `file_upload` settings and size limits (bytes) as the bot enforces them."""

    enabled: bool = False
    allowed_types: frozenset[str] = frozenset()
    allowed_extensions: frozenset[str] = frozenset()  # verbatim, e.g. ".pdf" (Dify compares case-sensitively)
    number_limit: int = _DEFAULT_NUMBER_LIMIT
    image_number_limit: int = _DEFAULT_NUMBER_LIMIT
    local_file: bool = True
    size_limits: dict[FileKind, int] = field(default_factory=_default_sizes)

    @classmethod
    def parse(cls, file_upload: Any, system: Any) -> FileRules:
        """Read `file_upload` (new style, or an old chat app's `image` block) and `system_parameters`."""
        config = _mapping(file_upload)
        image = _mapping(config.get("image"))
        sizes = _default_sizes()
        for source in (_mapping(config.get("fileUploadConfig")), _mapping(system)):
            for kind, key in _LIMIT_KEYS.items():
                if key in source:
                    sizes[kind] = _positive_int(source.get(key), _DEFAULT_LIMITS_MB[kind]) * MB
        image_limit = _positive_int(image.get("number_limits"), 0)
        if "enabled" in config:
            methods = config.get("allowed_file_upload_methods", config.get("allowed_upload_methods"))
            types = _strings(config.get("allowed_file_types")) & FILE_TYPES
            number = _positive_int(config.get("number_limits"), image_limit or _DEFAULT_NUMBER_LIMIT)
            return cls(
                enabled=config.get("enabled") is True,
                allowed_types=types,
                allowed_extensions=_strings(config.get("allowed_file_extensions")),
                number_limit=number,
                image_number_limit=image_limit or number,
                local_file=True if methods is None else "local_file" in _strings(methods),
                size_limits=sizes,
            )
        methods = image.get("transfer_methods")
        number = image_limit or _DEFAULT_NUMBER_LIMIT
        return cls(
            enabled=image.get("enabled") is True,
            allowed_types=frozenset({"image"}),
            number_limit=number,
            image_number_limit=number,
            local_file=True if methods is None else "local_file" in _strings(methods),
            size_limits=sizes,
        )

    def limit_mb(self, kind: FileKind) -> int:
        return self.size_limits.get(kind, _DEFAULT_LIMITS_MB["document"] * MB) // MB


@dataclass(frozen=True, slots=True)
class AppParameters:
    """GET /parameters, reduced to what the bot uses; odd or missing fields fall back to safe defaults."""

    files: FileRules = field(default_factory=FileRules)
    speech_to_text: bool = False
    opening_statement: str = ""
    suggested_questions: tuple[str, ...] = ()
    suggested_after_answer: bool = False

    @classmethod
    def parse(cls, data: Any) -> AppParameters:
        source = _mapping(data)
        opening = source.get("opening_statement")
        questions = source.get("suggested_questions")
        return cls(
            files=FileRules.parse(source.get("file_upload"), source.get("system_parameters")),
            speech_to_text=_enabled(source.get("speech_to_text")),
            opening_statement=opening if isinstance(opening, str) else "",
            suggested_questions=tuple(q for q in questions if isinstance(q, str) and q)
            if isinstance(questions, list)
            else (),
            suggested_after_answer=_enabled(source.get("suggested_questions_after_answer")),
        )


class ParametersCache:
    """The app's parameters, fetched on first use and refreshed after `ttl`; a failed refresh keeps the last."""

    def __init__(self, dify: DifyClient, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._dify = dify
        self._ttl = ttl
        self._clock = clock
        self._value: AppParameters | None = None
        self._fetched_at = 0.0

    async def get(self) -> AppParameters:
        """The current parameters; raises the DifyError of a first fetch that failed."""
        now = self._clock()
        if self._value is not None and now - self._fetched_at < self._ttl:
            return self._value
        try:
            value = AppParameters.parse(await self._dify.parameters())
        except DifyError as exc:
            if self._value is None:
                raise
            log.warning("could not refresh the app's parameters, keeping the last ones: %r", exc)
            self._fetched_at = now  # try again after another ttl, not on every message
            return self._value
        self._value, self._fetched_at = value, now
        return value
