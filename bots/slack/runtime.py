"""SlackBot: the bolt AsyncApp on our web server (HTTP mode) or over Socket Mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.front_door import ApiCallRecorder, DoorServices
from bots.slack.actions import register_actions
from bots.slack.budgets import SlackBudgets
from bots.slack.handlers import SlackContext, register
from bots.slack.intake import Rejected, bolt_request, is_signed
from bots.slack.reactions import AckReactions
from bots.slack.recovery import recover
from bots.slack.settings import SlackSettings
from bots.slack.welcome import register_welcome
from core.errors import StartupError
from core.journal import JournalEntry
from core.settings import SettingsError

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SOCKET_CONNECT_TIMEOUT = 15.0  # seconds to open the Socket Mode WebSocket at start-up


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


def create_door(section: SlackSettings, services: DoorServices) -> SlackBot:
    """The Slack front door for these settings (the plug-in's factory)."""
    assert section.bot_token is not None
    secret, app_token = section.signing_secret, section.app_token
    if app_token is None and secret is None:
        raise SettingsError(
            "SLACK_SIGNING_SECRET is not set; expected the Slack app's signing secret (HTTP mode), "
            "or set SLACK_APP_TOKEN for Socket Mode"
        )
    context = SlackContext(
        pipeline=services.pipeline,
        store=services.core.store,
        streaming=section.streaming,
        update_interval=section.update_interval,
        allowed_channels=section.allowed_channels,
        allowed_users=section.allowed_users,
        budgets=SlackBudgets(shared=services.core.budgets),
        show_sources=services.settings.show_sources,
        show_usage=services.settings.show_usage,
        reactions=AckReactions(enabled=services.settings.ack_reaction),
    )
    for name, value in services.tuning.items():
        setattr(context, name, value)
    return SlackBot(
        token=section.bot_token.get_secret_value(),
        api_base=section.api_base,
        context=context,
        signing_secret=secret.get_secret_value() if secret else None,
        app_token=app_token.get_secret_value() if app_token else None,
        on_api_call=services.record_api_call,
    )


class SlackBot:
    """The Slack front door. `async with` checks the token (auth.test); then mount HTTP routes or start Socket Mode."""

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
        # Socket Mode requests are not signed; HTTP mode needs the secret (checked by the composition root).
        self.signing_secret = signing_secret or "socket-mode-unused"
        self.app = AsyncApp(
            client=self.client,
            signing_secret=self.signing_secret,
            process_before_response=False,
            # Requests no listener takes reach the error handler, which acknowledges them in one log line
            # (bolt's default is a 404 and a multi-line hint).
            raise_error_for_unhandled_request=True,
        )
        register(self.app, context)
        register_actions(self.app, context)
        register_welcome(self.app, context)
        self._socket: Any = None
        self.identity: dict[str, Any] = {}

    async def __aenter__(self) -> Self:
        try:
            response = await self.client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            raise StartupError(
                f"Slack refused the bot token (auth.test: {error or exc.response.status_code}); check SLACK_BOT_TOKEN"
            ) from None
        except (aiohttp.ClientError, TimeoutError):
            raise StartupError("cannot reach the Slack Web API; check the network and SLACK_API_BASE") from None
        self.identity = dict(response.data) if isinstance(response.data, dict) else {}
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def mount(self, web_app: web.Application) -> None:
        """HTTP mode: Slack posts events and slash commands to /slack/events.

        The signature is checked first (401), then the body: one bolt cannot read gets 400, an event_callback
        without an event object 200, both in one log line; everything else goes to bolt."""
        if self.app_token:
            return

        async def events(request: web.Request) -> web.Response:
            raw = await request.read()
            timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
            signature = request.headers.get("X-Slack-Signature", "")
            if not is_signed(self.signing_secret, raw, timestamp=timestamp, signature=signature):
                log.info("slack: refused a request without a valid signature")
                return web.json_response({"error": "invalid request"}, status=401)
            try:
                bolt = bolt_request(raw, query=request.query_string, headers=request.headers)
            except Rejected as rejected:
                log.warning("slack: answered %d to a signed request: %s", rejected.status, rejected.reason)
                if rejected.status == 200:
                    return web.Response(status=200)
                return web.json_response({"error": "malformed request"}, status=rejected.status)
            return await to_aiohttp_response(await self.app.async_dispatch(bolt))

        web_app.router.add_post(EVENTS_PATH, events)

    async def start(self) -> None:
        if self.app_token:
            await self.start_socket_mode()

    async def stop_intake(self) -> None:
        await self.stop()

    async def recover(self, entry: JournalEntry) -> None:
        """Finish an answer a dead replica left in the journal (see bots/slack/recovery.py)."""
        await recover(self.context, self.client, entry)

    async def start_socket_mode(self) -> None:
        """Connect to Slack over Socket Mode; a refused app token or an unreachable socket stops start-up."""
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert self.app_token is not None
        handler: Any = AsyncSocketModeHandler(self.app, self.app_token)  # its methods carry no type hints
        self._socket = handler
        try:
            # The first URL is asked for here: the client itself would retry a refused token for ever.
            opened = await self.client.apps_connections_open(app_token=self.app_token)
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            raise StartupError(
                f"Slack refused the app token (apps.connections.open: {error or exc.response.status_code}); "
                "check SLACK_APP_TOKEN (an app-level token with connections:write)"
            ) from None
        except (aiohttp.ClientError, TimeoutError):
            raise StartupError("cannot reach the Slack Web API; check the network and SLACK_API_BASE") from None
        handler.client.wss_uri = str(opened["url"])
        try:
            await asyncio.wait_for(handler.connect_async(), timeout=SOCKET_CONNECT_TIMEOUT)
        except TimeoutError:
            raise StartupError("cannot open the Slack Socket Mode connection; check the network") from None
        log.info("slack: connected over Socket Mode")

    async def stop(self) -> None:
        socket, self._socket = self._socket, None
        if socket is None:
            return
        client = socket.client
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket.close_async(), timeout=5)
        # close() cancels the client's loops without waiting for them: wait, so none outlives the door.
        loops = [client.message_processor, client.current_session_monitor, client.message_receiver]
        await asyncio.gather(*(task for task in loops if task is not None), return_exceptions=True)
