"""TerminalSink: what the terminal shows for replaced, held-back and stopped answers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from bots.terminal_chat import TerminalSink, file_link
from core.answer import Done, FileRef, Files, ReplyEvent, TextDelta, TextReplace
from core.texts import text


async def feed(*events: ReplyEvent) -> AsyncIterator[ReplyEvent]:
    for event in events:
        yield event


async def shown(*events: ReplyEvent, hold_back: bool = False) -> str:
    out = io.StringIO()
    sink = TerminalSink(out=out, err=io.StringIO(), hold_back=hold_back, base_url="https://dify.example/v1")
    await sink.render(feed(*events))
    return out.getvalue()


async def test_a_replacement_that_extends_the_text_is_printed_once() -> None:
    assert await shown(TextDelta("Hello"), TextReplace("Hello world"), Done("Hello world")) == "Hello world\n"


async def test_a_preview_longer_than_the_final_adds_nothing() -> None:
    assert await shown(TextDelta("Hello"), TextDelta("\n"), TextReplace("Hello"), Done("Hello")) == "Hello\n"


async def test_a_different_replacement_follows_on_its_own_line() -> None:
    events = (TextDelta("Sure, here is"), TextReplace("Sorry, I can't help."), Done("Sorry, I can't help."))
    assert await shown(*events) == "Sure, here is\nSorry, I can't help.\n"


async def test_held_back_previews_print_only_the_final_answer() -> None:
    events = (TextDelta("draft one"), TextDelta("\n![x](u)"), TextReplace("final"), Done("final"))
    assert await shown(*events, hold_back=True) == "final\n"


async def test_stop_keeps_the_text_so_far() -> None:
    out = io.StringIO()
    sink = TerminalSink(out=out, err=io.StringIO())

    async def events() -> AsyncIterator[ReplyEvent]:
        yield TextDelta("partial")
        sink.stop()
        await asyncio.Event().wait()  # Dify goes quiet; the stop ends the answer anyway
        yield TextDelta(" never")

    await sink.render(events())
    assert out.getvalue() == "partial\n" + text("stopped") + "\n"
    assert sink.stats.outcome == "stopped"


@pytest.mark.parametrize(
    ("url", "absolute"),
    [
        ("/files/tools/a.png?sign=x", "https://dify.example/files/tools/a.png?sign=x"),
        ("https://cdn.example/a.png", "https://cdn.example/a.png"),
    ],
)
def test_file_links_are_absolute_on_the_dify_host(url: str, absolute: str) -> None:
    assert file_link(url, "https://dify.example/v1") == absolute


async def test_files_go_on_a_line_of_their_own() -> None:
    events = (
        TextDelta("See"),
        Files((FileRef(type="image", url="/files/a.png"),)),
        TextDelta(" this"),
        Done("See this"),
    )
    assert await shown(*events) == "See\n[image: https://dify.example/files/a.png]\n this\n"
