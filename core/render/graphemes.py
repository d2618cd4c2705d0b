"""Character classes for cutting text: wide (CJK) characters and grapheme cluster boundaries."""

from __future__ import annotations

import unicodedata

__all__ = ["ZWJ", "is_extender", "is_grapheme_boundary", "is_regional_indicator", "is_wide"]

ZWJ = "\u200d"


def is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def is_regional_indicator(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def is_extender(ch: str) -> bool:
    """True for characters that attach to the previous one (marks, selectors, modifiers, ZWJ, tags)."""
    if ch == ZWJ or "\U0001f3fb" <= ch <= "\U0001f3ff" or "\U000e0020" <= ch <= "\U000e007f":
        return True
    return unicodedata.category(ch) in ("Mn", "Me", "Mc")


def is_grapheme_boundary(text: str, p: int) -> bool:
    """Approximate extended grapheme cluster boundary test between text[p-1] and text[p]."""
    prev, cur = text[p - 1], text[p]
    if prev == "\r" and cur == "\n":
        return False
    if prev == ZWJ or is_extender(cur):
        return False
    if is_regional_indicator(prev) and is_regional_indicator(cur):
        run = 0
        i = p - 1
        while i >= 0 and is_regional_indicator(text[i]):
            run += 1
            i -= 1
        return run % 2 == 0
    return True
