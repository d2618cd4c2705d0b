"""The MessageSurface contract, run against every surface over its fake platform and real client library."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.surface import NativeStreamSurface, UpdateSurface
from bots.telegram.surface import TelegramSurface
from core.render.surface import (
    Handle,
    MessageSurface,
    SurfaceBlocked,
    SurfaceBusy,
    SurfaceError,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)
from core.render.throttle import TokenBucket
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

Op = Literal["send", "edit"]
BOTH: tuple[Op, ...] = ("send", "edit")


@dataclass(frozen=True)
class PlatformError:
    """An error answer the fake can give, and the SurfaceError the contract says it becomes."""

    label: str
    code: str
    expected: type[SurfaceError]
    ops: tuple[Op, ...] = BOTH
    retry_after: int | None = None


class Adapter(abc.ABC):
    """How to build one surface over its fake, look at what the user sees, and make the platform fail.

    Class attributes declare which contract items apply; a test is generated only where its item does.
    """

    name: ClassVar[str]
    limits: ClassVar[SurfaceLimits]  # those of the surface under test
    methods: ClassVar[dict[Op, str]]  # the platform method that send / edit call first
    send_cap: ClassVar[int]  # the longest text the platform takes in a new message
    edit_cap: ClassVar[int | None]  # ... in an edit; None: an edit is never refused for length
    own_budget: ClassVar[bool]  # the surface spends a budget of ours and raises SurfaceBusy
    formatting_refusal: ClassVar[str | None]  # the error with which the platform refuses our formatting
    errors: ClassVar[tuple[PlatformError, ...]]

    surface: MessageSurface

    @classmethod
    @abc.abstractmethod
    def open(cls) -> AbstractAsyncContextManager[Adapter]: ...

    @abc.abstractmethod
    def visible(self, handle: Handle) -> str | None:
        """What the user sees in the message now; None once it is gone."""

    @abc.abstractmethod
    def replies_to_user(self, handle: Handle) -> bool: ...

    @abc.abstractmethod
    def messages(self) -> int:
        """Bot messages the user sees in the conversation."""

    @abc.abstractmethod
    def activity(self) -> list[str]:
        """Typing indicators and status lines shown so far."""

    @abc.abstractmethod
    def calls(self, op: Op) -> int:
        """Requests the platform received for `op`'s method, refused ones included."""

    @abc.abstractmethod
    def fail_next(self, op: Op, error: PlatformError) -> None: ...

    @abc.abstractmethod
    def refuse_formatting(self, op: Op) -> None: ...

    @abc.abstractmethod
    def remove(self, handle: Handle) -> None:
        """Someone else deleted the message."""

    @abc.abstractmethod
    async def go_offline(self) -> None:
        """The platform stops answering on the network."""

    def with_budget(self, budget: Callable[[str], TokenBucket | None]) -> MessageSurface:
        raise NotImplementedError(f"{self.name} spends no budget of ours")


# ---------------------------------------------------------------------------------------------- Telegram

TG_CHAT = -1001234567890  # a supergroup: its flood rule (20 operations a minute) leaves room for a test


