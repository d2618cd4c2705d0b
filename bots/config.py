"""The one settings loader of `dify-bots`: core's settings plus the section of every registered front door."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots.registry import plugins
from core.settings import Config, Settings, load_config


def load(env_file: str | Path | None = ".env", **overrides: Any) -> Config:
    """Read the environment and `env_file` once for core and every front door (SettingsError on problems)."""
    return load_config(env_file, {plugin.name: plugin.settings for plugin in plugins()}, **overrides)


def setting_names() -> list[str]:
    """Every environment variable dify-bots reads: core's, then each front door's."""
    names = [name.upper() for name in Settings.model_fields]
    for plugin in plugins():
        names.extend(plugin.settings.env_names())
    return names
