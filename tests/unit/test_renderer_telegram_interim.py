"""Interim frames on Telegram render paragraph by paragraph: same result as a whole rendering, less work."""

from __future__ import annotations

import pytest
import telegramify_markdown

from bots.telegram.markdown import measure, measure_interim, render_interim, render_markdown

ANSWER = (
    "# Refunds\n\nYou can ask for a **refund** within `30 days` of delivery 退款 🌏.\n\n"
    "Keep the _receipt_: support needs it, see [the policy](https://example.com/policy).\n\n"
    "**Delivery** takes 3 days; ~~express~~ is gone.\n\nThat is all."
)


def test_every_prefix_renders_as_the_whole_answer_would() -> None:
    for end in range(1, len(ANSWER) + 1):
        prefix = ANSWER[:end]
        assert render_interim(prefix) == render_markdown(prefix), prefix
        assert measure_interim(prefix) == measure(prefix)


@pytest.mark.parametrize(
    "md",
    [
        "Intro\n\n- one\n- two\n\nafter",  # a list
        "1. a\n\n2. b",  # a loose list
        "Code:\n\n```python\nx = 1\n\ny = 2\n```\n\ndone",  # a fence with a blank line inside
        "See [it][ref].\n\n[ref]: https://example.com",  # a reference link
        "Quote\n\n> said\n\n> more",
        "Text\n\n    indented code",
        "List<String>\n\nnext",  # raw HTML is escaped over the whole text
    ],
)
def test_paragraphs_that_depend_on_each_other_are_rendered_whole(md: str) -> None:
    assert render_interim(md) == render_markdown(md)


def test_a_growing_answer_renders_only_its_new_paragraph(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    convert = telegramify_markdown.convert

    def counting(md: str, **kwargs: object) -> object:
        seen.append(md)
        return convert(md, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(telegramify_markdown, "convert", counting)
    first = "First paragraph, **bold**.\n\nSecond one, still growing"
    render_interim(first)
    seen.clear()
    grown = first + " and now done.\n\nThird."
    result = render_interim(grown)
    assert seen == ["Second one, still growing and now done.", "Third."]
    assert result == render_markdown(grown)