class TelegramAdapter(Adapter):
    name = "telegram"
    limits = TelegramSurface.limits
    methods: ClassVar[dict[Op, str]] = {"send": "sendMessage", "edit": "editMessageText"}
    send_cap = 4096
    edit_cap = 4096
    own_budget = False  # the per-chat allowance is kept outside the surface
    formatting_refusal = "cant_parse"
    errors = (
        PlatformError("flood control", "retry_after:7", SurfaceRateLimited, retry_after=7),
        PlatformError("bot blocked", "forbidden", SurfaceBlocked),
        PlatformError("chat not found", "chat_not_found", SurfaceBlocked),
        PlatformError("message can't be edited", "cant_be_edited", SurfaceMessageGone, ops=("edit",)),
        PlatformError("server error", "server_error", SurfaceTransient),
    )

    def __init__(self, fake: FakeTelegram, bot: Bot, question: int) -> None:
        self.fake = fake
        self.question = question
        self.surface = TelegramSurface(bot, chat_id=TG_CHAT, reply_to=question)

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[Adapter]:
        async with FakeTelegram() as fake:
            bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))
            try:
                update = fake.message_update(chat_id=TG_CHAT, user_id=7, text="hi", chat_type="supergroup")
                yield cls(fake, bot, int(update["message"]["message_id"]))
            finally:
                await bot.session.close()

    def visible(self, handle: Handle) -> str | None:
        message = self.fake.messages.get((TG_CHAT, handle))
        return None if message is None or message.deleted else message.text

    def replies_to_user(self, handle: Handle) -> bool:
        return self.fake.messages[(TG_CHAT, handle)].reply_to_message_id == self.question

    def messages(self) -> int:
        return len(self.fake.chat_messages(TG_CHAT))

    def activity(self) -> list[str]:
        return [str(call.params["action"]) for call in self.fake.calls if call.method == "sendChatAction" and call.ok]

    def calls(self, op: Op) -> int:
        return self.fake.count(self.methods[op])

    def fail_next(self, op: Op, error: PlatformError) -> None:
        self.fake.fail_next(self.methods[op], error.code)

    def refuse_formatting(self, op: Op) -> None:
        self.fake.fail_next(self.methods[op], self.formatting_refusal)

    def remove(self, handle: Handle) -> None:
        self.fake.delete_message(TG_CHAT, handle)

    async def go_offline(self) -> None:
        await self.fake.__aexit__(None, None, None)


# ---------------------------------------------------------------------------------------------- Slack

CHANNEL = "C1"
ROOT = "1690000000.000100"
USER = "U1"
TEAM = "T1"
SLACK_BLOCKED = tuple(
    PlatformError(code.replace("_", " "), code, SurfaceBlocked)
    for code in ("channel_not_found", "not_in_channel", "is_archived")
)


class SlackAdapter(Adapter):
    """What both Slack surfaces share: one thread under the user's message in a channel."""

    edit_cap: ClassVar[int | None]

    def __init__(self, fake: FakeSlack, client: AsyncWebClient) -> None:
        self.fake = fake
        self.client = client
        self.surface = self.build()

    @abc.abstractmethod
    def build(self, budget: Callable[[str], TokenBucket | None] | None = None) -> MessageSurface: ...

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[Adapter]:
        async with FakeSlack() as fake:
            yield cls(fake, AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))

    def update_surface(self, budget: Callable[[str], TokenBucket | None] | None = None) -> UpdateSurface:
        return UpdateSurface(self.client, channel=CHANNEL, thread_ts=ROOT, budget=budget)

    def visible(self, handle: Handle) -> str | None:
        message = self.fake.messages.get((CHANNEL, handle))
        return None if message is None or message.deleted else message.text

    def replies_to_user(self, handle: Handle) -> bool:
        return self.fake.messages[(CHANNEL, handle)].thread_ts == ROOT

    def messages(self) -> int:
        return len(self.fake.thread(CHANNEL, ROOT))

    def activity(self) -> list[str]:
        return [str(status["status"]) for status in self.fake.statuses]

    def calls(self, op: Op) -> int:
        return self.fake.count(self.methods[op])

    def fail_next(self, op: Op, error: PlatformError) -> None:
        self.fake.fail_next(self.methods[op], error.code, retry_after=error.retry_after)

    def refuse_formatting(self, op: Op) -> None:
        assert self.formatting_refusal is not None
        self.fake.fail_next(self.methods[op], self.formatting_refusal)

    def remove(self, handle: Handle) -> None:
        self.fake.messages[(CHANNEL, handle)].deleted = True

    async def go_offline(self) -> None:
        await self.fake.__aexit__(None, None, None)

    def with_budget(self, budget: Callable[[str], TokenBucket | None]) -> MessageSurface:
        return self.build(budget)


class SlackUpdateAdapter(SlackAdapter):
    name = "slack-update"
    limits = UpdateSurface.limits
    methods: ClassVar[dict[Op, str]] = {"send": "chat.postMessage", "edit": "chat.update"}
    send_cap = 12000  # markdown_text per call
    edit_cap = 12000
    own_budget = True
    formatting_refusal = "invalid_arguments"  # a workspace that takes no markdown_text
    errors = (
        PlatformError("rate limited", "ratelimited", SurfaceRateLimited, retry_after=7),
        *SLACK_BLOCKED,
        PlatformError("can't update", "cant_update_message", SurfaceMessageGone, ops=("edit",)),
        PlatformError("edit window closed", "edit_window_closed", SurfaceMessageGone, ops=("edit",)),
        PlatformError("internal error", "internal_error", SurfaceTransient),
    )

    def build(self, budget: Callable[[str], TokenBucket | None] | None = None) -> MessageSurface:
        return self.update_surface(budget)


