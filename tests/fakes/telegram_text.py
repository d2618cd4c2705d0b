"""The fake Telegram's text rules: parse modes, entities and the errors it answers with, as the Bot API does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

CANT_PARSE_PREFIX = "Bad Request: can't parse entities: "
UNSUPPORTED_PARSE_MODE = "Bad Request: unsupported parse_mode"
_ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "date_time",
    }
)
_BOT_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?")
_MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}")


class ApiError(Exception):
    """An error answer: HTTP status, description and optional response parameters."""

    def __init__(self, status: int, description: str, parameters: JsonDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


# --------------------------------------------------------------------------- text and entities


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def _parse_error(detail: str) -> ApiError:
    return ApiError(400, CANT_PARSE_PREFIX + detail)


class _Output:
    """Accumulates parsed text while tracking the UTF-16 position."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[JsonDict] = []

    def emit(self, text: str) -> None:
        self.parts.append(text)
        self.pos += utf16_len(text)

    def add(self, entity_type: str, start: int, end: int | None = None, **extra: Any) -> None:
        stop = self.pos if end is None else end
        if stop > start:
            self.entities.append({"type": entity_type, "offset": start, "length": stop - start, **extra})

    def result(self) -> tuple[str, list[JsonDict]]:
        return "".join(self.parts), _sorted_entities(self.entities)


def _sorted_entities(entities: list[JsonDict]) -> list[JsonDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_HTML_NAME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9-]*)")
_HTML_ATTR_RE = re.compile(r"\s*([A-Za-z_:][\w:.-]*)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_HTML_ENTITY_RE = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


@dataclass
class _OpenTag:
    name: str
    start: int
    entity: JsonDict | None


def _html_unescape(value: str) -> str:
    return _HTML_ENTITY_RE.sub(lambda m: _decode_html_entity(m.group(1)), value)


def _decode_html_entity(body: str) -> str:
    if body in _HTML_NAMED:
        return _HTML_NAMED[body]
    code = int(body[2:], 16) if body.startswith("#x") else int(body[1:])
    return chr(code)


def _parse_html_tag(src: str, index: int, body: str) -> tuple[str, dict[str, str]]:
    match = _HTML_NAME_RE.match(body)
    if match is None:
        raise _parse_error(f'Unsupported start tag "" at byte offset {_byte_offset(src, index)}')
    name = match.group(1).lower()
    attrs: dict[str, str] = {}
    rest = body[match.end() :].rstrip().removesuffix("/")
    pos = 0
    while pos < len(rest):
        attr = _HTML_ATTR_RE.match(rest, pos)
        if attr is None or attr.end() == pos:
            offset = _byte_offset(src, index)
            raise _parse_error(f"Expected equal sign in declaration of an attribute of the tag at byte offset {offset}")
        raw = attr.group(2) or ""
        if raw[:1] in {'"', "'"}:
            raw = raw[1:-1]
        attrs[attr.group(1).lower()] = _html_unescape(raw)
        pos = attr.end()
    return name, attrs


def _parse_html(src: str) -> tuple[str, list[JsonDict]]:
    out = _Output()
    stack: list[_OpenTag] = []
    i = 0
    while i < len(src):
        char = src[i]
        if char == "&":
            match = _HTML_ENTITY_RE.match(src, i)
            if match:
                out.emit(_decode_html_entity(match.group(1)))
                i = match.end()
                continue
            out.emit(char)
            i += 1
            continue
        if char != "<":
            out.emit(char)
            i += 1
            continue
        end = src.find(">", i)
        if end == -1:
            raise _parse_error(f"Unclosed start tag at byte offset {_byte_offset(src, i)}")
        body = src[i + 1 : end]
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {_byte_offset(src, i)}")
            top = stack.pop()
            if top.name != name:
                raise _parse_error(
                    f'Unmatched end tag at byte offset {_byte_offset(src, i)}, expected "</{top.name}>", '
                    f'found "</{name}>"'
                )
            if top.entity is not None:
                out.add(top.entity.pop("type"), top.start, **top.entity)
        else:
            name, attrs = _parse_html_tag(src, i, body)
            stack.append(_OpenTag(name, out.pos, _html_entity_for(src, i, name, attrs, stack)))
        i = end + 1
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return out.result()


def _html_entity_for(src: str, index: int, name: str, attrs: dict[str, str], stack: list[_OpenTag]) -> JsonDict | None:
    entity_type = _HTML_TAGS.get(name)
    if entity_type is None:
        raise _parse_error(f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, index)}')
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise _parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(src, index)}')
    if name == "a":
        href = attrs.get("href", "")
        return {"type": "text_link", "url": href} if href else None
    if name == "tg-emoji":
        emoji_id = attrs.get("emoji-id", "")
        if not emoji_id:
            raise _parse_error(
                f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {_byte_offset(src, index)}'
            )
        return {"type": "custom_emoji", "custom_emoji_id": emoji_id}
    if name == "blockquote" and "expandable" in attrs:
        return {"type": "expandable_blockquote"}
    if name == "code" and stack and stack[-1].name == "pre" and stack[-1].entity is not None:
        css_class = attrs.get("class", "")
        if css_class.startswith("language-") and len(css_class) > len("language-"):
            stack[-1].entity["language"] = css_class.removeprefix("language-")
        return None
    return {"type": entity_type}


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


