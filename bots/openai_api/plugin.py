"""The OpenAI-compatible endpoint as the registry sees it: settings, `check` lines and a lazy factory."""

from __future__ import annotations

from bots.front_door import Check, FrontDoorPlugin, lazy_factory
from bots.openai_api.settings import OpenAISettings
from core.settings import Settings

_ALSO_SET = ("model_name", "system_input", "max_image_mb", "image_private_hosts")


def _configured(section: OpenAISettings) -> bool:
    return bool(section.api_keys)


def _warnings(section: OpenAISettings) -> list[str]:
    if section.api_keys:
        return []
    others = [name for name in _ALSO_SET if name in section.model_fields_set]
    if not others:
        return []
    names = ", ".join(f"OPENAI_{name.upper()}" for name in others)
    return [f"{names} set but OPENAI_API_KEYS is not: the OpenAI-compatible API stays off"]


def _checks(section: OpenAISettings, settings: Settings) -> list[tuple[str, Check]]:
    if not section.api_keys:
        return []

    async def endpoint() -> str:
        count = len(section.api_keys)
        where = f"http://{settings.http_host}:{settings.http_port}/v1"
        return f"{count} key{'s' if count != 1 else ''}, model {section.model_name!r}, at {where}"

    return [("OpenAI-compatible API", endpoint)]


PLUGIN = FrontDoorPlugin(
    name="openai",
    settings=OpenAISettings,
    configured=_configured,
    create=lazy_factory("bots.openai_api.door:OpenAIDoor"),
    warnings=_warnings,
    checks=_checks,
)
