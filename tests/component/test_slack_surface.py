"""Slack surfaces under the real StreamRenderer, against the fake Slack Web API over a socket."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.surface import NativeStreamSurface, UpdateSurface, surface_error
from core.answer import Done, Failed, Progress, ReplyEvent, TextDelta, TextReplace
from core.dify.errors import DifyProviderError
from core.render.renderer import RenderStats, StreamRenderer
from core.render.surface import (
    MessageSurface,
    SurfaceBlocked,
    SurfaceError,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceTooLong,
    SurfaceTransient,
)
from core.render.throttle import Throttle
from core.texts import friendly_error, text
from tests.fakes.slack import FakeSlack, StoredMessage

TOKEN = "xoxb-test-token"
CHANNEL = "C1"
ROOT = "1690000000.000100"
USER = "U1"
TEAM = "T1"
CURSOR = " ▌"

Step = ReplyEvent | float | Callable[[], None]


class Clock:
    """Real monotonic time plus an offset that tests can push forward (stream expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(clock=clock) as server:
        yield server


@pytest.fixture
async def client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    yield AsyncWebClient(token=TOKEN, base_url=fake.api_url)


def update_surface(client: AsyncWebClient) -> UpdateSurface:
    return UpdateSurface(client, channel=CHANNEL, thread_ts=ROOT)


def native_surface(client: AsyncWebClient, *, fallback: bool = True) -> NativeStreamSurface:
    return NativeStreamSurface(
        client,
        channel=CHANNEL,
        thread_ts=ROOT,
        recipient_user_id=USER,
        recipient_team_id=TEAM,
        fallback=(lambda: update_surface(client)) if fallback else None,
    )


async def script(steps: Iterable[Step]) -> AsyncIterator[ReplyEvent]:
    """Reply events as Dify would produce them: floats are pauses, callables run (e.g. inject faults)."""
    for step in steps:
        if isinstance(step, int | float):
            await asyncio.sleep(step)
        elif callable(step):
            step()
        else:
            yield step


def typed(answer: str, *, pieces: int = 8, pause: float = 0.03) -> list[Step]:
    """`answer` as `pieces` deltas with pauses between them."""
    size = -(-len(answer) // pieces)
    steps: list[Step] = []
    for start in range(0, len(answer), size):
        steps += [TextDelta(answer[start : start + size]), pause]
    return steps


def words(count: int, *, seed: int = 0) -> str:
    """Prose with paragraphs, so the splitter has good places to cut."""
    vocabulary = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    out = []
    for i in range(count):
        out.append(vocabulary[(i * 7 + seed) % len(vocabulary)] + str(i))
        if i % 40 == 39:
            out[-1] += ".\n\n"
        elif i % 9 == 8:
            out[-1] += ","
    return " ".join(out).replace("\n\n ", "\n\n")


def prose(length: int) -> str:
    """About `length` characters of `words`, ending in a word."""
    return words(length // 5)[:length].rsplit(" ", 1)[0]


async def render(surface: MessageSurface, steps: Iterable[Step]) -> RenderStats:
    renderer = StreamRenderer(surface, throttle=Throttle(0.05), status_delay=0.1)
    return await asyncio.wait_for(renderer.render(script(steps)), timeout=30)


def replies(fake: FakeSlack) -> list[StoredMessage]:
    return sorted(fake.thread(CHANNEL, ROOT), key=lambda msg: msg.ts)


def squash(value: str) -> str:
    """Text without whitespace: splits may drop the blank lines they cut at."""
    return re.sub(r"\s+", "", value)


def assert_complete(fake: FakeSlack, answer: str, *, max_length: int) -> list[StoredMessage]:
    messages = replies(fake)
    shown = [fake.visible_text(CHANNEL, msg.ts) for msg in messages]
    assert all(len(part) <= max_length for part in shown), [len(part) for part in shown]
    assert not any(part.endswith(CURSOR) for part in shown)
    assert squash("".join(shown)) == squash(answer)
    return messages


def assert_streams_closed(fake: FakeSlack) -> None:
    for msg in replies(fake):
        assert not fake.stream_active(CHANNEL, msg.ts)


# ---------------------------------------------------------------------- happy paths


async def test_native_stream_happy_path(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = "Here is **the answer**:\n\n- one\n- two\n\nAnd a closing line with `code`."
    surface = native_surface(client)
    stats = await render(surface, [Progress("retrieval", "kb"), 0.3, *typed(answer), Done(answer=answer)])

    assert stats.outcome == "done"
    [msg] = replies(fake)
    assert msg.streaming and msg.stopped
    assert fake.visible_text(CHANNEL, msg.ts) == answer
    assert len(msg.history) > 2  # it grew through appends
    assert all(answer.startswith(seen) for seen in msg.history)  # append-only: no placeholder, no cursor
    # Progress went to the thread status before the first text; no placeholder message was posted.
    statuses = [status["status"] for status in fake.statuses]
    assert text("progress_retrieval") in statuses
    methods = [call.method for call in fake.calls]
    assert methods.index("assistant.threads.setStatus") < methods.index("chat.startStream")
    assert "chat.postMessage" not in methods and "chat.update" not in methods
    assert fake.count("chat.startStream") == 1 and fake.count("chat.stopStream") == 1
    assert surface.calls["chat.appendStream"] == fake.count("chat.appendStream") > 1
    assert surface.native_failed is None


async def test_update_mode_happy_path(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = "First sentence of the answer. " * 10
    surface = update_surface(client)
    stats = await render(surface, [0.3, *typed(answer), Done(answer=answer)])

    assert stats.outcome == "done"
    [msg] = replies(fake)
    assert msg.history[0] == text("thinking")  # the placeholder
    assert any(seen.endswith(CURSOR) for seen in msg.history[1:-1])  # interim edits show the cursor
    assert fake.visible_text(CHANNEL, msg.ts) == answer.rstrip()
    assert msg.updates >= 2
    assert fake.statuses[0]["status"] == "is thinking…"
    assert surface.calls["chat.postMessage"] == 1
    assert surface.calls["chat.update"] == fake.count("chat.update")


async def test_start_stream_refused_falls_back_to_updates(clock: Clock) -> None:
    async with FakeSlack(clock=clock, native_streaming=False) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        answer = "A reply delivered without native streaming. " * 8
        surface = native_surface(client)
        stats = await render(surface, [*typed(answer), Done(answer=answer)])

        assert stats.outcome == "done"
        assert surface.native_failed == "feature_not_enabled"
        [msg] = replies(fake)
        assert not msg.streaming
        assert fake.visible_text(CHANNEL, msg.ts) == answer.rstrip()
        assert fake.count("chat.startStream") == 1  # tried once, then never again for this answer
        assert fake.count("chat.update", ok=True) >= 1
        assert surface.calls["chat.startStream"] == 1 and surface.calls["chat.postMessage"] == 1
        assert surface.fallback_surface is not None


@pytest.mark.parametrize("burst", [False, True], ids=["paced", "all-at-once"])
async def test_fallback_with_a_long_answer_splits_at_the_update_limit(clock: Clock, burst: bool) -> None:
    async with FakeSlack(clock=clock, native_streaming=False, rate_limits={}) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        answer = prose(14_000)
        # The first frame is already longer than an update message may be (all at once: it is the final
        # frame, laid out for streams); the surface says too long, the renderer cuts smaller and goes on.
        steps: list[Step] = (
            [TextDelta(answer), Done(answer=answer)]
            if burst
            else [TextDelta(answer[:5000]), 0.1, *typed(answer[5000:], pieces=10), Done(answer=answer)]
        )
        surface = native_surface(client)
        stats = await render(surface, steps)

        assert stats.outcome == "done"
        assert surface.native_failed == "feature_not_enabled"
        messages = assert_complete(fake, answer, max_length=3900)
        assert len(messages) >= 4
        assert fake.count("chat.startStream") == 1


async def test_no_fallback_means_transient_errors(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.native_streaming = False
    surface = native_surface(client, fallback=False)
    with pytest.raises(SurfaceTransient):
        await surface.send("hello", final=False)
    assert surface.native_failed == "feature_not_enabled"
    assert replies(fake) == []


async def test_missing_recipient_falls_back(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = NativeStreamSurface(
        client,
        channel=CHANNEL,
        thread_ts=ROOT,
        recipient_user_id="",
        recipient_team_id=TEAM,
        fallback=lambda: update_surface(client),
    )
    handle = await surface.send("hello", final=False)
    assert surface.native_failed == "missing_recipient_user_id"
    assert fake.visible_text(CHANNEL, handle) == "hello" + CURSOR
    assert await surface.edit(handle, "hello world", final=True) == handle
    assert fake.visible_text(CHANNEL, handle) == "hello world"


# ---------------------------------------------------------------------- recovery


async def test_stream_expiry_mid_answer_finishes_with_chat_update(
    fake: FakeSlack, client: AsyncWebClient, clock: Clock
) -> None:
    first, second = "The first half of the answer. " * 5, "The second half, after the stream died. " * 5
    answer = first + second
    steps: list[Step] = [*typed(first, pieces=4), 0.2, lambda: clock.advance(301), *typed(second, pieces=4)]
    surface = native_surface(client)
    stats = await render(surface, [*steps, Done(answer=answer)])

    assert stats.outcome == "done"
    [msg] = replies(fake)
    assert fake.visible_text(CHANNEL, msg.ts) == answer.rstrip()
    assert msg.updates >= 1
    assert not fake.stream_active(CHANNEL, msg.ts)
    assert any(call.error == "message_not_in_streaming_state" for call in fake.calls)
    assert fake.count("chat.startStream") == 1


async def test_rate_limited_append_and_stop_lose_nothing(fake: FakeSlack, client: AsyncWebClient) -> None:
    first, second = "Streaming along nicely. " * 4, "More text after the rate limit. " * 4
    answer = first + second
    steps: list[Step] = [
        *typed(first, pieces=3),
        0.2,
        lambda: fake.fail_next("chat.appendStream", "ratelimited", retry_after=1),
        *typed(second, pieces=3),
        lambda: fake.fail_next("chat.stopStream", "ratelimited", retry_after=1),
        Done(answer=answer),
    ]
    surface = native_surface(client)
    stats = await render(surface, steps)

    assert stats.outcome == "done"
    assert stats.rate_limited >= 1
    assert fake.count("chat.appendStream", ok=False) == 1
    assert fake.count("chat.stopStream", ok=False) == 1
    [msg] = replies(fake)
    assert fake.visible_text(CHANNEL, msg.ts) == answer.rstrip()
    assert_streams_closed(fake)


async def test_rate_limited_update_loses_nothing(fake: FakeSlack, client: AsyncWebClient) -> None:
    first, second = "Editing the placeholder. " * 4, "More text after the rate limit. " * 4
    answer = first + second
    steps: list[Step] = [
        *typed(first, pieces=3),
        0.2,
        lambda: fake.fail_next("chat.update", "ratelimited", retry_after=1),
        *typed(second, pieces=3),
        Done(answer=answer),
    ]
    surface = update_surface(client)
    stats = await render(surface, steps)

    assert stats.outcome == "done"
    assert stats.rate_limited >= 1
    assert fake.count("chat.update", ok=False) == 1
    [msg] = replies(fake)
    assert fake.visible_text(CHANNEL, msg.ts) == answer.rstrip()


async def test_msg_too_long_continues_in_a_new_reply(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = prose(3750)  # one update message, until Slack calls it too long
    head, tail = answer[:3500], answer[3500:]
    steps: list[Step] = [
        *typed(head, pieces=5),
        0.2,
        lambda: fake.fail_next("chat.update", "msg_too_long"),
        *typed(tail, pieces=2),
        Done(answer=answer),
    ]
    stats = await render(update_surface(client), steps)

    assert stats.outcome == "done"
    assert fake.count("chat.update", ok=False) == 1
    messages = assert_complete(fake, answer, max_length=3510)
    assert len(messages) == 2


async def test_msg_too_long_on_a_stream_rewrites_and_continues(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = prose(10_700)  # one stream, until Slack calls an append too long
    head, tail = answer[:10_000], answer[10_000:]
    steps: list[Step] = [
        *typed(head, pieces=5),
        0.2,
        lambda: fake.fail_next("chat.appendStream", "markdown_text_too_long"),
        *typed(tail, pieces=2),
        Done(answer=answer),
    ]
    stats = await render(native_surface(client), steps)

    assert stats.outcome == "done"
    messages = assert_complete(fake, answer, max_length=9900)
    assert len(messages) == 2
    assert messages[0].updates == 1  # cut back with chat.update after stopping the stream
    assert_streams_closed(fake)


@pytest.mark.parametrize("native", [False, True], ids=["update", "native"])
async def test_message_not_found_continues_in_a_new_reply(
    fake: FakeSlack, client: AsyncWebClient, native: bool
) -> None:
    first, second = "Before the message vanished. " * 4, "After it vanished. " * 4
    answer = first + second
    method = "chat.appendStream" if native else "chat.update"
    steps: list[Step] = [
        *typed(first, pieces=3),
        0.2,
        lambda: fake.fail_next(method, "message_not_found"),
        *typed(second, pieces=3),
        Done(answer=answer),
    ]
    surface: MessageSurface = native_surface(client) if native else update_surface(client)
    stats = await render(surface, steps)

    assert stats.outcome == "done"
    messages = replies(fake)
    # The message that could not be edited is removed, so its interim text is not shown twice.
    assert len(messages) == 1
    assert fake.visible_text(CHANNEL, messages[-1].ts) == answer.rstrip()


class LostAnswerClient(AsyncWebClient):
    """Slack applies the next chat.appendStream, but its answer never arrives."""

    lose_next = False

    async def chat_appendStream(self, **kwargs: Any) -> AsyncSlackResponse:
        response = await super().chat_appendStream(**kwargs)
        if self.lose_next:
            self.lose_next = False
            raise aiohttp.ServerDisconnectedError()
        return response


async def test_lost_append_answer_does_not_duplicate_text(fake: FakeSlack) -> None:
    client = LostAnswerClient(token=TOKEN, base_url=fake.api_url)
    first, second = "Appended once. " * 4, "And the rest. " * 4
    answer = first + second

    def lose() -> None:
        client.lose_next = True

    steps: list[Step] = [*typed(first, pieces=3), 0.2, lose, *typed(second, pieces=3), Done(answer=answer)]
    stats = await render(native_surface(client), steps)

    assert stats.outcome == "done"
    assert stats.errors  # the renderer saw a transient failure
    [msg] = replies(fake)
    assert fake.visible_text(CHANNEL, msg.ts) == answer.rstrip()  # rewritten, not appended twice
    assert_streams_closed(fake)


# ---------------------------------------------------------------------- long, replaced, failed answers


async def test_long_answer_in_update_mode_splits(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = prose(30_000)
    stats = await render(update_surface(client), [*typed(answer, pieces=30, pause=0.02), Done(answer=answer)])

    assert stats.outcome == "done"
    messages = assert_complete(fake, answer, max_length=3900)
    assert len(messages) >= 8


async def test_long_answer_in_native_mode_splits(fake: FakeSlack, client: AsyncWebClient) -> None:
    answer = prose(30_000)
    surface = native_surface(client)
    stats = await render(surface, [*typed(answer, pieces=30, pause=0.02), Done(answer=answer)])

    assert stats.outcome == "done"
    messages = assert_complete(fake, answer, max_length=11_000)
    assert len(messages) >= 3
    assert all(msg.streaming for msg in messages)
    assert_streams_closed(fake)
    assert all(len(str(call.args.get("markdown_text", ""))) <= 12_000 for call in fake.calls)


@pytest.mark.parametrize("native", [False, True], ids=["update", "native"])
async def test_replaced_answer_shows_only_the_replacement(
    fake: FakeSlack, client: AsyncWebClient, native: bool
) -> None:
    original = "A first draft that moderation will take back. " * 6
    replacement = "The moderated answer."
    steps: list[Step] = [*typed(original, pieces=4), 0.2, TextReplace(replacement), 0.1, Done(answer=replacement)]
    surface: MessageSurface = native_surface(client) if native else update_surface(client)
    stats = await render(surface, steps)

    assert stats.outcome == "done"
    [msg] = replies(fake)
    assert fake.visible_text(CHANNEL, msg.ts) == replacement
    assert_streams_closed(fake)


async def test_replaced_long_stream_shrinks_to_one_message(fake: FakeSlack, client: AsyncWebClient) -> None:
    original = prose(14_000)  # two streams
    replacement = "Short replacement."
    # The pause lets the second stream start before the replacement (interim frames are held briefly).
    steps: list[Step] = [*typed(original, pieces=6), 1.0, TextReplace(replacement), Done(answer=replacement)]
    stats = await render(native_surface(client), steps)

    assert stats.outcome == "done"
    [msg] = replies(fake)
    assert fake.visible_text(CHANNEL, msg.ts) == replacement
    assert fake.count("chat.delete", ok=True) == 1
    assert_streams_closed(fake)


@pytest.mark.parametrize("native", [False, True], ids=["update", "native"])
async def test_failed_answer_keeps_partial_text_and_says_why(
    fake: FakeSlack, client: AsyncWebClient, native: bool
) -> None:
    partial = "The answer started well, but "
    error = DifyProviderError("model overloaded")
    steps: list[Step] = [*typed(partial, pieces=3), 0.1, Failed(error=error, partial=partial)]
    surface: MessageSurface = native_surface(client) if native else update_surface(client)
    stats = await render(surface, steps)

    assert stats.outcome == "failed"
    [msg] = replies(fake)
    expected = partial.rstrip() + "\n\n⚠️ " + friendly_error(error)
    if native:
        # Trailing whitespace is held back from appends, so the stream shows exactly the final frame.
        assert fake.visible_text(CHANNEL, msg.ts) == expected
        assert fake.count("chat.update") == 0
    else:
        assert fake.visible_text(CHANNEL, msg.ts) == expected
    assert_streams_closed(fake)


# ---------------------------------------------------------------------- the surfaces on their own


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("msg_too_long", SurfaceTooLong),
        ("msg_blocks_too_long", SurfaceTooLong),
        ("markdown_text_too_long", SurfaceTooLong),
        ("message_not_found", SurfaceMessageGone),
        ("cant_update_message", SurfaceMessageGone),
        ("edit_window_closed", SurfaceMessageGone),
        ("channel_not_found", SurfaceBlocked),
        ("not_in_channel", SurfaceBlocked),
        ("is_archived", SurfaceBlocked),
        ("account_inactive", SurfaceBlocked),
        ("invalid_auth", SurfaceBlocked),
        ("token_revoked", SurfaceBlocked),
        ("restricted_action", SurfaceBlocked),
        ("ekm_access_denied", SurfaceBlocked),
        ("internal_error", SurfaceTransient),
    ],
)
async def test_error_mapping(fake: FakeSlack, client: AsyncWebClient, code: str, expected: type[SurfaceError]) -> None:
    surface = update_surface(client)
    fake.fail_next("chat.postMessage", code)
    with pytest.raises(expected):
        await surface.send("hello", final=True)
    handle = await surface.send("hello", final=True)
    fake.fail_next("chat.update", code)
    with pytest.raises(expected):
        await surface.edit(handle, "hello again", final=True)


async def test_rate_limit_carries_retry_after(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=7)
    with pytest.raises(SurfaceRateLimited) as info:
        await update_surface(client).send("hello", final=False)
    assert info.value.retry_after == 7.0


async def test_network_errors_are_transient() -> None:
    async with FakeSlack() as gone:
        url = gone.api_url
    client = AsyncWebClient(token=TOKEN, base_url=url, timeout=2, retry_handlers=[])
    with pytest.raises(SurfaceTransient):
        await update_surface(client).send("hello", final=True)
    with pytest.raises(SurfaceTransient):
        await native_surface(client).send("hello", final=True)
    assert isinstance(surface_error(TimeoutError()), SurfaceTransient)


async def test_typing_stops_after_the_first_failure(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = update_surface(client)
    fake.fail_next("assistant.threads.setStatus", "missing_scope")
    await surface.typing()
    await surface.typing()
    assert fake.count("assistant.threads.setStatus") == 1
    assert surface.calls["assistant.threads.setStatus"] == 1


async def test_status_before_text_only(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = native_surface(client)
    await surface.typing()
    await surface.status("Searching the knowledge base…")
    await surface.typing()  # keeps the progress line instead of going back to the generic one
    assert [status["status"] for status in fake.statuses] == ["is thinking…", "Searching the knowledge base…"]
    await surface.send("text", final=False)
    await surface.typing()
    await surface.status("Using a tool…")
    assert len(fake.statuses) == 2


async def test_stream_edits_cost_one_call_each(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = native_surface(client)
    handle = await surface.send("Hello", final=False)
    assert await surface.edit(handle, "Hello", final=False) == handle  # nothing new: no call
    await surface.edit(handle, "Hello, world", final=False)
    await surface.edit(handle, "Hello, world!", final=True)  # last delta rides on stopStream
    assert dict(surface.calls) == {"chat.startStream": 1, "chat.appendStream": 1, "chat.stopStream": 1}
    assert fake.visible_text(CHANNEL, handle) == "Hello, world!"
    assert not fake.stream_active(CHANNEL, handle)


async def test_final_send_starts_and_stops(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = native_surface(client)
    handle = await surface.send("Short answer.", final=True)
    assert fake.visible_text(CHANNEL, handle) == "Short answer."
    assert not fake.stream_active(CHANNEL, handle)


async def test_trailing_whitespace_only_change_needs_no_rewrite(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = native_surface(client)
    handle = await surface.send("Hello\n\n", final=False)
    await surface.edit(handle, "Hello", final=True)
    assert fake.count("chat.update") == 0
    assert not fake.stream_active(CHANNEL, handle)


async def test_streaming_state_conflict_stops_then_updates(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = native_surface(client)
    handle = await surface.send("Draft", final=False)
    await surface.edit(handle, "Other", final=False)  # replaced: stop, then update
    fake.fail_next("chat.update", "streaming_state_conflict")
    await surface.edit(handle, "Other text", final=True)
    assert fake.visible_text(CHANNEL, handle) == "Other text"
    assert fake.count("chat.update", ok=True) == 2


async def test_delete_of_a_live_stream(fake: FakeSlack, client: AsyncWebClient) -> None:
    surface = native_surface(client)
    handle = await surface.send("Going away", final=False)
    await surface.delete(handle)
    await surface.delete(handle)  # already gone is fine
    assert replies(fake) == []


async def test_markdown_refused_falls_back_to_mrkdwn_text(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_next("chat.postMessage", "invalid_arguments")
    answer = "Use **bold** and a [link](https://example.com)."
    stats = await render(update_surface(client), [*typed(answer, pieces=2), Done(answer=answer)])
    assert stats.outcome == "done"
    messages = replies(fake)
    assert len(messages) == 1
    assert fake.visible_text(CHANNEL, messages[0].ts) == "Use *bold* and a <https://example.com|link>."
