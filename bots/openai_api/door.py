"""OpenAIDoor: the OpenAI-compatible endpoint as a running front door of `dify-bots run`."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from bots.front_door import DoorServices
from bots.openai_api.routes import OpenAIApi
from bots.openai_api.settings import OpenAISettings

log = logging.getLogger(__name__)

TUNABLE = ("system_prefix", "clock")  # knobs tests may set through DoorServices.tuning


class OpenAIDoor:
    """Routes on the shared web server; no connection of its own to open or close."""

    def __init__(self, section: OpenAISettings, services: DoorServices) -> None:
        options: dict[str, Any] = {name: services.tuning[name] for name in TUNABLE if name in services.tuning}
        self.api = OpenAIApi(
            pipeline=services.pipeline,
            keys=[key.get_secret_value() for key in section.api_keys],
            model=section.model_name,
            system_input=section.system_input,
            max_image_bytes=section.max_image_mb * 1024 * 1024,
            private_image_hosts=section.image_private_hosts,
            **options,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.api.close()

    def mount(self, app: web.Application) -> None:
        self.api.register(app)

    async def start(self) -> None:
        log.info("OpenAI-compatible API ready at /v1")

    async def stop_intake(self) -> None:
        self.api.stop_intake()
