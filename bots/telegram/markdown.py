"""Render Markdown as Telegram text plus message entities, measured in UTF-16 code units."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyromark
import telegramify_markdown
from aiogram.types import MessageEntity

__all__ = ["MAX_ENTITIES", "TelegramText", "measure", "plain", "render_markdown", "utf16_len"]

MAX_ENTITIES = 100
"""Telegram silently ignores entities past about the hundredth."""

# "<" that starts a tag, comment or declaration inside a stretch the parser read as raw HTML.
_TAG_START = re.compile(rb"<(?=[A-Za-z/!?])")
# The parser options telegramify-markdown 1.x uses, so raw HTML is found where it finds it.
_OPTIONS = (
    pyromark.Options.ENABLE_TABLES
    | pyromark.Options.ENABLE_STRIKETHROUGH
    | pyromark.Options.ENABLE_TASKLISTS
    | pyromark.Options.ENABLE_MATH
)
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+(?::\d+)?(?:[/?#]\S*)?", re.ASCII)


@dataclass(frozen=True, slots=True)
class TelegramText:
    """Message text and the entities that format it (offsets in UTF-16 code units)."""

    text: str
    entities: list[MessageEntity]


def utf16_len(text: str) -> int:
    """Length of text in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def plain(md: str) -> TelegramText:
    """The plain fallback: the raw Markdown as text, without entities."""
    return TelegramText(md, [])


def _keep_html_visible(md: str) -> str:
    """Escape raw HTML so it shows as text: the renderer drops it ("List<String>" would lose "<String>").

    The Markdown parser itself locates the HTML, so code spans and code blocks stay untouched.
    An inline ``<br>`` becomes a space.
    """
    if "<" not in md:
        return md
    for _ in range(4):  # escaping a block's first tag can expose more HTML; re-parse until none is left
        source = md.encode("utf-8")
        edits: list[tuple[int, int, bytes]] = []
        for payload, span in pyromark.events_with_range(md, options=_OPTIONS):
            if not isinstance(payload, dict):
                continue
            start, end = span["start"], span["end"]
            if "InlineHtml" in payload and _LINE_BREAK_TAG.fullmatch(str(payload["InlineHtml"]).strip()):
                spaced = source[start - 1 : start].isspace() or source[end : end + 1].isspace()
                edits.append((start, end, b"" if spaced else b" "))
            elif "InlineHtml" in payload or "Html" in payload:
                edits.extend((m.start(), m.start(), b"\\") for m in _TAG_START.finditer(source, start, end))
        if not edits:
            break
        out: list[bytes] = []
        cursor = 0
        for start, end, replacement in sorted(edits):
            out += (source[cursor:start], replacement)
            cursor = end
        out.append(source[cursor:])
        md = b"".join(out).decode("utf-8")
    return md


def _usable_url(url: str | None) -> bool:
    """Whether Telegram accepts url for a text_link (it rejects links without a host)."""
    if not url or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme in ("http", "https"):
        return bool(parts.hostname)
    if parts.scheme == "tg":
        return True
    return not parts.scheme and _DOMAIN.fullmatch(url) is not None


@functools.lru_cache(maxsize=256)
def render_markdown(md: str) -> TelegramText:
    """Convert Markdown to text and entities; never raises (falls back to the plain text).
    Cached: the renderer measures a frame and then sends the same frame."""
    try:
        source = _keep_html_visible(md)
    except Exception:
        source = md
    try:
        text, raw = telegramify_markdown.convert(source)
        if not text.strip() and md.strip():
            return plain(md)
        size = utf16_len(text)
        entities: list[MessageEntity] = []
        for entity in sorted(raw, key=lambda e: (e.offset, -e.length)):
            if entity.offset < 0 or entity.length <= 0 or entity.offset + entity.length > size:
                continue
            if entity.type == "text_link" and not _usable_url(entity.url):
                continue
            entities.append(MessageEntity(**entity.to_dict()))
            if len(entities) >= MAX_ENTITIES:
                break
        return TelegramText(text, entities)
    except Exception:
        return plain(md)


def measure(md: str) -> int:
    """Length of the rendered Markdown in UTF-16 code units."""
    return utf16_len(render_markdown(md).text)
