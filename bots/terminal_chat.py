"""`dify-bots chat`: a conversation with the Dify app in the terminal, scriptable through stdin."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, TextIO

from bots.core_stack import open_core
from bots.diagnose import explain
from bots.terminal_files import FileCommandError, is_file_command, local_file, parse_file_command
from bots.terminal_input import LineReader
from core.answer import ContextReset, Done, Failed, Files, Heard, Progress, ReplyEvent, TextDelta, TextReplace
from core.answering import AnswerPipeline
from core.conversations import ChatKey
from core.dify.client import WORKFLOW_MODE
from core.dify.errors import DifyError
from core.errors import BotError, StartupError
from core.files.links import absolute_url, dify_images
from core.files.model import IncomingFile
from core.render.renderer import RenderStats
from core.service import ReplyStream
from core.settings import Settings
from core.texts import friendly_error, progress_line, text

HISTORY_FILE = "chat_history"
DOUBLE_INTERRUPT = 1.0  # seconds: a second Ctrl-C this soon after the first leaves the chat
HANG_UPS = (signal.SIGTERM, signal.SIGHUP)


def terminal_chat_key() -> ChatKey:
    name = getpass.getuser() or "user"
    return ChatKey(platform="cli", scope=f"cli:{name}", user=f"cli-{name}")


def host_of(base_url: str) -> str:
    """Dify's host: the API base URL without its `/v1`."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def file_link(url: str, base_url: str) -> str:
    """An absolute link: Dify's relative `/files/...` URLs live on its host, not under `/v1`."""
    return absolute_url(url, host_of(base_url))


