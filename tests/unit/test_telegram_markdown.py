"""Tests for rendering Markdown as Telegram text and entities."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import telegramify_markdown
from aiogram.types import MessageEntity

from bots.telegram import markdown
from bots.telegram.markdown import MAX_ENTITIES, TelegramText, measure, plain, render_markdown, utf16_len

SAMPLE = """# Streaming answer

Some **bold**, *italic*, ~~struck~~ and `inline code` text with a [link](https://example.com/a?b=1).
中文内容 **粗体** 和表情 😀👍🏽 then **x😀y**.

- first item
- second item with `code`
  - nested item
1. one
2. two

> quoted line
> second quoted line

| name | value |
|------|-------|
| a    | 1     |

```python
def hello(name: str) -> str:
    return f"hi {name}"
```

Use List<String> and Vec<T> here.
"""


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # render_markdown is cached; tests that swap the converter must not see earlier results.
    render_markdown.cache_clear()
    yield
    render_markdown.cache_clear()


def _check_entities(result: TelegramText) -> None:
    size = utf16_len(result.text)
    assert len(result.entities) <= MAX_ENTITIES
    for entity in result.entities:
        assert isinstance(entity, MessageEntity)
        assert entity.offset >= 0
        assert entity.length > 0
        assert entity.offset + entity.length <= size


def _entity(result: TelegramText, kind: str) -> MessageEntity:
    matches = [e for e in result.entities if e.type == kind]
    assert matches, f"no {kind} entity in {result.entities}"
    return matches[0]


def _covered(result: TelegramText, entity: MessageEntity) -> str:
    units = result.text.encode("utf-16-le")
    return units[2 * entity.offset : 2 * (entity.offset + entity.length)].decode("utf-16-le")


def test_utf16_len() -> None:
    assert utf16_len("") == 0
    assert utf16_len("abc") == 3
    assert utf16_len("中文") == 2
    assert utf16_len("😀") == 2
    assert utf16_len("👨‍👩‍👧") == 8
    assert utf16_len("e\u0301") == 2


def test_plain_is_raw_markdown_without_entities() -> None:
    assert plain("**x** <b>") == TelegramText("**x** <b>", [])


def test_headings_are_bold_lines_without_hashes() -> None:
    result = render_markdown("# Title\n\ntext")
    assert "#" not in result.text
    assert _covered(result, _entity(result, "bold")) == "Title"
    _check_entities(result)


def test_inline_styles() -> None:
    result = render_markdown("**b** *i* ~~s~~ `c`")
    assert result.text == "b i s c"
    kinds = {e.type: _covered(result, e) for e in result.entities}
    assert kinds == {"bold": "b", "italic": "i", "strikethrough": "s", "code": "c"}


def test_fenced_code_becomes_pre_with_language() -> None:
    result = render_markdown("```python\nprint(1)\n```\nafter")
    pre = _entity(result, "pre")
    assert pre.language == "python"
    assert _covered(result, pre) == "print(1)"


def test_links() -> None:
    result = render_markdown("[label](https://example.com/x)")
    link = _entity(result, "text_link")
    assert result.text == "label"
    assert link.url == "https://example.com/x"


def test_links_telegram_would_reject_are_kept_as_text() -> None:
    result = render_markdown("[rel](/docs/a.md) [note](note) [ok](https://ok.example) [tg](tg://user?id=1)")
    assert result.text == "rel note ok tg"
    assert [e.url for e in result.entities] == ["https://ok.example", "tg://user?id=1"]


def test_lists_quotes_and_tables() -> None:
    result = render_markdown("- a\n- b\n\n> quoted\n\n| x | y |\n|---|---|\n| 1 | 2 |")
    assert "a" in result.text and "b" in result.text
    assert _covered(result, _entity(result, "blockquote")) == "quoted"
    assert "1 | 2" in _covered(result, _entity(result, "pre"))
    _check_entities(result)


def test_unclosed_bold_stays_literal() -> None:
    result = render_markdown("hello **bol")
    assert result.text == "hello **bol"
    assert result.entities == []


def test_unclosed_fence_runs_to_the_end_as_pre() -> None:
    result = render_markdown("text\n```python\ndef f():\n    return 1")
    pre = _entity(result, "pre")
    assert pre.language == "python"
    assert _covered(result, pre) == "def f():\n    return 1"


def test_utf16_offsets_with_chinese_and_emoji() -> None:
    result = render_markdown("中文 😀 **粗体😀**")
    bold = _entity(result, "bold")
    assert result.text == "中文 😀 粗体😀"
    assert bold.offset == 6
    assert bold.length == 4
    assert _covered(result, bold) == "粗体😀"


def test_cursor_characters_survive() -> None:
    assert render_markdown("Hello **wor▌").text.endswith("▌")
    result = render_markdown("```py\ncode ▌")
    assert result.text == "code ▌"
    assert _entity(result, "pre").language == "py"


def test_raw_html_stays_visible() -> None:
    assert render_markdown("Use List<String> here").text == "Use List<String> here"
    assert render_markdown("<div>\nhi <b>x</b>\n</div>").text == "<div>\nhi <b>x</b>\n</div>"
    # ... but code keeps its text as is, and autolinks stay links.
    result = render_markdown("`a<b>` <https://x.example>\n\n```\nVec<T>\n```")
    assert result.text == "a<b> https://x.example\n\nVec<T>"
    assert _entity(result, "text_link").url == "https://x.example"
    assert render_markdown("a<br>b").text == "a b"


def test_entity_count_is_capped() -> None:
    result = render_markdown("**b** " * 150)
    assert len(result.entities) == MAX_ENTITIES
    assert [e.offset for e in result.entities] == [2 * i for i in range(MAX_ENTITIES)]


def test_whitespace_only_rendering_falls_back_to_plain() -> None:
    assert render_markdown("<!-- only a comment -->").text.strip()
    assert render_markdown("") == TelegramText("", [])


def test_converter_failure_falls_back_to_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(md: str, **kwargs: object) -> tuple[str, list[object]]:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(telegramify_markdown, "convert", boom)
    assert render_markdown("**x**") == plain("**x**")
    assert measure("**x**") == 5


def test_bad_entities_from_converter_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    entities = [
        telegramify_markdown.MessageEntity(type="bold", offset=0, length=2),
        telegramify_markdown.MessageEntity(type="bold", offset=1, length=50),
        telegramify_markdown.MessageEntity(type="italic", offset=0, length=0),
    ]
    monkeypatch.setattr(telegramify_markdown, "convert", lambda md, **kw: ("abc", entities))
    result = render_markdown("whatever")
    assert [(e.type, e.offset, e.length) for e in result.entities] == [("bold", 0, 2)]


def test_html_escape_failure_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(md: str) -> str:
        raise ValueError("bad")

    monkeypatch.setattr(markdown, "_keep_html_visible", boom)
    assert render_markdown("**x**").text == "x"


def test_measure_is_utf16_length_of_rendered_text() -> None:
    assert measure("**bold** 😀") == len("bold ") + 2
    assert measure("```python\nx\n```") == 1


def test_every_prefix_of_an_answer_renders() -> None:
    for end in range(len(SAMPLE) + 1):
        md = SAMPLE[:end] + "▌"
        result = render_markdown(md)
        _check_entities(result)
        assert result.text.strip()


def test_random_fragments_never_raise() -> None:
    tokens = [
        "**", "*", "_", "__", "~~", "`", "```", "```python\n", "~~~\n", "\n", "\n\n", "# ", "> ", "- ",
        "1. ", "[", "](", "https://x.example/", ")", "|", "| a | b |\n|---|---|\n", "中文", "😀",
        "👨‍👩‍👧", "\u0301", "word", " ", "<", ">", "&", "\\", "||", "$$", "\\(", "▌", "    ", "<b>",
        "</b>", "<br>", "<!--", "![", "[^1]",
    ]  # fmt: skip
    rng = random.Random(20_240_601)
    for _ in range(3000):
        md = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 40)))
        result = render_markdown(md)
        _check_entities(result)
        if md.strip():
            assert result.text.strip()
