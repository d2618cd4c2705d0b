"""Strict fake of Slack's Socket Mode: `apps.connections.open` hands out a WebSocket URL; envelopes must be acked."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import WSMsgType, web

from tests.fakes.local_server import serve_locally

Args = dict[str, Any]

ACK_TIMEOUT = 3.0  # seconds Slack waits for an envelope's acknowledgement before it counts as failed
MAX_CONNECTIONS = 10  # open connections one app-level token may hold
ENVELOPE_TYPES = frozenset({"events_api", "slash_commands", "interactive"})
DISCONNECT_REASONS = frozenset({"warning", "refresh_requested", "link_disabled", "too_many_websockets"})
# Reasons after which Slack closes the connection itself (a warning only announces a refresh).
CLOSING_REASONS = frozenset({"refresh_requested", "link_disabled", "too_many_websockets"})


@dataclass
class Envelope:
    """One delivery: what was sent, on which connection, and how (and when) the client acknowledged it."""

    envelope_id: str
    type: str
    payload: Args
    accepts_response_payload: bool
    retry_attempt: int
    retry_reason: str
    connection: int
    sent_at: float
    acked_at: float | None = None
    acked_on: int | None = None
    response: Args | None = None  # the ack's payload: what Slack shows for a slash command, for example
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def wire(self) -> Args:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
        }


@dataclass
class Connection:
    """One WebSocket opened with a ticket from `apps.connections.open`."""

    number: int
    ws: web.WebSocketResponse = field(repr=False)
    opened_at: float
    disconnect_reason: str | None = None  # the last `disconnect` sent on it
    closed: bool = False
    frames: list[str] = field(default_factory=list)  # every text frame the client sent


class FakeSocketMode:
    """Fake Socket Mode server: `async with FakeSocketMode() as socket:`, `socket.attach(fake_slack)`, then
    `deliver(...)` envelopes to the bot's connection.

    Strict like Slack: only the app-level token opens a connection, a URL works once, the client gets `hello`
    first, and every envelope must be acknowledged (`{"envelope_id": ...}`, once) within `ack_timeout`
    seconds of `clock`. Everything the client gets wrong is in `problems()`; tests assert it is empty."""

    def __init__(
        self,
        *,
        app_token: str = "xapp-1-A1-1-test",
        app_id: str = "A1",
        ack_timeout: float = ACK_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        close_after_disconnect: float = 0.5,
    ) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self.close_after_disconnect = close_after_disconnect
        self.connections: list[Connection] = []
        self.envelopes: list[Envelope] = []
        self.opened = 0  # successful apps.connections.open calls
        self.refused = 0  # apps.connections.open calls with a wrong token
        self._clock = clock
        self._problems: list[str] = []
        self._tickets: set[str] = set()
        self._numbers = itertools.count(1)
        self._changed = asyncio.Condition()
        self._closers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._runner, port = await serve_locally(app)
        self._url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in list(self._closers):
            task.cancel()
        await asyncio.gather(*self._closers, return_exceptions=True)
        for connection in self.connections:
            if not connection.ws.closed:
                await connection.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeSocketMode is not running; use it as an async context manager")
        return self._url

    def attach(self, slack: Any) -> None:
        """Let `slack` (a FakeSlack) answer `apps.connections.open` with this server's URLs."""
        slack.socket_mode = self.connections_open

    # ------------------------------------------------------------------ apps.connections.open

    def connections_open(self, token: str | None) -> Args:
        """`apps.connections.open`; `token` is the one from the Authorization header (Slack takes no other)."""
        if not token:
            self.refused += 1
            return {"ok": False, "error": "not_authed"}
        if token != self.app_token:
            self.refused += 1
            return {"ok": False, "error": "invalid_auth"}
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        self.opened += 1
        return {"ok": True, "url": f"{self.url}/link/?ticket={ticket}&app_id={self.app_id}"}

    # ------------------------------------------------------------------ test controls and queries

    def problems(self) -> list[str]:
        """What the client got wrong: bad frames, repeated or late acks, and envelopes past their deadline."""
        now = self._clock()
        missing = [
            f"envelope {e.envelope_id} ({e.type}) was not acknowledged within {self.ack_timeout:g}s"
            for e in self.envelopes
            if e.acked_at is None and now - e.sent_at > self.ack_timeout
        ]
        return [*self._problems, *missing]

    async def verify(self) -> None:
        """Wait for the acks still due (each within its window), then fail on any problem."""
        for envelope in self.unacknowledged():
            remaining = self.ack_timeout - (self._clock() - envelope.sent_at)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(envelope.done.wait(), remaining)
        problems = self.problems()
        assert not problems, "Socket Mode client misbehaved:\n" + "\n".join(problems)

    def unacknowledged(self) -> list[Envelope]:
        return [e for e in self.envelopes if e.acked_at is None]

    def open_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.closed]

    async def connected(self, count: int = 1, *, timeout: float = 5.0) -> Connection:
        """Wait until `count` connections have been opened in all and one is open and current; return it."""

        def ready() -> bool:
            return len(self.connections) >= count and self._current() is not None

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(ready), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"expected connection #{count} within {timeout}s; {len(self.connections)} opened"
                ) from None
        current = self._current()
        assert current is not None
        return current

    async def deliver(
        self,
        type: str,
        payload: Args,
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> Envelope:
        """Send an envelope on the current connection (waiting up to `timeout` for one); return it."""
        if type not in ENVELOPE_TYPES:
            raise ValueError(f"unknown envelope type {type!r}")
        connection = await self.connected(timeout=timeout)
        envelope = Envelope(
            envelope_id=str(uuid.uuid4()),
            type=type,
            payload=payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            connection=connection.number,
            sent_at=self._clock(),
        )
        self.envelopes.append(envelope)
        await connection.ws.send_json(envelope.wire())
        return envelope

    async def redeliver(self, envelope: Envelope, *, reason: str = "timeout") -> Envelope:
        """Slack's retry of `envelope`: the same payload in a new envelope with the next retry_attempt."""
        return await self.deliver(
            envelope.type,
            envelope.payload,
            accepts_response_payload=envelope.accepts_response_payload,
            retry_attempt=envelope.retry_attempt + 1,
            retry_reason=reason,
        )

    async def acknowledged(self, envelope: Envelope) -> Envelope:
        """Wait for the client's ack of `envelope` (at most the ack window); AssertionError when none came."""
        try:
            await asyncio.wait_for(envelope.done.wait(), self.ack_timeout)
        except TimeoutError:
            raise AssertionError(
                f"envelope {envelope.envelope_id} ({envelope.type}) was not acknowledged within {self.ack_timeout:g}s"
            ) from None
        return envelope

    async def disconnect(self, reason: str = "refresh_requested", *, close_after: float | None = None) -> Connection:
        """Send `{"type": "disconnect", "reason": reason}` on the current connection. For every reason but
        `warning` Slack then closes that connection, here after `close_after` seconds (default
        `close_after_disconnect`): a client that has not reconnected by then loses deliveries."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"unknown disconnect reason {reason!r}")
        connection = await self.connected()
        await self._send_disconnect(
            connection, reason, self.close_after_disconnect if close_after is None else close_after
        )
        return connection

    async def close_current(self) -> Connection:
        """Close the current connection without a `disconnect` first, as a restarting Slack server does."""
        connection = await self.connected()
        await connection.ws.close(code=1001, message=b"going away")
        return connection

    # ------------------------------------------------------------------ the WebSocket side

    def _current(self) -> Connection | None:
        """The connection deliveries go to: the newest open one not told to go away."""
        for connection in reversed(self.connections):
            if not connection.closed and connection.disconnect_reason in (None, "warning"):
                return connection
        return None

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets or request.query.get("app_id") != self.app_id:
            self._problems.append("a connection attempt with a URL not issued by apps.connections.open (or reused)")
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)  # answers the client's pings, as Slack does
        await ws.prepare(request)
        connection = Connection(number=next(self._numbers), ws=ws, opened_at=self._clock())
        async with self._changed:
            self.connections.append(connection)
        if len(self.open_connections()) > MAX_CONNECTIONS:
            await self._send_disconnect(connection, "too_many_websockets", 0.0)
        else:
            await ws.send_json(self._hello())
            async with self._changed:
                self._changed.notify_all()
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    connection.frames.append(message.data)
                    self._on_frame(connection, message.data)
                elif message.type == WSMsgType.BINARY:
                    self._problems.append(f"connection {connection.number}: a binary frame (Slack reads only text)")
        finally:
            async with self._changed:
                connection.closed = True
                self._changed.notify_all()
        return ws

    def _hello(self) -> Args:
        return {
            "type": "hello",
            "num_connections": len(self.open_connections()),
            "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }

    def _on_frame(self, connection: Connection, data: str) -> None:
        where = f"connection {connection.number}"
        try:
            frame = json.loads(data)
        except ValueError:
            self._problems.append(f"{where}: a frame that is not JSON: {data[:80]!r}")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("envelope_id"), str):
            self._problems.append(f"{where}: a frame without an envelope_id: {data[:80]!r}")
            return
        envelope = next((e for e in self.envelopes if e.envelope_id == frame["envelope_id"]), None)
        if envelope is None:
            self._problems.append(f"{where}: an ack for an unknown envelope {frame['envelope_id']}")
            return
        if envelope.acked_at is not None:
            self._problems.append(f"{where}: envelope {envelope.envelope_id} acknowledged twice")
            return
        now = self._clock()
        if now - envelope.sent_at > self.ack_timeout:
            self._problems.append(
                f"{where}: envelope {envelope.envelope_id} ({envelope.type}) acknowledged late "
                f"({now - envelope.sent_at:.1f}s > {self.ack_timeout:g}s)"
            )
        payload = frame.get("payload")
        if payload is not None and not isinstance(payload, dict):
            self._problems.append(f"{where}: envelope {envelope.envelope_id}: the ack's payload is not an object")
        elif payload is not None and not envelope.accepts_response_payload:
            self._problems.append(
                f"{where}: envelope {envelope.envelope_id} ({envelope.type}) accepts no response payload"
            )
        envelope.acked_at, envelope.acked_on = now, connection.number
        envelope.response = payload if isinstance(payload, dict) else None
        envelope.done.set()

    async def _send_disconnect(self, connection: Connection, reason: str, close_after: float) -> None:
        connection.disconnect_reason = reason
        await connection.ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})
        if reason in CLOSING_REASONS:
            task = asyncio.create_task(self._close_later(connection, close_after))
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)

    async def _close_later(self, connection: Connection, delay: float) -> None:
        await asyncio.sleep(delay)
        if not connection.ws.closed:
            await connection.ws.close()