@dataclass
class _OpenMarkdown:
    entity_type: str
    start: int
    src_index: int
    language: str = ""


def _reserved_error(char: str) -> ApiError:
    return _parse_error(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def _unclosed_error(src: str, entity: _OpenMarkdown) -> ApiError:
    name = _MDV2_NAMES[entity.entity_type]
    return _parse_error(f"Can't find end of {name} entity at byte offset {_byte_offset(src, entity.src_index)}")


def _read_link_target(src: str, index: int) -> tuple[str, int]:
    """Read `(url)` starting at `src[index] == "("`; return the URL and the index after `)`."""
    chars: list[str] = []
    i = index + 1
    while i < len(src):
        char = src[i]
        if char == "\\" and i + 1 < len(src):
            chars.append(src[i + 1])
            i += 2
            continue
        if char == ")":
            return "".join(chars), i + 1
        chars.append(char)
        i += 1
    raise _parse_error(f"Can't find end of a url at byte offset {_byte_offset(src, index)}")


def _parse_markdown_v2(src: str) -> tuple[str, list[JsonDict]]:
    out = _Output()
    stack: list[_OpenMarkdown] = []
    quote_start: int | None = None
    i = 0
    while i < len(src):
        char = src[i]
        in_code = bool(stack) and stack[-1].entity_type in {"code", "pre"}
        if char == "\\":
            if i + 1 < len(src) and 0 < ord(src[i + 1]) <= 126:
                out.emit(src[i + 1])
                i += 2
                continue
            raise _reserved_error("\\")
        if in_code:
            top = stack[-1]
            if char == "`" and top.entity_type == "code":
                stack.pop()
                out.add("code", top.start)
                i += 1
            elif char == "`" and src.startswith("```", i):
                stack.pop()
                extra: JsonDict = {"language": top.language} if top.language else {}
                out.add("pre", top.start, **extra)
                i += 3
            elif char == "`":
                raise _reserved_error("`")
            else:
                out.emit(char)
                i += 1
            continue
        at_line_start = i == 0 or src[i - 1] == "\n"
        if char == ">" and at_line_start:
            if quote_start is None:
                quote_start = out.pos
            i += 1
            continue
        if char == "\n":
            out.emit(char)
            i += 1
            if quote_start is not None and not src.startswith(">", i):
                if stack:
                    raise _unclosed_error(src, stack[-1])
                out.add("blockquote", quote_start, end=out.pos - 1)
                quote_start = None
            continue
        if char == "`":
            if src.startswith("```", i):
                newline = src.find("\n", i)
                first_line = src[i + 3 : newline] if newline != -1 else "`"
                if "`" in first_line:
                    stack.append(_OpenMarkdown("pre", out.pos, i))
                    i += 3
                else:
                    stack.append(_OpenMarkdown("pre", out.pos, i, first_line.strip()))
                    i = newline + 1
            else:
                stack.append(_OpenMarkdown("code", out.pos, i))
                i += 1
            continue
        if char in "*_~|":
            if char == "|" and not src.startswith("||", i):
                raise _reserved_error("|")
            if char == "_" and src.startswith("__", i):
                entity_type, width = "underline", 2
            else:
                entity_type, width = {"*": ("bold", 1), "_": ("italic", 1), "~": ("strikethrough", 1)}.get(
                    char, ("spoiler", 2)
                )
            if stack and stack[-1].entity_type == entity_type:
                out.add(entity_type, stack.pop().start)
            else:
                stack.append(_OpenMarkdown(entity_type, out.pos, i))
            i += width
            continue
        if char == "[" or (char == "!" and src.startswith("![", i)):
            kind = "text_link" if char == "[" else "custom_emoji"
            stack.append(_OpenMarkdown(kind, out.pos, i))
            i += 1 if char == "[" else 2
            continue
        if char == "]" and stack and stack[-1].entity_type in {"text_link", "custom_emoji"}:
            if not src.startswith("(", i + 1):
                raise _reserved_error("]")
            top = stack.pop()
            url, i = _read_link_target(src, i + 1)
            if top.entity_type == "custom_emoji":
                emoji_id = url.removeprefix("tg://emoji?id=")
                out.add("custom_emoji", top.start, custom_emoji_id=emoji_id)
            else:
                out.add("text_link", top.start, url=url)
            continue
        if char in _MDV2_RESERVED:
            raise _reserved_error(char)
        out.emit(char)
        i += 1
    if stack:
        raise _unclosed_error(src, stack[-1])
    if quote_start is not None:
        out.add("blockquote", quote_start)
    return out.result()


def _parse_markdown_legacy(src: str) -> tuple[str, list[JsonDict]]:
    out = _Output()
    i = 0
    while i < len(src):
        char = src[i]
        if char == "\\" and i + 1 < len(src) and src[i + 1] in "_*`[":
            out.emit(src[i + 1])
            i += 2
            continue
        if char in "*_`[":
            delimiter = "```" if src.startswith("```", i) else ("]" if char == "[" else char)
            opener = 3 if delimiter == "```" else 1
            end = src.find(delimiter, i + opener)
            if end == -1:
                raise _parse_error(f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}")
            inner = src[i + opener : end]
            start = out.pos
            if delimiter == "]":
                if not src.startswith("(", end + 1):
                    raise _parse_error(f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}")
                url, i = _read_link_target(src, end + 1)
                out.emit(inner)
                out.add("text_link", start, url=url)
                continue
            entity_type = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}[delimiter]
            out.emit(inner)
            out.add(entity_type, start)
            i = end + len(delimiter)
            continue
        out.emit(char)
        i += 1
    return out.result()


