"""Convert standard Markdown to Slack mrkdwn for the plain ``text`` field."""

from __future__ import annotations

import re
import unicodedata

from core.render.split import code_fence_ranges, open_fence

__all__ = ["to_mrkdwn"]

_INLINE = re.compile(
    r"""
    (?P<code>(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`))
  | (?P<escape>\\[!-/:-@\[-`{-~])
  | (?P<link>(?P<image>!?)\[(?P<label>[^\]\n]*)\]\((?P<url>[^)\s]+)(?:[ \t]+"[^"\n]*")?\))
  | (?P<autolink><(?P<target>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)>)
  | \*\*\*(?=\S)(?P<bold_italic>.+?)(?<=\S)\*\*\*(?!\*)
  | \*\*(?=\S)(?P<bold>.+?)(?<=\S)\*\*(?!\*)
  | (?<!\w)__(?=\S)(?P<bold2>.+?)(?<=\S)__(?!\w)
  | (?<![\w*])\*(?=[^\s*])(?P<italic>.+?)(?<=[^\s*])\*(?![\w*])
  | (?<![\w_])_(?=[^\s_])(?P<italic2>.+?)(?<=[^\s_])_(?![\w_])
  | ~~(?=\S)(?P<strike>.+?)(?<=\S)~~
  | (?P<special>[&<>])
    """,
    re.VERBOSE,
)
_QUOTE = re.compile(r" {0,3}(?:>[ \t]?)+")
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*")
_RULE = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_BULLET = re.compile(r"(?P<indent>[ \t]*)[-*+][ \t]+(?:\[(?P<task>[ xX])\][ \t]+)?")
_LABEL_MARKUP = re.compile(r"\*\*|__|~~|`")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_wide(ch: str) -> bool:
    return not ch.isspace() and unicodedata.east_asian_width(ch) in ("W", "F")


def _link(url: str, label: str) -> str:
    label = _escape(_LABEL_MARKUP.sub("", label).strip())
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", url):
        # Relative links mean nothing in Slack: keep the text and show the target.
        return f"{label} ({_escape(url)})" if label else _escape(url)
    url = _escape(url)
    return f"<{url}|{label}>" if label and label != url else f"<{url}>"


def _inline(text: str) -> str:
    """Convert the inline Markdown of one line; code spans are kept as they are."""
    out: list[str] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        kind = m.lastgroup
        if kind == "special":
            out.append(_ESCAPES[m.group()])
            continue
        if kind == "escape":
            out.append(_escape(m.group()[1]))
            continue
        if kind == "autolink":
            target = m.group("target")
            if "@" in target and ":" not in target:
                out.append(f"<mailto:{_escape(target)}|{_escape(target)}>")
            else:
                out.append(f"<{_escape(target)}>")
            continue
        if kind in ("link", "label", "url", "image"):
            out.append(_link(m.group("url"), m.group("label")))
            continue
        if kind in ("code", "ticks"):
            token = m.group()
        elif kind == "bold_italic":
            token = f"*_{_inline(m.group(kind))}_*"
        elif kind in ("bold", "bold2"):
            token = f"*{_inline(m.group(kind))}*"
        elif kind in ("italic", "italic2"):
            token = f"_{_inline(m.group(kind))}_"
        else:  # strike
            token = f"~{_inline(m.group('strike'))}~"
        # Slack only sees formatting markers at word boundaries: pad them next to CJK text.
        before = next((piece[-1] for piece in reversed(out) if piece), "")
        if before and _is_wide(before):
            out.append(" ")
        out.append(token)
        if pos < len(text) and _is_wide(text[pos]):
            out.append(" ")
    out.append(text[pos:])
    return "".join(out)


def _line(line: str) -> str:
    quote = _QUOTE.match(line)
    prefix = ""
    if quote:
        # Slack quotes one level deep; the marker itself must stay unescaped.
        prefix, line = "> ", line[quote.end() :]
    heading = _HEADING.fullmatch(line)
    if heading:
        title = _LABEL_MARKUP.sub("", heading.group("text") or "").strip()
        return prefix + (f"*{_inline(title)}*" if title else "")
    if _RULE.fullmatch(line):
        return prefix + "──────────"
    bullet = _BULLET.match(line)
    if bullet:
        task = bullet.group("task")
        mark = "" if task is None else ("☐ " if task == " " else "☑ ")
        return f"{prefix}{bullet.group('indent')}• {mark}{_inline(line[bullet.end() :])}"
    return prefix + _inline(line)


def _text(block: str) -> str:
    return "\n".join(_line(line) for line in block.split("\n"))


def _fence(block: str) -> str:
    """A fenced code block in Slack form: plain ``` markers, no language, body untouched."""
    first_nl = block.find("\n")
    if first_nl < 0:
        return "```"
    body = block[first_nl + 1 :]
    if open_fence(block) is not None:
        return f"```\n{body}"
    last_nl = body.rfind("\n")
    return f"```\n{body[: last_nl + 1]}```"


def to_mrkdwn(md: str) -> str:
    """Convert Markdown to Slack mrkdwn.

    Escapes ``&``, ``<`` and ``>`` outside code; turns ``**x**``/``__x__`` into ``*x*``,
    ``*x*``/``_x_`` into ``_x_``, ``~~x~~`` into ``~x~``, ``[label](url)`` into ``<url|label>``,
    headings into bold lines and ``-``/``*``/``+`` bullets into ``•``; drops the language of code
    fences. Code spans and code block bodies are left exactly as they are.
    """
    out: list[str] = []
    pos = 0
    for start, end, _ in code_fence_ranges(md):
        out.append(_text(md[pos:start]))
        out.append(_fence(md[start:end]))
        pos = end
    out.append(_text(md[pos:]))
    return "".join(out)
