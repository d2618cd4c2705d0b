"""FrameLayout: what each message of an answer should show, with full messages frozen as it grows."""

from __future__ import annotations

from core.render.split import split_markdown
from core.render.surface import MessageSurface
from core.texts import Lang, text

__all__ = ["FrameLayout"]


class FrameLayout:
    """The answer so far (text, progress line, notes) cut into message-sized parts.

    A part that filled its message is frozen: the text rolls over into the next message and later
    changes only touch the last part, unless the whole answer is replaced or the platform refuses a
    part as too long."""

    def __init__(self, surface: MessageSurface, *, lang: Lang) -> None:
        self._surface = surface
        self._lang = lang
        self._limit = surface.limits.max_length
        self._placeholder = surface.limits.placeholder
        self.text = ""  # whole answer (Markdown) so far
        self.status: str | None = None
        self.notes: list[str] = []
        self.heading = ""  # shown above the answer (what a voice message said)
        self._final_text: str | None = None
        self._frozen: list[str] = []  # finished parts, one per message, already shown in full
        self._text_frozen = ""  # the prefix of `text` that the frozen parts show
        self._carry = ""  # a code fence reopened at the top of the current part

    @property
    def has_text(self) -> bool:
        return bool(self.text.strip())

    def final_parts(self) -> list[str]:
        """The final frame: the answer followed by its notes (fixed on the first call)."""
        if self._final_text is None:
            notes = "\n\n".join(self.notes)
            body = self._with_heading(self.text.rstrip())
            if not body and not notes:
                notes = text("empty_answer", self._lang)
            self._final_text = f"{body}\n\n{notes}" if body and notes else (body or notes)
        return self._layout(self._final_text, final=True)

    def interim_parts(self, *, started: bool) -> list[str] | None:
        """An interim frame, or None when there is nothing (new) to show; `started`: a message exists."""
        if self.has_text:
            return self._layout(self._with_heading(self.text), final=False)
        if not self._placeholder:
            return None
        if self.status is not None:
            return [self._with_heading(self.status)]
        if not started:
            return [self._with_heading(text("thinking", self._lang))]
        return None

    def _with_heading(self, body: str) -> str:
        if not self.heading:
            return body
        return f"{self.heading}\n\n{body}" if body else self.heading

    def shrink(self) -> None:
        """The platform found a part too long (our measure was off): cut everything smaller."""
        self._limit = max(200, int(self._limit * 0.9))
        self._unfreeze()

    def _unfreeze(self) -> None:
        self._frozen.clear()
        self._text_frozen, self._carry = "", ""

    def _layout(self, answer: str, *, final: bool) -> list[str]:
        """Every message of `answer` as it should look now; parts before the last are frozen."""
        if not answer.startswith(self._text_frozen):
            # The answer was replaced (moderation): lay everything out again from the start.
            self._unfreeze()
        room = self._limit - (0 if final else self._surface.limits.cursor_length)
        body = self._carry + answer[len(self._text_frozen) :]
        while True:
            cut = split_markdown(body, limit=room, measure=self._surface.measure)
            if cut is None:
                break
            self._frozen.append(cut.head)
            # The tail is a suffix of the answer, possibly after a reopened code fence.
            reopen = _added_prefix(body, cut.tail)
            rest = cut.tail[len(reopen) :]
            self._text_frozen = answer[: len(answer) - len(rest)]
            self._carry = reopen
            body = cut.tail
        return [*self._frozen, body]


def _added_prefix(body: str, tail: str) -> str:
    """The part of `tail` that is not text of `body` (a reopened code fence), usually ''."""
    if body.endswith(tail):
        return ""
    for index in range(1, len(tail)):
        if body.endswith(tail[index:]):
            return tail[:index]
    return tail
