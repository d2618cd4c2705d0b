"""The sources line and the run-details footer, as text, in English and Chinese."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.answer import Citation, Done, TextDelta
from core.render.footers import UsageMode, sources_line, usage_line
from core.render.renderer import StreamRenderer
from core.render.surface import SurfaceLimits
from core.render.throttle import Throttle
from core.replies import Usage
from core.settings import Settings
from core.texts import Lang
from tests.unit.test_renderer import MemorySurface, script

FULL = Usage(total_tokens=1234, total_price=Decimal("0.0021"), currency="USD", elapsed=3.21, steps=5)


def test_sources_are_deduplicated_in_order_and_skip_empty_names() -> None:
    citations = (
        Citation("refunds.md", "Policies"),
        Citation(""),
        Citation("shipping.md"),
        Citation("refunds.md", "Other"),
        Citation("  "),
    )
    assert sources_line(citations) == "Sources: refunds.md, shipping.md"
    assert sources_line(citations, "zh") == "来源：refunds.md, shipping.md"


def test_no_sources_line_without_names() -> None:
    assert sources_line(()) == ""
    assert sources_line((Citation(""), Citation(" "))) == ""


def test_markdown_in_a_document_name_is_shown_as_written() -> None:
    assert sources_line((Citation("my_notes *draft*.md"),)) == "Sources: my\\_notes \\*draft\\*.md"
    assert sources_line((Citation("two\nlines.txt"),)) == "Sources: two lines.txt"


@pytest.mark.parametrize(
    ("mode", "lang", "expected"),
    [
        ("off", "en", ""),
        ("tokens", "en", "_1,234 tokens_"),
        ("full", "en", "_1,234 tokens · $0.0021 · 3.2 s · 5 steps_"),
        ("off", "zh", ""),
        ("tokens", "zh", "_1,234 tokens_"),
        ("full", "zh", "_1,234 tokens · $0.0021 · 3.2 秒 · 5 步_"),
    ],
)
def test_usage_line_per_mode(mode: UsageMode, lang: Lang, expected: str) -> None:
    assert usage_line(FULL, mode, lang) == expected


def test_other_currencies_follow_the_amount() -> None:
    usage = Usage(total_tokens=10, total_price=Decimal("0.0021000"), currency="RMB")
    assert usage_line(usage, "full") == "_10 tokens · 0.0021 RMB_"
    assert usage_line(Usage(total_price=Decimal("1.5"), currency="usd"), "full") == "_$1.50_"
    assert usage_line(Usage(total_price=Decimal("12"), currency=""), "full") == "_12.00_"


def test_unknown_parts_are_left_out() -> None:
    assert usage_line(Usage(total_tokens=951), "full") == "_951 tokens_"
    assert usage_line(Usage(elapsed=0.84, steps=1), "full") == "_0.8 s · 1 step_"
    assert usage_line(Usage(elapsed=2.0), "tokens") == ""
    assert usage_line(Usage(), "full") == ""
    assert usage_line(Usage(), "tokens") == ""


def test_settings_show_sources_by_default_and_usage_when_asked() -> None:
    settings = Settings.model_validate({"dify_api_key": "app-x"})
    assert (settings.show_sources, settings.show_usage) == (True, "off")
    settings = Settings.model_validate({"dify_api_key": "app-x", "show_sources": "off", "show_usage": "full"})
    assert (settings.show_sources, settings.show_usage) == (False, "full")


async def test_a_footer_that_does_not_fit_beside_the_answer_gets_its_own_message() -> None:
    answer = "First paragraph of the answer.\n\nSecond paragraph, which ends the answer."
    surface = MemorySurface(limits=SurfaceLimits(max_length=len(answer) + 5))
    renderer = StreamRenderer(surface, throttle=Throttle(0.01), status_delay=0.05, show_sources=True)
    done = Done(answer, citations=(Citation(title="refunds.md"), Citation(title="shipping.md")))
    await renderer.render(script([TextDelta(answer), done]))
    # The answer is never split to make room for its sources line.
    assert list(surface.shown.values()) == [answer, "Sources: refunds.md, shipping.md"]


async def test_a_footer_that_fits_stays_under_the_answer() -> None:
    answer = "Short answer."
    surface = MemorySurface(limits=SurfaceLimits(max_length=100))
    renderer = StreamRenderer(surface, throttle=Throttle(0.01), status_delay=0.05, show_sources=True)
    await renderer.render(script([TextDelta(answer), Done(answer, citations=(Citation(title="refunds.md"),))]))
    assert list(surface.shown.values()) == [f"{answer}\n\nSources: refunds.md"]
