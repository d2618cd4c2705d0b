"""Tests for splitting long Markdown into message-sized pieces."""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable

import pytest

from bots.telegram.markdown import measure as telegram_measure
from core.render.split import Cut, close_open_fence, code_fence_ranges, open_fence, split_markdown

# --- generated answers -----------------------------------------------------------------------

_WORDS = (
    "the quick brown fox jumps over a lazy dog while the stream keeps sending tokens to render "
    "split limit fence python answer message"
).split()
_CJK = "我们需要把这个很长的回答拆分成多条消息并且保持代码块完整不要在词语中间断开这是一个测试"
_EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "🇺🇸", "1️⃣", "❤️", "é", "e\u0301", "🏳️‍🌈", "𝒳"]
_LANGS = ["python", "", "js", "rust"]


def _word(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.03:
        return rng.choice("xqz") * rng.randint(40, 300)  # a long word
    if r < 0.08:
        return rng.choice(_EMOJI)
    if r < 0.11:
        return f"**{rng.choice(_WORDS)} {rng.choice(_WORDS)}**"
    if r < 0.13:
        return f"`{rng.choice(_WORDS)} {rng.choice(_WORDS)}`"
    if r < 0.15:
        return f"[{rng.choice(_WORDS)} {rng.choice(_WORDS)}](https://example.com/{rng.choice(_WORDS)})"
    return rng.choice(_WORDS)


def _paragraph(rng: random.Random) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(3, 120)))


def _chinese(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(20, 400)):
        out.append(rng.choice(_CJK))
        if rng.random() < 0.08:
            out.append(rng.choice("，。"))
        if rng.random() < 0.03:
            out.append(rng.choice(_EMOJI))
    return "".join(out)


def _code(rng: random.Random) -> str:
    fence = rng.choice(["```", "```", "~~~", "````"])
    lines = []
    for _ in range(rng.randint(1, 80)):
        r = rng.random()
        if r < 0.05:
            lines.append("")
        elif r < 0.10:
            lines.append("y" * rng.randint(40, 250))  # a long line without spaces
        elif fence == "````" and r < 0.15:
            lines.append("```")  # not a closer of a four-backtick fence
        else:
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12)))
            lines.append("    " * rng.randint(0, 2) + words)
    return f"{fence}{rng.choice(_LANGS)}\n" + "\n".join(lines) + f"\n{fence}"


def _listing(rng: random.Random) -> str:
    items = []
    for _ in range(rng.randint(2, 10)):
        marker = rng.choice(["-", "*", "1."])
        items.append(f"{'  ' * rng.randint(0, 1)}{marker} {_paragraph(rng)[: rng.randint(10, 200)]}")
    return "\n".join(items)


def _table(rng: random.Random) -> str:
    rows = [f"| {rng.choice(_WORDS)} | {rng.choice(_WORDS)} |" for _ in range(rng.randint(1, 8))]
    return "| a | b |\n|---|---|\n" + "\n".join(rows)


