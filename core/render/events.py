"""How each reply event changes what an answer shows: its text, status, heading and notes."""

from __future__ import annotations

from typing import Literal

from core.answer import (
    ContextReset,
    Done,
    Failed,
    Files,
    FilesReady,
    Heard,
    Progress,
    Quote,
    ReplyEvent,
    TextDelta,
    TextReplace,
)
from core.errors import BotError
from core.render.footers import UsageMode, sources_line, usage_line
from core.render.layout import FrameLayout
from core.render.stats import RenderStats
from core.texts import Lang, friendly_error, progress_line, text

Effect = Literal["none", "text", "status", "note", "end"]
"""What an event changed: nothing, the answer's text, the status line, a note or heading, or it ended it."""


class EventApplier:
    """Applies reply events to one answer's frames and stats."""

    def __init__(
        self,
        frames: FrameLayout,
        stats: RenderStats,
        *,
        lang: Lang,
        show_sources: bool,
        show_usage: UsageMode,
    ) -> None:
        self._frames = frames
        self._stats = stats
        self._lang = lang
        self._show_sources = show_sources
        self._show_usage: UsageMode = show_usage

    def apply(self, event: ReplyEvent) -> Effect:
        frames, lang = self._frames, self._lang
        if isinstance(event, TextDelta):
            frames.text += event.text
            return "text"
        if isinstance(event, TextReplace):
            frames.text = event.text
            return "text"
        if isinstance(event, Progress):
            frames.status = progress_line(event.kind, event.label, lang)
            return "status"
        if isinstance(event, Files):
            frames.notes.extend(f"[{file.type}]({file.url})" for file in event.files)
        elif isinstance(event, Heard):
            frames.heading = text("heard", lang, text=event.text)
        elif isinstance(event, Quote):
            frames.heading = text("asked", lang, text=event.text)
        elif isinstance(event, FilesReady):
            frames.notes.extend(text("file_missing", lang, name=name) for name in event.missing)
        elif isinstance(event, ContextReset):
            frames.notes.append("_" + text("context_reset", lang) + "_")
        elif isinstance(event, Done):
            self._done(event)
            return "end"
        elif isinstance(event, Failed):
            self.fail(event.error, outcome="failed")
            return "end"
        else:
            return "none"
        return "note"

    def _done(self, event: Done) -> None:
        frames = self._frames
        if event.stopped:
            frames.notes.append(text("stopped", self._lang))
        if event.paused:
            frames.notes.append(text("paused", self._lang))
        footers = (
            sources_line(event.citations, self._lang) if self._show_sources else "",
            usage_line(event.usage, self._show_usage, self._lang),
        )
        if frames.has_text or frames.notes:  # an empty answer still says so rather than show footers alone
            frames.notes.extend(line for line in footers if line)
        self._stats.outcome = "done"
        self._stats.message_id = event.message_id

    def fail(self, error: BotError, *, outcome: str) -> None:
        """End the answer with the text so far and one friendly line saying what went wrong."""
        self._stats.outcome = outcome
        self._stats.error = error
        self._frames.notes.append("⚠️ " + friendly_error(error, self._lang))

    def stopped(self) -> None:
        """End the answer with the text so far and a short note that it was stopped."""
        self._stats.outcome = "stopped"
        self._frames.notes.append(text("stopped", self._lang))