def _validate_entities(text: str, entities: Any) -> list[JsonDict]:
    if not isinstance(entities, list):
        raise ApiError(400, "Bad Request: can't parse entities JSON object")
    size = utf16_len(text)
    result: list[JsonDict] = []
    for entity in entities:
        if not isinstance(entity, dict):
            raise ApiError(400, "Bad Request: can't parse MessageEntity JSON object")
        entity_type = entity.get("type")
        offset, length = entity.get("offset"), entity.get("length")
        if entity_type not in _ENTITY_TYPES:
            raise _parse_error(f'Unsupported entity type "{entity_type}"')
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
            raise _parse_error(f"Wrong offset or length of a {entity_type} entity")
        if offset + length > size:
            raise _parse_error(
                f"Entity {entity_type} at offset {offset} with length {length} is beyond the end of the text"
            )
        if entity_type == "text_link" and not entity.get("url"):
            raise _parse_error(f"Entity text_link at offset {offset} has no URL")
        if length == 0:
            continue
        result.append({key: value for key, value in entity.items() if value is not None})
    return _sorted_entities(result)


def _strip(text: str, entities: list[JsonDict]) -> tuple[str, list[JsonDict]]:
    """Trim surrounding whitespace as Telegram does and shift/clip entities accordingly."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = len(text) - len(text.lstrip())
    size = utf16_len(stripped)
    result: list[JsonDict] = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(size, entity["offset"] + entity["length"] - lead)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


def render_text(text: str, *, entities: Any = None, parse_mode: Any = None) -> tuple[str, list[JsonDict]]:
    """Turn send parameters into (text, entities) the way Telegram stores them; raises ApiError."""
    if entities is None:
        text = text.replace("\r", "")  # Telegram drops carriage returns; aiogram's MarkdownV2 relies on it
    if entities is not None:
        parsed = text, _validate_entities(text, entities)
    elif parse_mode:
        mode = str(parse_mode).lower()
        if mode == "html":
            parsed = _parse_html(text)
        elif mode == "markdownv2":
            parsed = _parse_markdown_v2(text)
        elif mode == "markdown":
            parsed = _parse_markdown_legacy(text)
        else:
            raise ApiError(400, UNSUPPORTED_PARSE_MODE)
    else:
        parsed = text, []
    return _strip(*parsed)


def _auto_entities(text: str) -> list[JsonDict]:
    entities: list[JsonDict] = []
    command = _BOT_COMMAND_RE.match(text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command.group())})
    for mention in _MENTION_RE.finditer(text):
        offset = utf16_len(text[: mention.start()])
        entities.append({"type": "mention", "offset": offset, "length": utf16_len(mention.group())})
    return entities