class TerminalSink:
    """Writes one answer to the terminal: text to `out`, progress and notices to `err`.

    With `hold_back` (workflow apps) streamed text is only a preview that the run's outputs replace,
    so nothing is printed until the final answer is known: the answer is printed once.
    """

    def __init__(
        self,
        *,
        out: TextIO,
        err: TextIO,
        hold_back: bool = False,
        base_url: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._err = err
        self._hold_back = hold_back
        self._base_url = base_url
        self._clock = clock
        self._linked: set[str] = set()  # file links already printed on a line of their own
        self._shown = ""  # what was printed of the answer
        self._answer = ""  # the answer as it stands
        self._line_start = True
        self._interrupted: asyncio.Future[BotError | None] | None = None
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
            error = self._interrupted.result()
            if error is None:
                self._stopped()
            else:
                self._end(error, outcome="interrupted")
        else:
            reader.result()
        self.stats.final_at = self._clock()
        return self.stats

    def interrupt(self, error: BotError) -> None:
        if self._interrupted is not None and not self._interrupted.done():
            self._interrupted.set_result(error)

    def stop(self) -> None:
        """The user pressed Ctrl-C: end now with what was shown and a "(Stopped.)" line."""
        if self._interrupted is not None and not self._interrupted.done():
            self._interrupted.set_result(None)

    async def _read(self, events: AsyncIterable[ReplyEvent]) -> None:
        async for event in events:
            if self._show(event):
                return

    def _write(self, body: str) -> None:
        if not body:
            return
        if self.stats.first_text_at is None:
            self.stats.first_text_at = self._clock()
        self._out.write(body)
        self._line_start = body.endswith("\n")

    def _newline(self) -> None:
        if not self._line_start:
            self._write("\n")

    def _print_answer(self, answer: str) -> None:
        """Bring the printed answer up to `answer` without printing any part of it twice."""
        if answer.startswith(self._shown):
            self._write(answer[len(self._shown) :])
        elif not (self._shown.startswith(answer) and not self._shown[len(answer) :].strip()):
            # Replaced by something else (moderation): the replacement follows on its own line.
            self._newline()
            self._write(answer)
        self._shown = answer

    def _show(self, event: ReplyEvent) -> bool:
        """Print one event; True once the answer has its outcome."""
        if isinstance(event, TextDelta | TextReplace):
            self._answer = self._answer + event.text if isinstance(event, TextDelta) else event.text
            if not self._hold_back:
                self._print_answer(self._answer)
        elif isinstance(event, Progress) and not self._shown:
            self._err.write(f"[{progress_line(event.kind, event.label)}]\n")
        elif isinstance(event, Files):
            self._print_answer(self._answer)
            for file in event.files:
                self._link(file.type, file.url)
        elif isinstance(event, Heard):
            self._newline()
            self._write(text("heard", text=event.text) + "\n")
        elif isinstance(event, ContextReset):
            self._err.write(text("context_reset") + "\n")
        elif isinstance(event, Done):
            self._print_answer(event.answer or self._answer)
            self._link_relative_images(event.answer or self._answer)
            if event.stopped:
                self._newline()
                self._write(text("stopped"))
            self._newline()
            self._out.flush()
            self.stats.outcome = "done"
            return True
        elif isinstance(event, Failed):
            self._print_answer(self._answer)
            self._end(event.error, outcome="failed")
            return True
        self._out.flush()
        self._err.flush()
        return False

    def _link(self, kind: str, url: str) -> None:
        link = file_link(url, self._base_url)
        if link in self._linked:
            return
        self._linked.add(link)
        self._newline()
        self._write(f"[{kind}: {link}]\n")

    def _link_relative_images(self, answer: str) -> None:
        """Markdown images with a relative Dify link are unclickable as printed: give their absolute link."""
        host = host_of(self._base_url)
        for url in dify_images(answer, host):
            if url not in answer:
                self._link("image", url)

    def _end(self, error: BotError, *, outcome: str) -> None:
        self._newline()
        self._write(friendly_error(error) + "\n")
        self._out.flush()
        self.stats.outcome = outcome
        self.stats.error = error

    def _stopped(self) -> None:
        self._print_answer(self._answer)
        self._newline()
        self._write(text("stopped") + "\n")
        self._out.flush()
        self.stats.outcome = "stopped"


class _Answering:
    """The answer being written, so Ctrl-C can stop it and Dify's task behind it."""

    def __init__(self) -> None:
        self.active = False  # from the moment a line is asked until its answer is over
        self.sink: TerminalSink | None = None
        self.stream: ReplyStream | None = None
        self.stops: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        if self.sink is not None:
            self.sink.stop()
        if self.stream is not None:
            task = asyncio.ensure_future(self.stream.stop())
            self.stops.add(task)
            task.add_done_callback(self.stops.discard)


async def _hold_back(pipeline: AnswerPipeline) -> bool:
    """Whether streamed text is only a preview (workflow apps); a failure here shows in the answer."""
    try:
        return await pipeline.service.dify.app_mode() == WORKFLOW_MODE
    except DifyError:
        return False


async def answer(
    pipeline: AnswerPipeline,
    chat: ChatKey,
    message: str,
    *,
    out: TextIO,
    err: TextIO,
    base_url: str = "",
    current: _Answering | None = None,
    attachments: Sequence[IncomingFile] = (),
) -> bool:
    """Stream one answer to `out`; progress and notices go to `err`. True when it succeeded."""
    current = current or _Answering()
    current.active = True

    def sink(stream: ReplyStream) -> TerminalSink:
        current.sink = TerminalSink(out=out, err=err, hold_back=hold_back, base_url=base_url)
        current.stream = stream
        return current.sink

    try:
        hold_back = await _hold_back(pipeline)
        stats = await pipeline.answer(chat=chat, text=message, sink=sink, attachments=attachments)
    finally:
        current.active = False
        current.sink = current.stream = None
        if current.stops:
            await asyncio.wait(set(current.stops))
    return stats.outcome in ("done", "stopped")


class _Interrupts:
    """Ctrl-C stops the answer being written; a second one (at the prompt, or soon after) leaves."""

    def __init__(self, current: _Answering, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._current = current
        self._clock = clock
        self._last: float | None = None
        self.leave = asyncio.Event()
        self.hung_up = False

    def hang_up(self) -> None:
        """SIGTERM or SIGHUP: stop the answer being written and leave as /quit does (not with 130).

        The chat's own way out, not a cancellation: on Python 3.11 asyncio.wait_for, which redis-py sends
        commands through, can swallow a cancellation, and the chat would then wait for stdin forever."""
        self.hung_up = True
        self._current.stop()
        self.leave.set()

    def __call__(self) -> None:
        now = self._clock()
        answering = self._current.active
        if not answering or (self._last is not None and now - self._last < DOUBLE_INTERRUPT):
            self._current.stop()
            self.leave.set()
            return
        self._last = now
        self._current.stop()


async def _next_line(reader: LineReader, leave: asyncio.Event) -> str | None:
    """The next line, or None at the end of input or when the user leaves."""
    read = asyncio.ensure_future(reader.read())
    left = asyncio.ensure_future(leave.wait())
    await asyncio.wait({read, left}, return_when=asyncio.FIRST_COMPLETED)
    left.cancel()
    if read.done():
        return read.result()
    read.cancel()
    return None


@contextlib.asynccontextmanager
async def _hang_ups(leave: Callable[[], None]) -> AsyncIterator[None]:
    """SIGTERM and SIGHUP call `leave` from the event loop, taking them over from the handler `dify-bots chat`
    set: its SystemExit would surface wherever the main thread happens to be (inside asyncio's own code, or a
    finalizer that drops it), and the chat could then miss its clean-up or never end."""
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in HANG_UPS}
    for signum in HANG_UPS:
        loop.add_signal_handler(signum, leave)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            if handler is not None:
                signal.signal(signum, handler)


async def run_chat(settings: Settings, *, reader: LineReader | None = None) -> int:
    """Answer lines from stdin until it ends or the user leaves; 1 when every line asked failed."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="replace")  # undecodable bytes become U+FFFD, not lone surrogates
    interactive = sys.stdin.isatty()
    if reader is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        reader = LineReader(interactive=interactive, history=settings.data_dir / HISTORY_FILE)
    chat = terminal_chat_key()
    current = _Answering()
    interrupts = _Interrupts(current)
    loop = asyncio.get_running_loop()
    asked = failed = 0
    async with _hang_ups(interrupts.hang_up), open_core(settings) as core:
        pipeline = AnswerPipeline(core.service)
        loop.add_signal_handler(signal.SIGINT, interrupts)
        try:
            try:
                await core.dify.info()  # "Connected." only once Dify has answered
            except DifyError as exc:
                reason = explain(exc, base_url=settings.dify_base_url)
                raise StartupError(f"cannot use the Dify app: {reason}") from None
            if interactive:
                print(
                    "Connected. Type a message, /file PATH [question] to send a file, /voice PATH to speak, "
                    "/reset to start over, /quit to leave.",
                    file=sys.stderr,
                )
            while not interrupts.leave.is_set():
                line = await _next_line(reader, interrupts.leave)
                if line is None:
                    break
                message = line.strip()
                if not message:
                    continue
                if message in ("/quit", "/exit"):
                    break
                if message == "/reset":
                    await core.service.reset(chat)
                    print(text("reset_done"), file=sys.stderr)
                    continue
                attachments: list[IncomingFile] = []
                if is_file_command(message):
                    try:
                        request = parse_file_command(message)
                    except FileCommandError as exc:
                        print(str(exc), file=sys.stderr)
                        continue
                    attachments.append(local_file(request.path, voice=request.voice))
                    message = request.question
                asked += 1
                ok = await answer(
                    pipeline,
                    chat,
                    message,
                    attachments=attachments,
                    out=sys.stdout,
                    err=sys.stderr,
                    base_url=settings.dify_base_url,
                    current=current,
                )
                failed += not ok
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            reader.save_history()
    if interrupts.leave.is_set() and not interrupts.hung_up:
        return 130
    return 1 if asked and failed == asked else 0


def main(settings: Settings) -> int:
    """Run the chat; a thread still waiting on stdin must not keep the process (or its exit) waiting."""
    reader = LineReader(interactive=sys.stdin.isatty(), history=None)
    if reader.interactive:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        reader = LineReader(interactive=True, history=settings.data_dir / HISTORY_FILE)
    code = asyncio.run(run_chat(settings, reader=reader))
    if reader.pending:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
