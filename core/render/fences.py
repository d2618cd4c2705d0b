"""Code fence scanning: which lines of Markdown open, continue or close a fenced code block."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "CLOSE",
    "CODE",
    "OPEN",
    "TEXT",
    "Fence",
    "Line",
    "close_open_fence",
    "code_fence_ranges",
    "match_opener",
    "open_fence",
    "scan",
]

TEXT, OPEN, CODE, CLOSE = range(4)

_OPENER = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_CLOSER = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")


@dataclass(slots=True)
class Fence:
    marker: str  # the opening run of backticks or tildes, e.g. "```" or "~~~~"
    info: str  # info string, stripped ("" when absent)
    start: int  # start of the opening line
    body_start: int  # first character after the opening line
    body_end: int  # start of the closing line, or len(text) while open
    first_content: int = -1  # index of the first non-space character of the body, -1 if none
    last_content: int = -1  # index of the last non-space character of the body, -1 if none

    def is_closer(self, line: str) -> bool:
        m = _CLOSER.fullmatch(line)
        if m is None:
            return False
        run = m.group(1)
        return run[0] == self.marker[0] and len(run) >= len(self.marker)

    def reopen(self) -> str:
        return f"{self.marker}{self.info}\n"


@dataclass(frozen=True, slots=True)
class Line:
    start: int
    end: int  # index of the terminating "\n", or len(text)
    kind: int
    fence: Fence | None
    blank: bool


def match_opener(body: str) -> tuple[str, str] | None:
    """(marker, info) when the line body opens a code fence, else None."""
    m = _OPENER.fullmatch(body)
    if m is None:
        return None
    marker, info = m.group(2), m.group(3)
    if marker[0] == "`" and "`" in info:
        return None
    return marker, info.strip()


def scan(text: str) -> Iterator[Line]:
    """Yield the lines of text with their code fence state (CommonMark fences, top level)."""
    fence: Fence | None = None
    pos, n = 0, len(text)
    while True:
        nl = text.find("\n", pos)
        end = n if nl < 0 else nl
        body = text[pos:end]
        if body.endswith("\r"):
            body = body[:-1]
        blank = not body.strip()
        if fence is None:
            opener = match_opener(body)
            if opener is not None:
                fence = Fence(opener[0], opener[1], pos, min(end + 1, n), n)
                yield Line(pos, end, OPEN, fence, blank)
            else:
                yield Line(pos, end, TEXT, None, blank)
        elif fence.is_closer(body):
            fence.body_end = pos
            yield Line(pos, end, CLOSE, fence, blank)
            fence = None
        else:
            yield Line(pos, end, CODE, fence, blank)
        if nl < 0:
            return
        pos = nl + 1


def _last_open_fence(text: str) -> tuple[Fence, Line] | None:
    last: Line | None = None
    for line in scan(text):
        last = line
    if last is None or last.fence is None or last.kind == CLOSE:
        return None
    return last.fence, last


def open_fence(text: str) -> str | None:
    """Info string ("" or e.g. "python") of a code fence left open at the end of text, else None."""
    found = _last_open_fence(text)
    return None if found is None else found[0].info


def close_open_fence(text: str) -> str:
    """Append a closing fence when text ends inside a fenced code block (for interim frames)."""
    found = _last_open_fence(text)
    if found is None:
        return text
    fence, last = found
    tail = text[last.start :]
    stripped = tail.strip()
    if last.kind == CODE and stripped and set(stripped) == {fence.marker[0]} and len(tail) - len(tail.lstrip(" ")) <= 3:
        # A closing fence that has only partly arrived: complete it instead of showing it as code.
        return text[: last.start] + fence.marker
    return text + ("" if text.endswith("\n") else "\n") + fence.marker


def code_fence_ranges(text: str) -> list[tuple[int, int, str]]:
    """Return (start, end, info) of each fenced code block, from its opening line to its closing line.

    ``text[start:end]`` covers the opening line through the closing line (without the final
    newline); a fence left open runs to the end of text.
    """
    ranges: list[tuple[int, int, str]] = []
    for line in scan(text):
        if line.kind == OPEN and line.fence is not None:
            ranges.append((line.fence.start, -1, line.fence.info))
        elif line.kind == CLOSE and line.fence is not None:
            start, _, info = ranges[-1]
            ranges[-1] = (start, line.end, info)
    n = len(text)
    return [(start, n if end < 0 else end, info) for start, end, info in ranges]
