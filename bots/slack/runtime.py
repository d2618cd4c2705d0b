"""SlackBot: the bolt AsyncApp on our web server (HTTP mode) or over Socket Mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.handlers import SlackContext, register

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


ApiCallRecorder = Callable[[str, str], None]


class RecordingWebClient(AsyncWebClient):
    """AsyncWebClient that reports every Web API call's method and result (ok, rate_limited, error)."""

    def __init__(self, *, record: ApiCallRecorder | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._record = record

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        try:
            response = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            if self._record is not None:
                self._record(api_method, "rate_limited" if exc.response.status_code == 429 else "error")
            raise
        if self._record is not None:
            self._record(api_method, "ok")
        return response


class SlackBot:
    """One Slack app. `async with` checks the token (auth.test); then mount HTTP routes or start Socket Mode."""

    def __init__(
        self,
        *,
        token: str,
        api_base: str,
        context: SlackContext,
        signing_secret: str | None = None,
        app_token: str | None = None,
        on_api_call: ApiCallRecorder | None = None,
    ) -> None:
        base_url = api_base if api_base.endswith("/") else api_base + "/"
        self.client = RecordingWebClient(token=token, base_url=base_url, record=on_api_call)
        self.context = context
        self.app_token = app_token
        self.app = AsyncApp(
            client=self.client,
            # Socket Mode requests are not signed; HTTP mode needs the secret (checked by the composition root).
            signing_secret=signing_secret or "socket-mode-unused",
            process_before_response=False,
        )
        register(self.app, context)
        self._socket: Any = None
        self.identity: dict[str, Any] = {}

    async def __aenter__(self) -> Self:
        response = await self.client.auth_test()
        self.identity = dict(response.data) if isinstance(response.data, dict) else {}
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def mount(self, web_app: web.Application) -> None:
        """HTTP mode: Slack posts events and slash commands to /slack/events; bolt verifies signatures."""

        async def events(request: web.Request) -> web.Response:
            bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
            return await to_aiohttp_response(bolt_response)

        web_app.router.add_post(EVENTS_PATH, events)

    async def start_socket_mode(self) -> None:
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert self.app_token is not None
        self._socket = AsyncSocketModeHandler(self.app, self.app_token)
        await self._socket.connect_async()

    async def stop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.close_async(), timeout=5)
            self._socket = None
