"""`dify-bots chat`: a conversation with the Dify app in the terminal, scriptable through stdin."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from bots.core_stack import CoreStack, open_core
from core.answer import ContextReset, Done, Failed, Files, Progress, TextDelta, TextReplace
from core.conversations import ChatKey
from core.settings import Settings
from core.texts import friendly_error, progress_line, text


def terminal_chat_key() -> ChatKey:
    name = getpass.getuser() or "user"
    return ChatKey(platform="cli", scope=f"cli:{name}", user=f"cli-{name}")


async def answer(core: CoreStack, chat: ChatKey, message: str, *, out: TextIO, err: TextIO) -> bool:
    """Stream one answer to `out`; progress and notices go to `err`. True when it succeeded."""
    shown = ""
    async with core.service.reply(chat, message) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                out.write(event.text)
                shown += event.text
            elif isinstance(event, TextReplace):
                if event.text.startswith(shown):
                    out.write(event.text[len(shown) :])
                else:
                    out.write(("\n" if shown else "") + event.text)
                shown = event.text
            elif isinstance(event, Progress) and not shown:
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
                return True
            elif isinstance(event, Failed):
                out.write(("\n" if shown else "") + friendly_error(event.error) + "\n")
                out.flush()
                return False
            out.flush()
    return False


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
            await answer(core, chat, message, out=sys.stdout, err=sys.stderr)