class SlackNativeAdapter(SlackAdapter):
    name = "slack-native"
    limits = NativeStreamSurface.limits
    methods: ClassVar[dict[Op, str]] = {"send": "chat.startStream", "edit": "chat.appendStream"}
    send_cap = 12000
    edit_cap = None  # a long append is sent in several calls
    own_budget = True
    formatting_refusal = None  # streams take markdown_text only; a refused stream falls back to chat.update
    errors = (
        PlatformError("rate limited", "ratelimited", SurfaceRateLimited, retry_after=7),
        *SLACK_BLOCKED,
        PlatformError("internal error", "internal_error", SurfaceTransient),
    )

    def build(self, budget: Callable[[str], TokenBucket | None] | None = None) -> MessageSurface:
        return NativeStreamSurface(
            self.client,
            channel=CHANNEL,
            thread_ts=ROOT,
            recipient_user_id=USER,
            recipient_team_id=TEAM,
            fallback=lambda: self.update_surface(budget),
            budget=budget,
        )


ADAPTERS: tuple[type[Adapter], ...] = (TelegramAdapter, SlackUpdateAdapter, SlackNativeAdapter)

# Where a surface breaks the contract today: each case must fail (strict), so fixing it flags the entry.
KNOWN_VIOLATIONS: dict[str, str] = {}  # case id → why the surface breaks the contract (a strict xfail)


def cases(*params: tuple[Any, ...], ids: list[str]) -> list[Any]:
    return [
        pytest.param(
            *param,
            id=case_id,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_VIOLATIONS[case_id])]
            if case_id in KNOWN_VIOLATIONS
            else [],
        )
        for param, case_id in zip(params, ids, strict=True)
    ]


def surfaces(where: Callable[[type[Adapter]], bool] = lambda _: True) -> list[Any]:
    chosen = [adapter for adapter in ADAPTERS if where(adapter)]
    return [pytest.param(adapter, id=adapter.name) for adapter in chosen]


def error_cases() -> list[Any]:
    found = [(adapter, error, op) for adapter in ADAPTERS for error in adapter.errors for op in error.ops]
    return cases(*found, ids=[f"{adapter.name}-{error.label}-{op}" for adapter, error, op in found])


def cursor_cases() -> list[Any]:
    found = [(adapter, path) for adapter in ADAPTERS for path in ("send", "extend", "rewrite")]
    return cases(*found, ids=[f"{adapter.name}-{path}" for adapter, path in found])


@pytest.fixture
async def adapter(request: pytest.FixtureRequest) -> AsyncIterator[Adapter]:
    kind: type[Adapter] = request.param
    async with kind.open() as opened:
        assert opened.surface.limits == kind.limits
        yield opened


def fill(surface: MessageSurface, unit: str, room: int) -> str:
    """The longest repetition of `unit` whose measure fits `room`."""
    low, high = 0, room
    while low < high:
        middle = (low + high + 1) // 2
        if surface.measure(unit * middle) <= room:
            low = middle
        else:
            high = middle - 1
    return unit * low


async def show(adapter: Adapter, op: Op, text: str, *, final: bool) -> Handle:
    """Put `text` on screen with `op`: a new message, or an edit of a message that showed something else."""
    if op == "send":
        return await adapter.surface.send(text, final=final)
    handle = await adapter.surface.send("Working on it", final=False)
    return await adapter.surface.edit(handle, text, final=final)


# ---------------------------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_send_shows_the_text_in_reply_to_the_user(adapter: Adapter) -> None:
    handle = await adapter.surface.send("Hello there", final=True)
    assert adapter.visible(handle) == "Hello there"
    assert adapter.replies_to_user(handle)
    assert adapter.messages() == 1


@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_edit_changes_the_text_of_the_same_message(adapter: Adapter) -> None:
    handle = await adapter.surface.send("Hello", final=False)
    handle = await adapter.surface.edit(handle, "Hello, world", final=False)
    assert (adapter.visible(handle) or "").startswith("Hello, world")
    handle = await adapter.surface.edit(handle, "Hello, world!", final=True)
    assert adapter.visible(handle) == "Hello, world!"
    assert adapter.messages() == 1


