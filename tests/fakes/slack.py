"""Strict fake Slack Web API on a real socket; file hosting and uploads live in slack_files, and the signed
Events API / slash-command request builders in slack_payloads (both re-exported here)."""

from __future__ import annotations

import itertools
import json
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.fakes.local_server import come_back, go_offline, serve_locally
from tests.fakes.slack_base import ApiError as _ApiError
from tests.fakes.slack_base import Args, json_list
from tests.fakes.slack_blocks import check_blocks
from tests.fakes.slack_files import SlackFiles
from tests.fakes.slack_payloads import dm_event, event_body, mention_event, signed_headers, slash_command_body

__all__ = [
    "BAD_GATEWAY_HTML",
    "DEFAULT_RATE_LIMITS",
    "OAUTH_SCOPES",
    "RATE_WINDOW_SECONDS",
    "ApiCall",
    "Args",
    "FakeSlack",
    "StoredMessage",
    "dm_event",
    "event_body",
    "mention_event",
    "signed_headers",
    "slash_command_body",
]

DEFAULT_RATE_LIMITS: dict[str, int] = {
    "chat.update": 50,
    "chat.postMessage": 60,
    "chat.startStream": 20,
    "chat.stopStream": 20,
    "chat.appendStream": 100,
    # Tier 4
    "files.info": 100,
    "files.getUploadURLExternal": 100,
    "files.completeUploadExternal": 100,
}
OAUTH_SCOPES = "app_mentions:read,chat:write,im:history,commands,files:read,files:write"
RATE_WINDOW_SECONDS = 60.0
MAX_BODY = 1024**3  # bytes a request may carry (uploads to an upload URL are the large ones)
# What a proxy in front of the Web API answers when the API behind it is down.
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
# Methods that took a multipart body; they answer (method_deprecated) instead of failing to parse it.
MULTIPART_METHODS = frozenset({"files.upload"})
CHUNK_TYPES = frozenset({"markdown_text", "task_update", "plan_update", "blocks"})


@dataclass
class ApiCall:
    """One request to `/api/{method}`; `args` merges the JSON or form body with the query (token removed)."""

    method: str
    args: Args
    at: float
    ok: bool = True
    error: str | None = None
    status: int = 200


@dataclass
class StoredMessage:
    """A message the bot posted.

    `text` is what users see now. `streaming` marks a message created by `chat.startStream` (it stays True
    after the stream ends; see `stopped` and `FakeSlack.stream_active`). `history` holds every visible text
    the message has had, starting with the first one; `updates` counts successful `chat.update` calls.
    """

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    streaming: bool = False
    stream_started_at: float | None = None
    stopped: bool = False
    updates: int = 0
    history: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False


@dataclass
class _Fault:
    error: str
    retry_after: int


