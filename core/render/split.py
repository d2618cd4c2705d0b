"""Cut long Markdown into message-sized pieces without breaking code fences, words or characters."""

from __future__ import annotations

from dataclasses import dataclass

from core.render.fences import close_open_fence, code_fence_ranges, open_fence
from core.render.splitter import Measure, Splitter

__all__ = [
    "Cut",
    "Measure",
    "close_open_fence",
    "code_fence_ranges",
    "open_fence",
    "split_markdown",
]


@dataclass(frozen=True, slots=True)
class Cut:
    """One split of a Markdown text."""

    head: str
    """Markdown that fits: complete on its own (a code fence cut here is closed)."""
    tail: str
    """The rest, to continue in a new message (a cut fence is reopened).

    Empty only when nothing but whitespace followed the head."""


def split_markdown(text: str, *, limit: int, measure: Measure) -> Cut | None:
    """Return None when measure(text) <= limit; else the longest head with measure(head) <= limit.

    The cut prefers, in order: a paragraph break outside code fences, a line break outside
    fences, a line break inside a fence (closed in the head, reopened in the tail), whitespace or a
    CJK character boundary, and finally a boundary between grapheme clusters. A paragraph or line
    break is only taken when it keeps at least half of what would fit. measure() is called at most
    20 times and is assumed to grow roughly with the text; every returned head has been measured.

    Degenerate inputs: if not even the first character fits, the head is the shortest possible
    one anyway (it then exceeds limit), so that repeated splitting always makes progress; a text of
    nothing but whitespace gives ``Cut("", "")``.
    """
    full = measure(text)
    if full <= limit:
        return None
    splitter = Splitter(text, limit, measure, calls=1)
    if splitter.last_content < 0:
        return Cut("", "")
    if splitter.last_content < splitter.n - 1:
        # Only whitespace follows the content: the stripped text may fit as a whole.
        whole = splitter.head_at(splitter.n)
        if splitter.measure(whole) <= limit:
            return Cut(whole, "")
    splitter.bracket(full)
    p = splitter.choose()
    if p is None:
        p = splitter.snap(splitter.first_content + 1, 0, splitter.n)
        if p is None:
            return Cut(splitter.head_at(splitter.n), "")
    return Cut(splitter.head_at(p), splitter.tail_at(p))