@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_edit_can_replace_the_text_entirely(adapter: Adapter) -> None:
    handle = await adapter.surface.send("A first draft of the answer", final=False)
    handle = await adapter.surface.edit(handle, "Rewritten", final=True)
    assert adapter.visible(handle) == "Rewritten"
    assert adapter.messages() == 1


@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_an_identical_edit_is_a_success(adapter: Adapter) -> None:
    handle = await adapter.surface.send("Same", final=True)
    handle = await adapter.surface.edit(handle, "Same", final=True)
    handle = await adapter.surface.edit(handle, "Same", final=True)
    assert adapter.visible(handle) == "Same"


@pytest.mark.parametrize("final", [False, True], ids=["interim", "final"])
@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_delete_removes_the_message_and_may_be_repeated(adapter: Adapter, final: bool) -> None:
    keep = await adapter.surface.send("Keep me", final=True)
    handle = await adapter.surface.send("Delete me", final=final)
    await adapter.surface.delete(handle)
    assert adapter.visible(handle) is None
    assert adapter.visible(keep) == "Keep me"
    await adapter.surface.delete(handle)  # already gone is what was asked for
    assert adapter.messages() == 1


@pytest.mark.parametrize(("adapter", "path"), cursor_cases(), indirect=["adapter"])
async def test_an_interim_frame_takes_at_most_cursor_length_more(adapter: Adapter, path: str) -> None:
    surface = adapter.surface
    if path == "send":
        handle = await surface.send("Hello world", final=False)
    else:
        handle = await surface.send("Hello world" if path == "extend" else "Goodbye moon", final=False)
        handle = await surface.edit(handle, "Hello world, again", final=False)
    text = "Hello world" if path == "send" else "Hello world, again"
    shown = adapter.visible(handle) or ""
    assert shown.startswith(text)
    assert surface.measure(shown) - surface.measure(text) <= surface.limits.cursor_length
    handle = await surface.edit(handle, text, final=True)
    assert adapter.visible(handle) == text


@pytest.mark.parametrize("op", BOTH)
@pytest.mark.parametrize("final", [False, True], ids=["interim", "final"])
@pytest.mark.parametrize("unit", ["x", "😀"], ids=["ascii", "astral"])
@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_a_frame_of_exactly_max_length_is_accepted(adapter: Adapter, unit: str, final: bool, op: Op) -> None:
    limits = adapter.surface.limits
    room = limits.max_length - (0 if final else limits.cursor_length)
    text = fill(adapter.surface, unit, room)
    assert adapter.surface.measure(text) == room
    handle = await show(adapter, op, text, final=final)
    shown = adapter.visible(handle)
    assert shown == text if final else (shown or "").startswith(text)


@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_a_new_message_longer_than_the_platform_takes_is_too_long(adapter: Adapter) -> None:
    text = "x" * (adapter.send_cap + 1)
    assert adapter.surface.measure(text) > adapter.surface.limits.max_length  # the renderer would have split it
    with pytest.raises(SurfaceTooLong):
        await adapter.surface.send(text, final=True)
    assert adapter.messages() == 0


@pytest.mark.parametrize("adapter", surfaces(lambda a: a.edit_cap is not None), indirect=True)
async def test_an_edit_longer_than_the_platform_takes_is_too_long(adapter: Adapter) -> None:
    assert adapter.edit_cap is not None
    handle = await adapter.surface.send("Short", final=False)
    with pytest.raises(SurfaceTooLong):
        await adapter.surface.edit(handle, "x" * (adapter.edit_cap + 1), final=True)
    assert (adapter.visible(handle) or "").startswith("Short")