class FakeSlack:
    """Fake Slack Web API: `async with FakeSlack() as fake:`, then `AsyncWebClient(base_url=fake.api_url)`."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "B1",
        clock: Callable[[], float] = time.monotonic,
        native_streaming: bool = True,
        stream_ttl: float = 300.0,
        update_max_chars: int = 4000,
        markdown_max_chars: int = 12000,
        rate_limits: dict[str, int] | None = None,
        retry_after: int = 1,
        scopes: str = OAUTH_SCOPES,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.native_streaming = native_streaming
        self.stream_ttl = stream_ttl
        self.update_max_chars = update_max_chars
        self.markdown_max_chars = markdown_max_chars
        self.rate_limits: dict[str, int] = dict(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)
        self.retry_after = retry_after
        self.scopes = scopes  # comma-separated, as the x-oauth-scopes header shows them

        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], StoredMessage] = {}
        self.responses: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.reactions: dict[tuple[str, str], list[str]] = {}
        self.rate_limited = 0

        self._clock = clock
        self._ts_seq = itertools.count(1)
        self._response_seq = itertools.count(1)
        self._faults: dict[str, deque[_Fault]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._site: web.BaseSite | None = None
        self._port = 0
        self.offline = False
        # Set by FakeSocketMode.attach: answers apps.connections.open, given the Authorization header's token.
        self.socket_mode: Callable[[str | None], Args] | None = None
        self._handlers: dict[str, Callable[[Args], Args]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "chat.postEphemeral": self._post_ephemeral,
            "assistant.threads.setStatus": self._set_status,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "apps.connections.open": self._connections_open,
        }
        self.files = SlackFiles(
            bot_token=bot_token, team_id=team_id, base_url=lambda: self.url, scopes=self._granted_scopes
        )
        self._handlers.update(self.files.handlers())

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/api/{method}", self._handle_api)
        app.router.add_get("/api/{method}", self._handle_api)
        app.router.add_post("/response/{response_id}", self._handle_response)
        self.files.add_routes(app)
        self._runner, port = await serve_locally(app)
        self._port = port
        self._site = next(iter(self._runner.sites), None)
        self._url = f"http://127.0.0.1:{port}"
        return self

    async def refuse_connections(self) -> None:
        """The Web API goes away: open connections are dropped and new ones refused until `accept_connections`."""
        assert self._runner is not None
        self.offline = True
        await go_offline(self._runner, self._site)
        self._site = None

    async def accept_connections(self) -> None:
        """The Web API is back, on the same port."""
        assert self._runner is not None
        if self._site is None:
            self._site = await come_back(self._runner, self._port)
        self.offline = False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeSlack is not running; use it as an async context manager")
        return self._url

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # ------------------------------------------------------------------ test controls and queries

    def fail_next(self, method: str, error: str, *, count: int = 1, retry_after: int | None = None) -> None:
        """Answer the next `count` calls of `method` with `error` ("ratelimited" means HTTP 429, "bad_gateway"
        a proxy's HTML 502 page)."""
        fault = _Fault(error, self.retry_after if retry_after is None else retry_after)
        self._faults.setdefault(method, deque()).extend(fault for _ in range(count))

    def thread(self, channel: str, thread_ts: str) -> list[StoredMessage]:
        return [
            msg
            for msg in self.messages.values()
            if msg.channel == channel and msg.thread_ts == thread_ts and not msg.deleted
        ]

    def visible_text(self, channel: str, ts: str) -> str:
        msg = self.messages[(channel, ts)]
        return "" if msg.deleted else msg.text

    def count(self, method: str, *, ok: bool | None = None) -> int:
        """Calls of `method` recorded so far (all of them, or only successful / failed ones)."""
        return sum(1 for call in self.calls if call.method == method and (ok is None or call.ok == ok))

    def response_url(self) -> str:
        return f"{self.url}/response/{next(self._response_seq)}"

    def stream_active(self, channel: str, ts: str) -> bool:
        return self._stream_active(self.messages[(channel, ts)])

    def _granted_scopes(self) -> frozenset[str]:
        return frozenset(scope.strip() for scope in self.scopes.split(",") if scope.strip())

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = ApiCall(method=method, args={}, at=self._clock())
        try:
            call.args = await _read_args(request, multipart=method in MULTIPART_METHODS)
        except _ApiError as exc:
            return self._answer(call, {"ok": False, "error": exc.error})

        header = request.headers.get("Authorization", "")
        param_token = call.args.pop("token", None)
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else param_token
        if method == "apps.connections.open" and self.socket_mode is not None:
            return self._answer(call, self.socket_mode(token if header.startswith("Bearer ") else None))
        if token != self.bot_token:
            return self._answer(call, {"ok": False, "error": "invalid_auth"})

        faults = self._faults.get(method)
        if faults:
            fault = faults.popleft()
            if fault.error == "ratelimited":
                return self._too_many(call, fault.retry_after)
            if fault.error == "bad_gateway":
                call.ok, call.error, call.status = False, "bad_gateway", 502
                self.calls.append(call)
                return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")
            return self._answer(call, {"ok": False, "error": fault.error})

        if not self._admit(method, call.at):
            self.rate_limited += 1
            return self._too_many(call, self.retry_after)

        handler = self._handlers.get(method)
        if handler is None:
            return self._answer(call, {"ok": False, "error": "unknown_method"})
        try:
            body = handler(call.args)
        except _ApiError as exc:
            return self._answer(call, {"ok": False, "error": exc.error})
        headers = {"x-oauth-scopes": self.scopes} if method == "auth.test" else None
        return self._answer(call, body, headers=headers)

    async def _handle_response(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.content_type == "application/json":
            self.responses.append(json.loads(raw or b"{}"))
        else:
            self.responses.append(dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True)))
        return web.Response(text="ok")

    def _answer(
        self, call: ApiCall, body: Args, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        call.ok = bool(body.get("ok"))
        call.error = body.get("error")
        call.status = status
        self.calls.append(call)
        return web.json_response(body, status=status, headers=headers)

    def _too_many(self, call: ApiCall, retry_after: int) -> web.Response:
        body = {"ok": False, "error": "ratelimited"}
        return self._answer(call, body, status=429, headers={"Retry-After": str(retry_after)})

    def _admit(self, method: str, now: float) -> bool:
        limit = self.rate_limits.get(method)
        if limit is None:
            return True
        window = self._windows.setdefault(method, deque())
        while window and window[0] <= now - RATE_WINDOW_SECONDS:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    # ------------------------------------------------------------------ shared validation

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts_seq):06d}"

    def _find(self, args: Args) -> StoredMessage:
        channel = _channel(args)
        msg = self.messages.get((channel, str(args.get("ts") or "")))
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        return msg

    def _stream_active(self, msg: StoredMessage) -> bool:
        if not msg.streaming or msg.stopped or msg.deleted or msg.stream_started_at is None:
            return False
        return self._clock() - msg.stream_started_at <= self.stream_ttl

    def _live_stream(self, args: Args) -> StoredMessage:
        msg = self._find(args)
        if not self._stream_active(msg):
            raise _ApiError("message_not_in_streaming_state")
        return msg

    def _content(self, args: Args) -> tuple[str, list[dict[str, Any]]]:
        """Validate text / markdown_text / blocks; return (visible text, blocks)."""
        text = args.get("text")
        markdown = args.get("markdown_text")
        blocks = _parse_blocks(args.get("blocks"))
        if markdown is not None and (text is not None or args.get("blocks") is not None):
            raise _ApiError("invalid_arguments")
        if not text and not markdown and not blocks:
            raise _ApiError("no_text")
        if text is not None and len(str(text)) > self.update_max_chars:
            raise _ApiError("msg_too_long")
        if markdown is not None and len(str(markdown)) > self.markdown_max_chars:
            raise _ApiError("msg_too_long")
        markdown_in_blocks = sum(len(str(b.get("text", ""))) for b in blocks if b.get("type") == "markdown")
        if markdown_in_blocks > self.markdown_max_chars:
            raise _ApiError("msg_too_long")
        if markdown:
            return str(markdown), blocks
        return (_blocks_text(blocks) or str(text or "")), blocks

    def _stream_text(self, args: Args, *, blocks: bool = False) -> str:
        """Validate markdown_text / chunks of a stream call; return the markdown it adds. Only
        chat.stopStream takes `blocks` (they go under the finished message)."""
        if not blocks and args.get("blocks") is not None:
            raise _ApiError("invalid_arguments")
        parts: list[str] = []
        if args.get("markdown_text") is not None:
            parts.append(str(args["markdown_text"]))
        for chunk in _parse_chunks(args.get("chunks")):
            if chunk["type"] == "markdown_text":
                parts.append(chunk["text"])
        added = "".join(parts)
        if len(added) > self.markdown_max_chars:
            raise _ApiError("msg_too_long")
        return added

    # ------------------------------------------------------------------ methods

    def _auth_test(self, args: Args) -> Args:
        return {
            "ok": True,
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }

    def _post_message(self, args: Args) -> Args:
        channel = _channel(args)
        text, blocks = self._content(args)
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        ts = self._next_ts()
        self.messages[(channel, ts)] = StoredMessage(
            channel=channel, ts=ts, thread_ts=thread_ts, text=text, history=[text], blocks=blocks
        )
        return {"ok": True, "channel": channel, "ts": ts, "message": self._message_json(ts, text, thread_ts)}

    def _update(self, args: Args) -> Args:
        msg = self._find(args)
        if self._stream_active(msg):
            raise _ApiError("streaming_state_conflict")
        text, blocks = self._content(args)
        msg.text = text
        if args.get("blocks") is not None:  # without `blocks`, Slack keeps the message's blocks
            msg.blocks = blocks
        msg.updates += 1
        msg.history.append(text)
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "text": text}

    def _delete(self, args: Args) -> Args:
        msg = self._find(args)
        msg.deleted = True
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _start_stream(self, args: Args) -> Args:
        if not self.native_streaming:
            raise _ApiError("feature_not_enabled")
        channel = _channel(args)
        thread_ts = args.get("thread_ts")
        if not thread_ts:
            raise _ApiError("invalid_arguments")
        if not channel.startswith("D"):
            if not args.get("recipient_user_id"):
                raise _ApiError("missing_recipient_user_id")
            if not args.get("recipient_team_id"):
                raise _ApiError("missing_recipient_team_id")
        text = self._stream_text(args)
        ts = self._next_ts()
        self.messages[(channel, ts)] = StoredMessage(
            channel=channel,
            ts=ts,
            thread_ts=str(thread_ts),
            text=text,
            streaming=True,
            stream_started_at=self._clock(),
            history=[text],
        )
        return {"ok": True, "channel": channel, "ts": ts, "message": self._message_json(ts, text, thread_ts)}

    def _append_stream(self, args: Args) -> Args:
        msg = self._live_stream(args)
        added = self._stream_text(args)
        if added:
            msg.text += added
            msg.history.append(msg.text)
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _stop_stream(self, args: Args) -> Args:
        msg = self._live_stream(args)
        added = self._stream_text(args, blocks=True)
        blocks = _parse_blocks(args.get("blocks"))
        if added:
            msg.text += added
            msg.history.append(msg.text)
        msg.blocks = blocks
        msg.stopped = True
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _post_ephemeral(self, args: Args) -> Args:
        _channel(args)
        if not args.get("user"):
            raise _ApiError("user_not_found")
        self._content(args)
        self.ephemerals.append(dict(args))
        return {"ok": True, "message_ts": self._next_ts()}

    def _set_status(self, args: Args) -> Args:
        if not args.get("channel_id") or not args.get("thread_ts") or not isinstance(args.get("status"), str):
            raise _ApiError("invalid_arguments")
        self.statuses.append(dict(args))
        return {"ok": True}

    def _reaction_key(self, args: Args) -> tuple[tuple[str, str], str]:
        if not args.get("channel") or not args.get("timestamp"):
            raise _ApiError("no_item_specified")
        if not args.get("name"):
            raise _ApiError("invalid_name")
        return (str(args["channel"]), str(args["timestamp"])), str(args["name"])

    def _reactions_add(self, args: Args) -> Args:
        key, name = self._reaction_key(args)
        names = self.reactions.setdefault(key, [])
        if name in names:
            raise _ApiError("already_reacted")
        names.append(name)
        return {"ok": True}

    def _reactions_remove(self, args: Args) -> Args:
        key, name = self._reaction_key(args)
        names = self.reactions.get(key, [])
        if name not in names:
            raise _ApiError("no_reaction")
        names.remove(name)
        return {"ok": True}

    def _connections_open(self, args: Args) -> Args:
        raise _ApiError("not_allowed")

    def _message_json(self, ts: str, text: str, thread_ts: str | None) -> Args:
        message: Args = {
            "type": "message",
            "ts": ts,
            "text": text,
            "bot_id": self.bot_id,
            "user": self.bot_user_id,
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
        return message


async def _read_args(request: web.Request, *, multipart: bool = False) -> Args:
    args: Args = {}
    if multipart and request.content_type.startswith("multipart/"):
        form = await request.post()
        args.update((name, value) for name, value in form.items() if isinstance(value, str))
        args.update(request.query)
        return args
    raw = await request.read()
    if raw:
        if request.content_type == "application/json":
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise _ApiError("invalid_json") from None
            if not isinstance(parsed, dict):
                raise _ApiError("invalid_json")
            args.update(parsed)
        elif request.content_type.startswith("multipart/"):
            raise _ApiError("invalid_form_data")  # the Web API takes no multipart (files.upload is retired)
        else:
            args.update(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
    args.update(request.query)
    return args


def _channel(args: Args) -> str:
    channel = args.get("channel")
    if not channel:
        raise _ApiError("channel_not_found")
    return str(channel)


def _parse_blocks(value: Any) -> list[dict[str, Any]]:
    blocks = json_list(value, "invalid_blocks")
    check_blocks(blocks)
    return blocks


def _parse_chunks(value: Any) -> list[dict[str, Any]]:
    chunks = json_list(value, "invalid_chunks")
    for chunk in chunks:
        if chunk.get("type") not in CHUNK_TYPES:
            raise _ApiError("invalid_chunks")
        if chunk["type"] == "markdown_text" and not isinstance(chunk.get("text"), str):
            raise _ApiError("invalid_chunks")
    return chunks


def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for block in blocks:
        if block["type"] == "markdown":
            parts.append(block["text"])
        elif block["type"] in ("section", "header") and isinstance(block.get("text"), dict):
            parts.append(str(block["text"].get("text", "")))
    return "\n".join(parts)
