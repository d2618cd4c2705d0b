"""The `dify-bots` command: run | check | chat."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType

from bots import event_loop, registry
from bots.config import load
from core.errors import StartupError
from core.logs import setup_logging
from core.settings import Config, SettingsError

DEFAULT_ENV_FILE = ".env"
CHAT_LOG = "chat.log"


def _version() -> str:
    try:
        return version("dify-bots")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    # --env-file is accepted before or after the subcommand; SUPPRESS keeps a later default from erasing it.
    env_file = argparse.ArgumentParser(add_help=False)
    env_file.add_argument(
        "--env-file",
        default=argparse.SUPPRESS,
        help=f"settings file to read besides the environment (default: {DEFAULT_ENV_FILE}, if present)",
    )
    parser = argparse.ArgumentParser(
        prog="dify-bots",
        description="Put a Dify app into your chats.",
        parents=[env_file],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doors = ", ".join(registry.names())
    run = commands.add_parser(
        "run",
        parents=[env_file],
        help="start every configured front door",
        description=f"Start every configured front door ({doors}) on one web server, with /healthz, /readyz "
        "and /metrics. SIGTERM finishes answers in flight within SHUTDOWN_GRACE.",
    )
    run.add_argument("--only", default="", help=f"comma-separated subset of the front doors: {doors}")
    commands.add_parser(
        "check",
        parents=[env_file],
        help="verify the settings, Dify, the store and the platform tokens",
        description="Check each thing the bot depends on and print one ok/FAIL line for each; "
        "exit 1 when any check fails.",
    )
    chat = commands.add_parser(
        "chat",
        parents=[env_file],
        help="talk to the Dify app in this terminal",
        description="A conversation with the Dify app in this terminal (/reset starts over, /quit leaves, "
        f"Ctrl-C stops an answer). Lines piped to stdin are asked one by one. Logs go to DATA_DIR/{CHAT_LOG}.",
    )
    chat.add_argument("-v", "--verbose", action="store_true", help="write log lines to stderr instead of the log file")
    return parser


def _load(env_file: str | None) -> Config:
    if env_file is not None and not Path(env_file).is_file():
        raise SettingsError(f"the settings file {env_file} does not exist")
    default = Path(DEFAULT_ENV_FILE)
    return load(env_file if env_file is not None else (default if default.is_file() else None))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _load(getattr(args, "env_file", None))
    except SettingsError as exc:
        print(f"dify-bots: invalid settings: {exc}", file=sys.stderr)
        return 2
    settings = config.core
    quiet_chat = args.command == "chat" and not args.verbose  # log lines must not mix with the conversation
    try:
        setup_logging(
            level=settings.log_level,
            fmt=settings.log_format,
            secrets=config.secrets(),
            file=settings.data_dir / CHAT_LOG if quiet_chat else None,
        )
    except OSError as exc:
        reason = "it is a file, not a directory" if settings.data_dir.is_file() else exc.strerror or "not writable"
        print(
            f"dify-bots: DATA_DIR {settings.data_dir} cannot hold {CHAT_LOG} ({reason}); "
            "point DATA_DIR at a writable directory",
            file=sys.stderr,
        )
        return 1
    try:
        if args.command == "chat":
            from bots import terminal_chat

            _leave_on_hangup()
            return terminal_chat.main(settings)
        if args.command == "check":
            from bots.check import run_check

            return event_loop.run(run_check(config), choice=settings.event_loop)
        from bots.app import run_service

        only = frozenset(part.strip() for part in args.only.split(",") if part.strip())
        return event_loop.run(run_service(config, only=only), choice=settings.event_loop)
    except StartupError as exc:
        print(f"dify-bots: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _leave_on_hangup() -> None:
    """SIGTERM and SIGHUP leave at once until the chat's event loop takes them over (nothing to clean up yet)."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)
