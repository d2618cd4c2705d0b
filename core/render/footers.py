"""The quiet lines that end a completed answer: its sources and its run details (tokens, price, time, steps)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from core.replies import Citation, Usage
from core.texts import Lang, text

UsageMode = Literal["off", "tokens", "full"]

_MARKUP = str.maketrans({c: "\\" + c for c in "\\`*_~[]<>"})


def _plain(value: str) -> str:
    """A document name shown as itself: markdown characters in it are escaped, line breaks flattened."""
    return " ".join(value.split()).translate(_MARKUP)


def sources_line(citations: tuple[Citation, ...], lang: Lang = "en") -> str:
    """The "Sources: a.md, b.md" line (names de-duplicated, in order, empty ones skipped); "" without any name."""
    names: list[str] = []
    for citation in citations:
        name = " ".join(citation.title.split())
        if name and name not in names:
            names.append(name)
    if not names:
        return ""
    return text("sources", lang, names=", ".join(_plain(name) for name in names))


def _price(amount: Decimal, currency: str) -> str:
    shown = format(amount.normalize(), "f") if amount else "0"
    if "." in shown:
        whole, fraction = shown.split(".")
        shown = whole + "." + (fraction + "00")[: max(2, len(fraction.rstrip("0")))]
    else:
        shown += ".00"
    code = currency.strip().upper()
    if code == "USD":
        return "$" + shown
    return f"{shown} {code}" if code else shown


def usage_line(usage: Usage, mode: UsageMode, lang: Lang = "en") -> str:
    """One italic line of run details for `mode`; parts that are unknown are left out, "" when none is known."""
    if mode == "off":
        return ""
    parts: list[str] = []
    if usage.total_tokens > 0:
        parts.append(text("usage_tokens", lang, count=f"{usage.total_tokens:,}"))
    if mode == "full":
        if usage.total_price is not None and usage.total_price > 0:
            parts.append(_price(usage.total_price, usage.currency))
        if usage.elapsed is not None and usage.elapsed > 0:
            parts.append(text("usage_seconds", lang, seconds=f"{usage.elapsed:.1f}"))
        if usage.steps > 0:
            key = "usage_step" if usage.steps == 1 else "usage_steps"
            parts.append(text(key, lang, count=str(usage.steps)))
    if not parts:
        return ""
    return "_" + " · ".join(parts) + "_"
