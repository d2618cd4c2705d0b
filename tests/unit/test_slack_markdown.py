"""Tests for converting Markdown to Slack mrkdwn."""

from __future__ import annotations

import pytest

from bots.slack.markdown import to_mrkdwn


@pytest.mark.parametrize(
    ("md", "expected"),
    [
        ("plain text", "plain text"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("<@U123> <!channel>", "&lt;@U123&gt; &lt;!channel&gt;"),
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("***both***", "*_both_*"),
        ("**bold with *italic* inside**", "*bold with _italic_ inside*"),
        ("~~gone~~ but ~approx~", "~gone~ but ~approx~"),
        ("[label](https://example.com/a?x=1&y=2)", "<https://example.com/a?x=1&amp;y=2|label>"),
        ("[**bold label**](https://e.example)", "<https://e.example|bold label>"),
        ("[https://e.example](https://e.example)", "<https://e.example>"),
        ("![diagram](https://e.example/d.png)", "<https://e.example/d.png|diagram>"),
        ("[docs](/relative/path)", "docs (/relative/path)"),
        ("<https://e.example/x>", "<https://e.example/x>"),
        ("<me@e.example>", "<mailto:me@e.example|me@e.example>"),
        ("# Title", "*Title*"),
        ("### **Bold** title ###", "*Bold title*"),
        ("#hashtag", "#hashtag"),
        ("- one\n* two\n+ three", "• one\n• two\n• three"),
        ("  - nested **b**", "  • nested *b*"),
        ("- [ ] todo\n- [x] done", "• ☐ todo\n• ☑ done"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted **b** & 1 > 0", "> quoted *b* &amp; 1 &gt; 0"),
        ("---", "──────────"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("a \\*literal\\* star", "a *literal* star"),
        ("中文**粗体**中文", "中文 *粗体* 中文"),
    ],
)
def test_inline_and_line_conversions(md: str, expected: str) -> None:
    assert to_mrkdwn(md) == expected


def test_code_spans_are_untouched() -> None:
    assert to_mrkdwn("use `a < b && **c**` here & there") == "use `a < b && **c**` here &amp; there"
    assert to_mrkdwn("``x ` y``") == "``x ` y``"


def test_code_blocks_lose_language_and_keep_body() -> None:
    md = "Run:\n```python\nif a < b and c & d:\n    print('**no** [x](y)')\n```\n**after**"
    assert to_mrkdwn(md) == "Run:\n```\nif a < b and c & d:\n    print('**no** [x](y)')\n```\n*after*"


def test_tilde_and_long_fences_become_backtick_fences() -> None:
    assert to_mrkdwn("~~~js\nx = 1\n~~~") == "```\nx = 1\n```"
    assert to_mrkdwn("````md\n```py\nx\n```\n````") == "```\n```py\nx\n```\n```"


def test_unclosed_fence_keeps_body_raw() -> None:
    assert to_mrkdwn("text *it*\n```bash\necho <x> **y**") == "text _it_\n```\necho <x> **y**"


def test_blank_lines_and_spacing_are_preserved() -> None:
    md = "para one\n\n\npara **two**\n"
    assert to_mrkdwn(md) == "para one\n\n\npara *two*\n"
