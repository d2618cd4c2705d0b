"""A front door defined here, registered through the registry, answers through the shared pipeline."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pytest
from aiohttp import web
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bots import registry
from bots.app import BotService, configured_doors
from bots.config import load, setting_names
from bots.front_door import DoorServices, FrontDoorPlugin
from core.conversations import ChatKey
from core.render.renderer import StreamRenderer
from core.render.surface import Handle, SurfaceLimits
from core.render.throttle import Throttle
from core.service import ReplyStream
from core.settings import Settings, SettingsSection
from tests.fakes.dify import Answer, FakeDify

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_NAMES = re.compile(r"telegram|slack|openai", re.IGNORECASE)


class LoopbackSettings(SettingsSection):
    model_config = SettingsConfigDict(env_prefix="LOOPBACK_")

    enabled: bool = Field(False, description="true to answer POST /loopback/{chat}")


class MemorySurface:
    """A chat that keeps its messages in a list and counts every frame it was shown."""

    limits = SurfaceLimits(max_length=4000)

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.frames = 0

    def measure(self, markdown: str) -> int:
        return len(markdown)

    async def send(self, markdown: str, *, final: bool) -> Handle:
        self.messages.append(markdown if final else markdown + " ▌")
        self.frames += 1
        return len(self.messages) - 1

    async def edit(self, handle: Handle, markdown: str, *, final: bool) -> Handle:
        self.messages[handle] = markdown if final else markdown + " ▌"
        self.frames += 1
        return handle

    async def delete(self, handle: Handle) -> None:
        self.messages[handle] = ""

    async def typing(self) -> None:
        return None

    async def status(self, text: str) -> None:
        return None


class LoopbackDoor:
    """Text in over HTTP, the streamed answer out onto a MemorySurface, its messages as the response."""

    def __init__(self, services: DoorServices) -> None:
        self._pipeline = services.pipeline
        self.started = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/loopback/{chat}", self._message)

    async def start(self) -> None:
        self.started = True

    async def stop_intake(self) -> None:
        self.started = False

    async def _message(self, request: web.Request) -> web.Response:
        chat_id = request.match_info["chat"]
        surface = MemorySurface()

        def renderer(stream: ReplyStream) -> StreamRenderer:
            return StreamRenderer(surface, throttle=Throttle(0.01), status_delay=5.0, stop_source=stream.stop)

        chat = ChatKey(platform="loopback", scope=f"loopback:{chat_id}", user=f"loopback-{chat_id}")
        stats = await self._pipeline.answer(chat=chat, text=await request.text(), sink=renderer)
        return web.json_response({"messages": surface.messages, "frames": surface.frames, "outcome": stats.outcome})


PLUGIN: FrontDoorPlugin[LoopbackSettings] = FrontDoorPlugin(
    name="loopback",
    settings=LoopbackSettings,
    configured=lambda section: section.enabled,
    create=lambda section, services: LoopbackDoor(services),
)


async def post(port: int, path: str, body: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=body.encode()) as response,
    ):
        assert response.status == 200
        result: dict[str, Any] = await response.json()
        return result


async def test_a_registered_front_door_answers_through_the_shared_pipeline(redis_url: str, key_prefix: str) -> None:
    answer = "Refunds are accepted within 30 days of delivery, no questions asked."
    with registry.registered(PLUGIN):
        assert "LOOPBACK_ENABLED" in setting_names()
        async with FakeDify() as dify:
            config = load(
                None,
                dify_api_key=dify.api_key,
                dify_base_url=dify.url,
                redis_url=redis_url,
                redis_prefix=key_prefix,
                http_host="127.0.0.1",
                http_port=0,
                loopback_enabled="true",
            )
            assert [plugin.name for plugin in configured_doors(config)] == ["loopback"]
            dify.script(Answer(answer, delay=0.03), Answer("Yes, within 30 days."))
            async with BotService(config) as service:
                assert service.port is not None
                first = await post(service.port, "/loopback/7", "What is the refund window?")
                second = await post(service.port, "/loopback/7", "Even for sale items?")
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{service.port}/metrics") as response,
                ):
                    metrics = await response.text()
    assert registry.names() == ["telegram", "slack", "openai"]
    assert first == {"messages": [answer], "frames": first["frames"], "outcome": "done"}
    assert first["frames"] >= 2  # streamed: at least one interim frame before the final one
    assert second["messages"] == ["Yes, within 30 days."]
    requests = dify.chat_requests()
    assert [request["query"] for request in requests] == ["What is the refund window?", "Even for sale items?"]
    assert {request["user"] for request in requests} == {"loopback-7"}
    assert not requests[0].get("conversation_id")
    assert requests[1]["conversation_id"]  # the second message continues the first one's conversation
    assert 'difybots_answers_total{outcome="done",platform="loopback"} 2.0' in metrics


def test_the_composition_root_names_no_platform() -> None:
    for name in ("bots/app.py", "bots/cli.py", "bots/check.py"):
        source = (ROOT / name).read_text(encoding="utf-8")
        imported = [
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        ]
        assert [module for module in imported if module and PLATFORM_NAMES.search(module)] == [], name
        assert PLATFORM_NAMES.findall(source) == [], name


def test_core_settings_hold_no_platform_field() -> None:
    assert [name for name in Settings.model_fields if PLATFORM_NAMES.search(name)] == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"slack_app_token": "xapp-1"}, "SLACK_APP_TOKEN set but SLACK_BOT_TOKEN is not"),
        ({"telegram_webhook_url": "https://bot.example.com/tg"}, "TELEGRAM_WEBHOOK_URL set but TELEGRAM_BOT_TOKEN"),
        ({"slack_bot_token": "xoxb-1"}, "SLACK_BOT_TOKEN without SLACK_SIGNING_SECRET"),
    ],
)
def test_half_configured_front_doors_are_warned_about(values: dict[str, str], expected: str) -> None:
    config = load(None, dify_api_key="app-x", **values)
    warnings = [line for plugin in registry.plugins() for line in plugin.warnings(config.section(plugin.name))]
    assert any(expected in line for line in warnings), warnings
