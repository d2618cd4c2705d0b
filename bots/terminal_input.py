"""Lines typed into `dify-bots chat`: read on daemon threads, with readline editing and history when interactive."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from pathlib import Path

PROMPT = "you> "
HISTORY_LENGTH = 1000


class LineReader:
    """Lines from stdin on daemon threads, one per request, so a prompt shows only after the answer."""

    def __init__(self, *, interactive: bool, history: Path | None) -> None:
        self.interactive = interactive
        self.pending = False  # a thread still blocks on stdin: the process must not wait for it at exit
        self._history = history
        if history is not None and interactive:
            _start_readline(history)

    async def read(self) -> str | None:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[str | None] = loop.create_future()

        def deliver(line: str | None) -> None:
            if not result.done():
                result.set_result(line)

        def run() -> None:
            line = self._read_line()
            self.pending = False
            with contextlib.suppress(RuntimeError):  # the loop is gone: the chat has ended
                loop.call_soon_threadsafe(deliver, line)

        self.pending = True
        threading.Thread(target=run, name="stdin", daemon=True).start()
        return await result

    def _read_line(self) -> str | None:
        try:
            if self.interactive:
                return input(PROMPT)
            line = sys.stdin.readline()
        except (EOFError, OSError, ValueError):
            return None
        return line.rstrip("\r\n") if line else None

    def save_history(self) -> None:
        if self._history is not None and self.interactive:
            with contextlib.suppress(ImportError, OSError):
                import readline

                readline.write_history_file(str(self._history))


def _start_readline(history: Path) -> None:
    """Line editing and history for `input()` (where the platform has readline)."""
    try:
        import readline
    except ImportError:
        return
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(str(history))