def _block(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.30:
        return _paragraph(rng)
    if r < 0.45:
        return _chinese(rng)
    if r < 0.65:
        return _code(rng)
    if r < 0.75:
        return _listing(rng)
    if r < 0.82:
        return f"{'#' * rng.randint(1, 4)} {_paragraph(rng)[:60]}"
    if r < 0.88:
        return "> " + _paragraph(rng)[:300]
    if r < 0.93:
        return _table(rng)
    return _paragraph(rng) + "\n" + _paragraph(rng)


def _answer(rng: random.Random, size: int) -> str:
    out = _block(rng)
    while len(out) < size:
        out += rng.choice(["\n\n", "\n\n", "\n", "\n\n\n", "\n \n"]) + _block(rng)
    return out


# --- checking one cut ------------------------------------------------------------------------

_FENCE_RUN = re.compile(r"`{3,}|~{3,}")
_FENCE_LINE = re.compile(r" {0,3}(?:`{3,}|~{3,})")
_BREAKABLE_GAP = re.compile(r"(?<=\S)[^\S\n\xa0\u2007\u202f]+(?=\S)")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() and unicodedata.east_asian_width(ch) not in ("W", "F")


def _check_gap(rest: str, head: str, tail: str) -> str:
    """Check the text between head and tail in rest is whitespace; return the kind of cut."""
    assert rest.startswith(head)
    assert rest.endswith(tail)
    gap = rest[len(head) : len(rest) - len(tail)]
    assert not gap.strip()
    if gap:
        return "paragraph" if gap.count("\n") > 1 else "line" if "\n" in gap else "space"
    if _is_word_char(head[-1]) and _is_word_char(tail[0]):
        # Inside a word: only allowed when no space was available before the limit.
        for line in rest[: len(head)].lstrip().split("\n"):
            if _FENCE_LINE.match(line):
                continue  # a fence line is never cut
            for gap_match in _BREAKABLE_GAP.finditer(line):
                # A cut that would leave a line starting with a fence does not count.
                assert _FENCE_RUN.match(line, gap_match.end()), (
                    f"cut inside a word although a space exists: {head[-30:]!r}"
                )
    return "hard"


def _undo(rest: str, cut: Cut) -> tuple[str, str, str]:
    """Check cut against the text it came from; return head and tail without fence repairs, and the kind."""
    head, tail = cut.head, cut.tail
    if not tail:
        assert head in (rest.rstrip(), close_open_fence(rest.rstrip()))
        return rest.rstrip(), "", "end"
    # A code fence cut: closed in the head, reopened in the tail with the same language.
    first_line, _, body = tail.partition("\n")
    marker = _FENCE_RUN.match(first_line)
    if marker is not None and head.endswith("\n" + marker.group()):
        head_core = head[: -len(marker.group()) - 1]
        gap = rest[len(head_core) : len(rest) - len(body)]
        if (
            open_fence(head_core) == first_line[marker.end() :]
            and rest.startswith(head_core)
            and rest.endswith(body)
            and not gap.strip()
        ):
            return head_core, body, "fence-" + _check_gap(rest, head_core, body)
    assert rest.endswith(tail), f"tail neither a suffix nor a reopened fence: {tail[:40]!r}"
    return head, tail, _check_gap(rest, head, tail)


def _split_all(text: str, limit: int, measure: Callable[[str], int], kinds: set[str] | None = None) -> list[str]:
    pieces: list[str] = []
    rest = text
    reopened = 0  # length of the fence line the splitter put in front of rest
    for _ in range(10_000):
        calls = 0

        def counted(md: str) -> int:
            nonlocal calls
            calls += 1
            return measure(md)

        cut = split_markdown(rest, limit=limit, measure=counted)
        assert calls <= 20
        if cut is None:
            pieces.append(rest[reopened:])
            return pieces
        assert cut.head.strip(), "the head must contain real content"
        assert measure(cut.head) <= limit
        assert open_fence(cut.head) is None, "every head must have balanced fences"
        head_core, tail_core, kind = _undo(rest, cut)
        if kinds is not None:
            kinds.add(kind)
        pieces.append(head_core[reopened:])
        reopened = len(cut.tail) - len(tail_core)
        rest = cut.tail
        if not tail_core:
            return pieces
    raise AssertionError("splitting did not terminate")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


MEASURES: list[tuple[str, Callable[[str], int]]] = [("len", len), ("telegram", telegram_measure)]


@pytest.mark.parametrize(("name", "measure"), MEASURES)
@pytest.mark.parametrize("limit", [60, 150, 400, 1000, 4000])
def test_split_properties_on_generated_answers(name: str, measure: Callable[[str], int], limit: int) -> None:
    rng = random.Random(f"{name}-{limit}")
    kinds: set[str] = set()
    for _ in range(8 if limit < 1000 else 4):
        text = _answer(rng, 12_000 if limit >= 1000 else 4_000)
        pieces = _split_all(text, limit, measure, kinds)
        assert _squash("".join(pieces)) == _squash(text)
        if measure(text) > limit:
            assert len(pieces) > 1
    assert {"paragraph", "line"} <= kinds
    if limit <= 150:
        # Small limits also exercise cuts inside fences, at spaces and inside over-long words.
        assert {"fence-line", "space", "hard"} <= kinds


def test_split_fifty_thousand_chars_stays_within_measure_budget() -> None:
    rng = random.Random(50_000)
    text = _answer(rng, 50_000)
    pieces = _split_all(text, 4000, telegram_measure)
    assert _squash("".join(pieces)) == _squash(text)


# --- targeted cases --------------------------------------------------------------------------


def test_fits_returns_none() -> None:
    assert split_markdown("short", limit=10, measure=len) is None
    assert split_markdown("exactly10!", limit=10, measure=len) is None


def test_prefers_paragraph_break() -> None:
    text = "alpha beta gamma delta\n\nepsilon zeta\neta theta iota kappa"
    cut = split_markdown(text, limit=40, measure=len)
    assert cut == Cut("alpha beta gamma delta", "epsilon zeta\neta theta iota kappa")


def test_line_break_near_limit_beats_paragraph_break_far_back() -> None:
    text = "hi\n\n" + "word " * 10 + "\n" + "more " * 10
    cut = split_markdown(text, limit=60, measure=len)
    assert cut is not None
    assert cut.head == "hi\n\n" + ("word " * 10).rstrip()
    assert cut.tail == ("more " * 10).rstrip() + " "


def test_line_break_outside_fence_beats_one_inside() -> None:
    code = "```python\n" + "\n".join(f"x = {i}" for i in range(6)) + "\n```"
    intro = "\n".join(f"introductory line number {i}" for i in range(3))
    text = intro + "\n" + code
    cut = split_markdown(text, limit=len(text) - 2, measure=len)
    assert cut is not None
    assert cut.head == intro
    assert cut.tail == code


def test_cut_inside_fence_closes_and_reopens_language() -> None:
    text = "```python\n" + "\n".join(f"print({i})" for i in range(40)) + "\n```\nafter"
    cut = split_markdown(text, limit=100, measure=len)
    assert cut is not None
    assert cut.head.startswith("```python\nprint(0)\n")
    assert cut.head.endswith("\n```")
    assert len(cut.head) <= 100
    assert cut.tail.startswith("```python\nprint(")
    assert open_fence(cut.head) is None


def test_cut_inside_tilde_and_long_fences_uses_the_same_marker() -> None:
    for marker in ("~~~", "````"):
        body = "\n".join(f"line {i} ```" for i in range(30))
        text = f"{marker}js\n{body}\n{marker}"
        cut = split_markdown(text, limit=80, measure=len)
        assert cut is not None
        assert cut.head.endswith("\n" + marker)
        assert cut.tail.startswith(f"{marker}js\n")
        assert open_fence(cut.head) is None


def test_unclosed_fence_is_closed_in_head() -> None:
    text = "Here:\n```bash\n" + "\n".join(f"echo {i}" for i in range(50))
    cut = split_markdown(text, limit=120, measure=len)
    assert cut is not None
    assert cut.head.endswith("\n```")
    assert cut.tail.startswith("```bash\necho ")
    assert open_fence(cut.tail) == "bash"


def test_space_cut_never_inside_a_word() -> None:
    text = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod"
    cut = split_markdown(text, limit=30, measure=len)
    assert cut == Cut("lorem ipsum dolor sit amet", "consectetur adipiscing elit sed do eiusmod")


def test_long_word_falls_back_to_hard_cut() -> None:
    text = "a" * 100
    cut = split_markdown(text, limit=30, measure=len)
    assert cut == Cut("a" * 30, "a" * 70)


def test_hard_cut_keeps_grapheme_clusters_whole() -> None:
    clusters = ["👨‍👩‍👧‍👦", "🇯🇵", "e\u0301", "1️⃣", "👍🏽", "😀", "🏳️‍🌈"]
    text = "".join(clusters) * 20
    for limit in range(5, 40):
        cut = split_markdown(text, limit=limit, measure=len)
        assert cut is not None
        assert cut.head + cut.tail == text
        tail_start = cut.tail[0]
        assert unicodedata.category(tail_start) not in ("Mn", "Me", "Mc")
        assert tail_start not in ("\u200d", "\ufe0f") and not "\U0001f3fb" <= tail_start <= "\U0001f3ff"
        assert cut.head[-1] != "\u200d"
        flags = len(cut.head) - len(cut.head.rstrip("\U0001f1e6\U0001f1ef\U0001f1f5"))
        assert flags % 2 == 0 or not cut.head.endswith(("🇯", "🇵"))


def test_cjk_text_is_cut_between_characters_near_limit() -> None:
    text = "我们需要把这个很长的回答拆分成多条消息" * 5
    cut = split_markdown(text, limit=20, measure=len)
    assert cut == Cut(text[:20], text[20:])


def test_utf16_measure_counts_astral_characters_twice() -> None:
    text = "😀" * 30
    cut = split_markdown(text, limit=11, measure=telegram_measure)
    assert cut is not None
    assert cut.head == "😀" * 5
    assert cut.tail == "😀" * 25


def test_whitespace_at_cut_is_trimmed_but_indentation_kept() -> None:
    text = "first paragraph here   \n\n\n    indented continuation of text"
    cut = split_markdown(text, limit=25, measure=len)
    assert cut == Cut("first paragraph here", "    indented continuation of text")


def test_only_trailing_whitespace_over_limit() -> None:
    assert split_markdown("abc" + " " * 50, limit=10, measure=len) == Cut("abc", "")


def test_head_is_never_empty_even_when_nothing_fits() -> None:
    cut = split_markdown("😀😀😀", limit=1, measure=telegram_measure)
    assert cut == Cut("😀", "😀😀")


def test_measure_budget_on_uneven_markup() -> None:
    links = " ".join(f"[l{i}](https://example.com/{'p' * 80}/{i})" for i in range(400))
    text = links + "\n\n" + "plain words " * 2000
    calls = 0

    def counted(md: str) -> int:
        nonlocal calls
        calls += 1
        return telegram_measure(md)

    cut = split_markdown(text, limit=4000, measure=counted)
    assert cut is not None
    assert calls <= 20
    assert telegram_measure(cut.head) <= 4000
    assert telegram_measure(cut.head) > 3000


def test_cut_does_not_split_inline_link_when_other_spaces_exist() -> None:
    text = "see the docs " + "[link label here](https://example.com/a)" + " and more words after it"
    for limit in range(20, len(text)):
        cut = split_markdown(text, limit=limit, measure=len)
        assert cut is not None
        assert cut.head.count("[") == cut.head.count("]")


# --- fences ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no fence", None),
        ("```\ncode", ""),
        ("```python\ncode", "python"),
        ("```python\ncode\n```", None),
        ("~~~ js \ncode", "js"),
        ("~~~\ncode\n```", ""),  # a closer must use the same character
        ("````\ncode\n```", ""),  # ... and be at least as long
        ("````\ncode\n`````", None),
        ("```\ncode\n``` trailing", ""),  # a closer carries nothing but spaces
        ("   ```py\nx", "py"),  # up to three spaces of indentation
        ("    ```py\nx", None),  # four spaces: indented code, not a fence
        ("``` a`b\nx", None),  # backtick fences may not have backticks in the info string
        ("~~~ a`b\nx", "a`b"),
        ("```py\nx\n```\n\n```js\ny", "js"),
        ("```", ""),
        ("``", None),
        ("text\r\n```py\r\nx\r\n```\r\n", None),
    ],
)
def test_open_fence(text: str, expected: str | None) -> None:
    assert open_fence(text) == expected


