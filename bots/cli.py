"""The `dify-bots` command: run | check | chat."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from core.logs import setup_logging
from core.settings import Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dify-bots", description="Put a Dify app into Telegram and Slack.")
    parser.add_argument("--env-file", default=".env", help="settings file to read besides the environment")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start every configured front door (Telegram, Slack, OpenAI API)")
    run.add_argument("--only", default="", help="comma-separated subset: telegram,slack,openai")
    commands.add_parser("check", help="verify the settings, Dify, the store and the platform tokens")
    commands.add_parser("chat", help="talk to the Dify app in this terminal (/reset starts over)")
    return parser


def _secrets(settings: Settings) -> list[str]:
    values = [settings.dify_api_key.get_secret_value()]
    for secret in (
        settings.telegram_bot_token,
        settings.telegram_webhook_secret,
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
    ):
        if secret is not None:
            values.append(secret.get_secret_value())
    values.extend(key.get_secret_value() for key in settings.openai_api_keys)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.env_file)
    except SettingsError as exc:
        print(f"dify-bots: invalid settings: {exc}", file=sys.stderr)
        return 2
    setup_logging(
        level="WARNING" if args.command == "chat" and settings.log_level == "INFO" else settings.log_level,
        fmt=settings.log_format,
        secrets=_secrets(settings),
    )
    try:
        if args.command == "chat":
            from bots.terminal_chat import run_chat

            return asyncio.run(run_chat(settings))
        if args.command == "check":
            from bots.check import run_check

            return asyncio.run(run_check(settings))
        from bots.app import run_service

        only = frozenset(part.strip() for part in args.only.split(",") if part.strip())
        return asyncio.run(run_service(settings, only=only))
    except KeyboardInterrupt:
        return 130
