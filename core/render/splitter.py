"""The search for the cut of a long Markdown text: measured heads, valid cut positions and their quality."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

from core.render.fences import CLOSE, CODE, OPEN, TEXT, Fence, Line, close_open_fence, match_opener, scan
from core.render.graphemes import is_grapheme_boundary, is_wide

__all__ = ["BRACKET_MEASURES", "MAX_MEASURES", "MIN_FILL", "Measure", "Splitter"]

Measure = Callable[[str], int]
"""Length of the rendered form of a Markdown string, in the platform's unit."""

# Upper bound on measure() calls per split (measure renders Markdown, so it is the expensive part).
MAX_MEASURES = 20
# Calls the bracketing phase may use; the rest is kept for choosing the cut inside the bracket.
BRACKET_MEASURES = 14
# A structural cut (paragraph or line break) must keep at least this share of the rendered length
# of the longest fitting head; otherwise a word-level cut closer to the limit wins.
MIN_FILL = 0.5

# Cut quality, best first. Each tier also accepts every cut of a better tier.
_Q_BLOCK = 0  # blank line, heading or code fence boundary, outside a fence
_Q_LINE = 1  # line break outside a fence
_Q_CODE_LINE = 2  # line break inside a fence (the fence is closed and reopened)
_Q_WORD = 3  # after whitespace, or next to a CJK/wide character
_Q_PROTECTED = 4  # like _Q_WORD but inside an inline code span or a link
_Q_HARD = 5  # between any two grapheme clusters

_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t\r\n]|\Z)")
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t\r]*\n)+")
# A run of breakable whitespace between two non-space characters on one line (not NBSP-like).
_WORD_GAP = re.compile(r"(?<=\S)[^\S\n\xa0\u2007\u202f]+(?=\S)")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[[^\]\n]*\]\([^)\n]*\)|<[^<>\s]+>")