@pytest.mark.parametrize(("adapter", "error", "op"), error_cases(), indirect=["adapter"])
async def test_platform_errors_map_to_surface_errors(adapter: Adapter, error: PlatformError, op: Op) -> None:
    handle = await adapter.surface.send("Hello", final=False) if op == "edit" else None
    adapter.fail_next(op, error)
    with pytest.raises(SurfaceError) as raised:
        if handle is None:
            await adapter.surface.send("Hello", final=False)
        else:
            await adapter.surface.edit(handle, "Hello world", final=False)
    assert type(raised.value) is error.expected
    if error.retry_after is not None:
        assert isinstance(raised.value, SurfaceRateLimited)
        assert raised.value.retry_after == error.retry_after
    if error.expected in (SurfaceRateLimited, SurfaceTransient):
        # Worth retrying: the same call goes through once the platform takes it again.
        if handle is None:
            handle = await adapter.surface.send("Hello", final=True)
            assert adapter.visible(handle) == "Hello"
        else:
            handle = await adapter.surface.edit(handle, "Hello world", final=True)
            assert adapter.visible(handle) == "Hello world"


@pytest.mark.parametrize("final", [False, True], ids=["interim", "final"])
@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_editing_a_message_someone_deleted_is_message_gone(adapter: Adapter, final: bool) -> None:
    handle = await adapter.surface.send("Hello", final=False)
    adapter.remove(handle)
    with pytest.raises(SurfaceMessageGone):
        await adapter.surface.edit(handle, "Hello world", final=final)
    continued = await adapter.surface.send("Hello world", final=True)  # the answer goes on in a new message
    assert adapter.visible(continued) == "Hello world"


@pytest.mark.parametrize("op", BOTH)
@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_an_unreachable_platform_is_transient(adapter: Adapter, op: Op) -> None:
    handle = await adapter.surface.send("Hello", final=False) if op == "edit" else None
    await adapter.go_offline()
    with pytest.raises(SurfaceTransient):
        if handle is None:
            await adapter.surface.send("Hello", final=False)
        else:
            await adapter.surface.edit(handle, "Hello world", final=False)


@pytest.mark.parametrize("op", BOTH)
@pytest.mark.parametrize("adapter", surfaces(lambda a: a.formatting_refusal is not None), indirect=True)
async def test_refused_formatting_is_resent_plainly(adapter: Adapter, op: Op) -> None:
    handle = await adapter.surface.send("Hello", final=False) if op == "edit" else None
    adapter.refuse_formatting(op)
    if handle is None:
        handle = await adapter.surface.send("Hello world", final=True)
    else:
        handle = await adapter.surface.edit(handle, "Hello world", final=True)
    assert adapter.visible(handle) == "Hello world"
    assert adapter.calls(op) == 2  # the refused call and the plain one


@pytest.mark.parametrize("adapter", surfaces(lambda a: a.own_budget), indirect=True)
async def test_a_spent_budget_skips_interim_frames_without_a_call(adapter: Adapter) -> None:
    bucket = TokenBucket(per_minute=1, burst=2)
    assert bucket.try_take()  # one token left: the half of the burst kept for final frames
    send_method = adapter.methods["send"]
    surface = adapter.with_budget(lambda method: bucket if method == send_method else None)
    with pytest.raises(SurfaceBusy) as raised:
        await surface.send("Hello", final=False)
    assert raised.value.retry_after > 0
    assert adapter.calls("send") == 0
    handle = await surface.send("Hello", final=True)  # a final frame may use the reserve
    assert adapter.visible(handle) == "Hello"


@pytest.mark.parametrize("adapter", surfaces(), indirect=True)
async def test_typing_shows_activity_without_a_message(adapter: Adapter) -> None:
    await adapter.surface.typing()
    assert adapter.activity() != []
    assert adapter.messages() == 0


@pytest.mark.parametrize("adapter", surfaces(lambda a: a.limits.placeholder), indirect=True)
async def test_a_placeholder_message_becomes_the_answer(adapter: Adapter) -> None:
    handle = await adapter.surface.send("Searching the web…", final=True)
    handle = await adapter.surface.edit(handle, "The answer", final=False)
    handle = await adapter.surface.edit(handle, "The answer is 42.", final=True)
    assert adapter.visible(handle) == "The answer is 42."
    assert adapter.messages() == 1


@pytest.mark.parametrize("adapter", surfaces(lambda a: not a.limits.placeholder), indirect=True)
async def test_without_placeholder_progress_goes_to_status(adapter: Adapter) -> None:
    await adapter.surface.status("Searching the web…")
    assert adapter.activity()[-1] == "Searching the web…"
    assert adapter.messages() == 0
    handle = await adapter.surface.send("The answer", final=True)
    assert adapter.visible(handle) == "The answer"