def test_close_open_fence() -> None:
    assert close_open_fence("plain") == "plain"
    assert close_open_fence("```py\nx\n```") == "```py\nx\n```"
    assert close_open_fence("```py\nx") == "```py\nx\n```"
    assert close_open_fence("```py\nx\n") == "```py\nx\n```"
    assert close_open_fence("~~~~\nx") == "~~~~\nx\n~~~~"
    # A closing fence that is still arriving is completed rather than shown as code.
    assert close_open_fence("```py\nx\n``") == "```py\nx\n```"
    assert open_fence(close_open_fence("a\n```py\nb ▌")) is None


def test_code_fence_ranges() -> None:
    text = "a\n```py\nx\n```\nb\n~~~\ny"
    ranges = code_fence_ranges(text)
    assert [(text[s:e], info) for s, e, info in ranges] == [("```py\nx\n```", "py"), ("~~~\ny", "")]


def test_random_markdown_fragments_keep_the_invariants() -> None:
    tokens = [
        "**", "*", "_", "`", "```", "```py\n", "~~~\n", "````\n", "\n", "\n\n", "# ", "> ", "- ", "1. ",
        "[a b](http://x.example/z)", "[", "](", ")", "|", "中文字", "😀", "👨‍👩‍👧", "🇯🇵", "e\u0301", "word",
        "longword" * 5, " ", "  ", "\t", "<b>", "x" * 30, "\r\n", "   ```js\n", "``` ", "\xa0", "\u3000",
    ]  # fmt: skip
    rng = random.Random(4242)
    for _ in range(400):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 120)))
        name, measure = rng.choice(MEASURES)
        limit = rng.randint(80 if name == "len" else 40, 300)
        pieces = _split_all(text, limit, measure)
        assert _squash("".join(pieces)) == _squash(text)
