"""`dify-bots chat`: a conversation with the Dify app in the terminal, scriptable through stdin."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
import time
from collections.abc import AsyncIterable, Callable
from typing import Any, TextIO

from bots.core_stack import open_core
from core.answer import ContextReset, Done, Failed, Files, Progress, ReplyEvent, TextDelta, TextReplace
from core.answering import AnswerPipeline
from core.conversations import ChatKey
from core.errors import BotError
from core.render.renderer import RenderStats
from core.service import ReplyStream
from core.settings import Settings
from core.texts import friendly_error, progress_line, text


def terminal_chat_key() -> ChatKey:
    name = getpass.getuser() or "user"
    return ChatKey(platform="cli", scope=f"cli:{name}", user=f"cli-{name}")


class TerminalSink:
    """Writes one answer to the terminal: text to `out`, progress and notices to `err`."""

    def __init__(self, *, out: TextIO, err: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._out = out
        self._err = err
        self._clock = clock
        self._shown = ""
        self._interrupted: asyncio.Future[BotError] | None = None
        self.stats = RenderStats()

    async def render(self, events: AsyncIterable[ReplyEvent]) -> RenderStats:
        self.stats.started_at = self._clock()
        self._interrupted = asyncio.get_running_loop().create_future()
        reader = asyncio.ensure_future(self._read(events))
        waiting: set[asyncio.Future[Any]] = {reader, self._interrupted}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if reader not in done:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._end(self._interrupted.result(), outcome="interrupted")
        else:
            reader.result()
        self.stats.final_at = self._clock()
        return self.stats

    def interrupt(self, error: BotError) -> None:
        if self._interrupted is not None and not self._interrupted.done():
            self._interrupted.set_result(error)

    async def _read(self, events: AsyncIterable[ReplyEvent]) -> None:
        async for event in events:
            if self._show(event):
                return

    def _write(self, body: str) -> None:
        if body and self.stats.first_text_at is None:
            self.stats.first_text_at = self._clock()
        self._out.write(body)

    def _show(self, event: ReplyEvent) -> bool:
        """Print one event; True once the answer has its outcome."""
        out, err = self._out, self._err
        if isinstance(event, TextDelta):
            self._write(event.text)
            self._shown += event.text
        elif isinstance(event, TextReplace):
            if event.text.startswith(self._shown):
                self._write(event.text[len(self._shown) :])
            else:
                self._write(("\n" if self._shown else "") + event.text)
            self._shown = event.text
        elif isinstance(event, Progress) and not self._shown:
            err.write(f"[{progress_line(event.kind, event.label)}]\n")
        elif isinstance(event, Files):
            for file in event.files:
                out.write(f"\n[{file.type}: {file.url}]")
        elif isinstance(event, ContextReset):
            err.write(text("context_reset") + "\n")
        elif isinstance(event, Done):
            if event.stopped:
                out.write("\n" + text("stopped"))
            out.write("\n")
            out.flush()
            self.stats.outcome = "done"
            return True
        elif isinstance(event, Failed):
            self._end(event.error, outcome="failed")
            return True
        out.flush()
        return False

    def _end(self, error: BotError, *, outcome: str) -> None:
        self._out.write(("\n" if self._shown else "") + friendly_error(error) + "\n")
        self._out.flush()
        self.stats.outcome = outcome
        self.stats.error = error


async def answer(pipeline: AnswerPipeline, chat: ChatKey, message: str, *, out: TextIO, err: TextIO) -> bool:
    """Stream one answer to `out`; progress and notices go to `err`. True when it succeeded."""

    def sink(stream: ReplyStream) -> TerminalSink:
        return TerminalSink(out=out, err=err)

    stats = await pipeline.answer(chat=chat, text=message, sink=sink)
    return stats.outcome == "done"


async def _read_line(interactive: bool) -> str | None:
    if interactive:
        try:
            return await asyncio.to_thread(input, "you> ")
        except EOFError:
            return None
    line = await asyncio.to_thread(sys.stdin.readline)
    return line.rstrip("\r\n") if line else None


async def run_chat(settings: Settings) -> int:
    interactive = sys.stdin.isatty()
    chat = terminal_chat_key()
    async with open_core(settings) as core:
        pipeline = AnswerPipeline(core.service)
        if interactive:
            print("Connected. Type a message, /reset to start over, /quit to leave.", file=sys.stderr)
        while True:
            line = await _read_line(interactive)
            if line is None:
                return 0
            message = line.strip()
            if not message:
                continue
            if message in ("/quit", "/exit"):
                return 0
            if message == "/reset":
                await core.service.reset(chat)
                print(text("reset_done"), file=sys.stderr)
                continue
            await answer(pipeline, chat, message, out=sys.stdout, err=sys.stderr)
