"""Render Markdown as Telegram text plus message entities, measured in UTF-16 code units."""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pyromark
import telegramify_markdown
from aiogram.types import MessageEntity

__all__ = [
    "MAX_ENTITIES",
    "TelegramText",
    "measure",
    "measure_interim",
    "plain",
    "render_interim",
    "render_markdown",
    "utf16_len",
]

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

Raw = dict[str, Any]
"""One entity as the Bot API spells it."""


class TelegramText:
    """Message text and the entities that format it (offsets in UTF-16 code units).

    The hot path only needs the entities as the JSON the Bot API takes: `entities_json()` gives that
    without building a pydantic model per entity; `entities` builds the aiogram objects on first use."""

    __slots__ = ("_entities", "_json", "_raw", "text")

    def __init__(self, text: str, entities: list[MessageEntity] | None = None, *, raw: list[Raw] | None = None) -> None:
        self.text = text
        self._entities = entities
        self._raw = raw
        self._json: str | None = None

    @property
    def entities(self) -> list[MessageEntity]:
        if self._entities is None:
            self._entities = [MessageEntity(**item) for item in self._raw or ()]
        return self._entities

    def entities_json(self) -> str | None:
        """The entities as the Bot API's `entities` parameter, or None when there are none."""
        if self._json is None:
            raw = self._raw if self._raw is not None else [_entity_dict(e) for e in self.entities]
            self._json = json.dumps(raw, ensure_ascii=False, separators=(",", ":")) if raw else ""
        return self._json or None

    def with_suffix(self, suffix: str) -> TelegramText:
        """The same formatting with `suffix` after the text (outside every entity)."""
        copy = TelegramText(self.text + suffix, self._entities, raw=self._raw)
        copy._json = self._json
        return copy

    def _items(self) -> list[Raw]:
        return self._raw if self._raw is not None else [_entity_dict(e) for e in self.entities]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelegramText):
            return NotImplemented
        return self.text == other.text and self._items() == other._items()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TelegramText(text={self.text!r}, entities={self._items()!r})"


def _entity_dict(entity: MessageEntity) -> Raw:
    return entity.model_dump(exclude_none=True)


def utf16_len(text: str) -> int:
    """Length of text in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def plain(md: str) -> TelegramText:
    """The plain fallback: the raw Markdown as text, without entities."""
    return TelegramText(md, raw=[])


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


@functools.lru_cache(maxsize=32)
def render_markdown(md: str) -> TelegramText:
    """Convert Markdown to text and entities; never raises (falls back to the plain text).
    Cached: the renderer measures a frame and then sends the same frame, with no other frame rendered in
    between, so a small cache gets every hit (a large one only holds answers' texts in memory)."""
    try:
        source = _keep_html_visible(md)
    except Exception:
        source = md
    try:
        text, raw = telegramify_markdown.convert(source)
        if not text.strip() and md.strip():
            return plain(md)
        size = utf16_len(text)
        entities: list[Raw] = []
        for entity in sorted(raw, key=lambda e: (e.offset, -e.length)):
            if entity.offset < 0 or entity.length <= 0 or entity.offset + entity.length > size:
                continue
            if entity.type == "text_link" and not _usable_url(entity.url):
                continue
            entities.append(entity.to_dict())
            if len(entities) >= MAX_ENTITIES:
                break
        return TelegramText(text, raw=entities)
    except Exception:
        return plain(md)


def measure(md: str) -> int:
    """Length of the rendered Markdown in UTF-16 code units."""
    return utf16_len(render_markdown(md).text)


# A block that may continue the construct of the block before it (a list, an indented or fenced code
# block, a quote, a table), or text whose meaning depends on other blocks (reference links, footnotes,
# raw HTML, display math): those answers are rendered whole.
_JOINED_BLOCK = re.compile(r" {0,3}(?:[-*+](?:\s|$)|\d+[.)](?:\s|$)|[>|])| {4}|\t")
_WHOLE_ONLY = ("```", "~~~", "]:", "[^", "<", "$$")


@functools.lru_cache(maxsize=32)
def render_interim(md: str) -> TelegramText:
    """Like `render_markdown`, paragraph by paragraph, each paragraph rendered once and then cached.

    A streamed answer is rendered again for every frame while only its last paragraph changes; this
    keeps that cost to the new text. Answers whose paragraphs depend on each other are rendered whole,
    and final frames always are (`render_markdown`), so only a passing frame could ever differ. Cached like
    `render_markdown`: a frame is measured and then sent."""
    if "\n\n" not in md or any(sign in md for sign in _WHOLE_ONLY):
        return render_markdown(md)
    blocks = [block for block in md.split("\n\n") if block.strip()]
    if any(_JOINED_BLOCK.match(block) for block in blocks[1:]):
        return render_markdown(md)
    texts: list[str] = []
    entities: list[Raw] = []
    offset = 0
    for block in blocks:
        part = _render_block(block)
        if part is None:
            return render_markdown(md)
        if texts:
            offset += 2  # the "\n\n" between paragraphs
        texts.append(part.text)
        for entity in part._raw or ():
            if len(entities) < MAX_ENTITIES:
                entities.append({**entity, "offset": entity["offset"] + offset})
        offset += utf16_len(part.text)
    return TelegramText("\n\n".join(texts), raw=entities)


@functools.lru_cache(maxsize=2048)
def _render_block(block: str) -> TelegramText | None:
    """One paragraph, or None when it does not render as one paragraph of text."""
    part = render_markdown.__wrapped__(block)
    if part._raw is None or not part.text or part.text != part.text.strip("\n"):
        return None
    return part


def measure_interim(md: str) -> int:
    """Length of `render_interim(md)` in UTF-16 code units."""
    return utf16_len(render_interim(md).text)