class Splitter:
    """The search for the best cut of one text: measured heads, cut positions and their quality."""

    def __init__(self, text: str, limit: int, measure: Measure, *, calls: int = 0) -> None:
        self.text = text
        self.n = len(text)
        self.limit = limit
        self.measure_fn = measure
        self.calls = calls  # measure() calls already spent on this text
        self.cache: dict[int, int] = {}  # cut position -> measure of its head
        self.lines = list(scan(text))
        self.starts = [line.start for line in self.lines]
        for fence in {id(ln.fence): ln.fence for ln in self.lines if ln.fence is not None}.values():
            body = text[fence.body_start : fence.body_end]
            lead = len(body) - len(body.lstrip())
            if lead < len(body):
                fence.first_content = fence.body_start + lead
                fence.last_content = fence.body_start + len(body.rstrip()) - 1
        self.first_content = self.n - len(text.lstrip())
        self.last_content = len(text.rstrip()) - 1
        self.lo = 0  # largest position known to fit (0: none yet)
        self.hi = self.n  # smallest position known not to fit

    # -- measuring -------------------------------------------------------------

    def measure(self, md: str) -> int:
        self.calls += 1
        return self.measure_fn(md)

    def fits(self, p: int) -> bool | None:
        """Whether the head for a cut at p fits; None once the measure budget is spent."""
        value = self.cache.get(p)
        if value is None:
            if self.calls >= MAX_MEASURES:
                return None
            value = self.cache[p] = self.measure(self.head_at(p))
        ok = value <= self.limit
        if ok:
            self.lo = max(self.lo, p)
        elif p > self.lo:
            self.hi = min(self.hi, p)
        return ok

    def fill_floor(self) -> float:
        """Smallest head measure a structural cut may have: a share of the best fitting head."""
        return MIN_FILL * self.cache.get(self.lo, 0)

    # -- cut geometry ----------------------------------------------------------

    def line_of(self, p: int) -> Line:
        return self.lines[bisect.bisect_right(self.starts, p) - 1]

    def fence_at(self, p: int) -> Fence | None:
        line = self.line_of(p)
        return line.fence if line.kind == CODE else None

    def head_at(self, p: int) -> str:
        if p >= self.n:
            return close_open_fence(self.text.rstrip())
        head = self.text[:p].rstrip()
        fence = self.fence_at(p)
        if fence is not None:
            head += "\n" + fence.marker
        return head

    def tail_at(self, p: int) -> str:
        line = self.line_of(p)
        tail = self.text[p:]
        if p > line.start:
            tail = tail.lstrip(" \t")
        m = _LEADING_BLANK_LINES.match(tail)
        if m:
            tail = tail[m.end() :]
        if not tail.strip():
            return ""
        if line.kind == CODE and line.fence is not None:
            tail = line.fence.reopen() + tail
        return tail

    def valid(self, p: int) -> bool:
        """Whether p is an acceptable cut: real content on both sides, no broken fence or character."""
        if p <= self.first_content or p > self.last_content or p >= self.n:
            return False
        text = self.text
        line = self.line_of(p)
        if p == line.start:
            if line.kind == CLOSE:
                return False
        elif line.kind in (OPEN, CLOSE) or not text[line.start : p].strip():
            return False
        if not is_grapheme_boundary(text, p):
            return False
        fence = line.fence if line.kind == CODE else None
        if fence is not None and not (0 <= fence.first_content < p <= fence.last_content):
            return False
        if p > line.start:
            before = text[line.start : p].rstrip()
            after = text[p : line.end].lstrip(" \t").rstrip("\r")
            if fence is None:
                # Neither half of the line may turn into a fence of its own.
                if match_opener(before) is not None or match_opener(after) is not None:
                    return False
            elif fence.is_closer(before) or fence.is_closer(after):
                return False
        return True

    # -- search ----------------------------------------------------------------

    def snap(self, p: int, lo: int, hi: int) -> int | None:
        """Nearest valid cut to p strictly between lo and hi, preferring lower positions."""
        for q in range(p, lo, -1):
            if self.valid(q):
                return q
        for q in range(p + 1, hi):
            if self.valid(q):
                return q
        return None

    def bracket(self, full_measure: int) -> None:
        """Narrow [lo, hi] around the largest fitting position.

        Illinois false position on measure(head) - limit: few calls when the rendered length grows
        about linearly with the raw text, with a bisection step whenever the bracket stops halving.
        """
        lo, hi = 0, self.n
        f_lo, f_hi = -(self.limit + 0.5), full_measure - self.limit - 0.5
        side = 0
        reference, stalled = hi - lo, 0
        while hi - lo > 1 and self.calls < BRACKET_MEASURES:
            if stalled >= 2:
                guess = (lo + hi) // 2
            else:
                guess = lo + round(-f_lo * (hi - lo) / (f_hi - f_lo))
            p = self.snap(min(max(guess, lo + 1), hi - 1), lo, hi)
            if p is None:
                break
            measured = self.cache[p] = self.measure(self.head_at(p))
            value = measured - self.limit - 0.5
            if value < 0:
                lo, f_lo = p, value
                if side < 0:
                    f_hi /= 2
                side = -1
            else:
                hi, f_hi = p, value
                if side > 0:
                    f_lo /= 2
                side = 1
            if (hi - lo) * 2 <= reference:
                reference, stalled = hi - lo, 0
            else:
                stalled += 1
        self.lo, self.hi = lo, hi

    def candidates(self) -> dict[int, int]:
        """Soft cut positions below hi, mapped to their quality."""
        text, hi = self.text, self.hi
        found: dict[int, int] = {}

        def add(p: int, q: int) -> None:
            if p < hi and q < found.get(p, _Q_HARD) and self.valid(p):
                found[p] = q

        prev: Line | None = None
        for line in self.lines:
            if line.start >= hi:
                break
            if prev is not None and not line.blank:
                if line.kind == CODE:
                    add(line.start, _Q_CODE_LINE)
                elif line.kind in (TEXT, OPEN):
                    block = (
                        prev.blank
                        or prev.kind == CLOSE
                        or line.kind == OPEN
                        or _HEADING.match(text, line.start) is not None
                    )
                    add(line.start, _Q_BLOCK if block else _Q_LINE)
            prev = line

        stop = min(self.n, hi + 1)
        line_end = text.find("\n", hi)
        span_stop = self.n if line_end < 0 else line_end
        # Inline code spans and links: each pattern yields sorted, non-overlapping spans.
        spans = [[m.span() for m in pattern.finditer(text, 0, span_stop)] for pattern in (_CODE_SPAN, _LINK)]
        span_starts = [[start for start, _ in found_spans] for found_spans in spans]

        def quality(p: int) -> int:
            if self.fence_at(p) is None:
                for found_spans, starts in zip(spans, span_starts, strict=True):
                    i = bisect.bisect_right(starts, p) - 1
                    if i >= 0 and found_spans[i][0] < p < found_spans[i][1]:
                        return _Q_PROTECTED
            return _Q_WORD

        for m in _WORD_GAP.finditer(text, 0, stop):
            add(m.end(), quality(m.end()))
        if not text[:stop].isascii():
            for p in range(1, min(self.n, hi)):
                a, b = text[p - 1], text[p]
                if (is_wide(a) or is_wide(b)) and not a.isspace() and not b.isspace():
                    add(p, quality(p))
        return found

    def best_in(self, positions: list[int], floor: float) -> int | None:
        """Largest position in sorted positions whose head fits, with a head measure of at least floor."""
        # Positions between lo and hi are unknown: binary search them.
        left = bisect.bisect_right(positions, self.lo)
        right = bisect.bisect_left(positions, self.hi)
        while left < right:
            mid = (left + right) // 2
            ok = self.fits(positions[mid])
            if ok is None:
                return None
            if ok:
                left = mid + 1
            else:
                right = mid
        # Positions at or below lo should fit; verify, allowing for a few non-monotone surprises.
        i = bisect.bisect_right(positions, self.lo) - 1
        for _ in range(3):
            if i < 0:
                return None
            ok = self.fits(positions[i])
            if ok is None:
                return None
            if ok:
                return positions[i] if self.cache[positions[i]] >= floor else None
            i -= 1
        return None

    def choose(self) -> int | None:
        cands = self.candidates()
        ordered = sorted(cands)
        for tier in (_Q_BLOCK, _Q_LINE, _Q_CODE_LINE, _Q_WORD, _Q_PROTECTED):
            positions = [p for p in ordered if cands[p] <= tier]
            best = self.best_in(positions, self.fill_floor() if tier <= _Q_CODE_LINE else 0.0)
            if best is not None:
                return best
            if self.calls >= MAX_MEASURES:
                break
        # Hard cut: the largest fitting grapheme boundary.
        if self.calls < MAX_MEASURES and self.hi - self.lo > 1:
            hard = [p for p in range(self.lo + 1, self.hi) if self.valid(p)]
            self.best_in(hard, 0.0)
        fitting = [p for p, value in self.cache.items() if value <= self.limit and self.valid(p)]
        if not fitting:
            return None
        floor = self.fill_floor()

        def rank(p: int) -> tuple[int, int]:
            tier = cands.get(p, _Q_HARD)
            if tier <= _Q_CODE_LINE and self.cache[p] < floor:
                tier = _Q_HARD
            return tier, -p

        return min(fitting, key=rank)
