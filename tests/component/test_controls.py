"""Stop, feedback and follow-up questions through the one pipeline, on the fake Dify and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from core.answering import AnswerPipeline
from core.controls.desk import ControlDesk, ControlOptions
from core.controls.feedback import FeedbackBook
from core.controls.model import Controls, FeedbackAction, FeedbackButtons, parse_action, stop_data
from core.conversations import ChatKey, ConversationStore
from core.dify.client import DifyClient
from core.render.renderer import StreamRenderer
from core.render.stats import RenderStats
from core.render.throttle import Throttle
from core.service import ChatService
from core.texts import text
from tests.fakes.dify import Answer, FakeDify
from tests.fakes.dify_controls import FeedbackCall
from tests.unit.test_renderer import MemorySurface

CHAT = ChatKey(platform="telegram", scope="tg:-100:0", user="tg-group-100")
ASKER = "7"


@dataclass
class ButtonSurface(MemorySurface):
    """Records the controls each frame carried."""

    controls: list[tuple[str, int, Controls | None]] = field(default_factory=list)
    buttons: dict[int, Controls] = field(default_factory=dict)

    async def send(self, markdown: str, *, final: bool, controls: Controls | None = None) -> int:
        handle = await super().send(markdown, final=final)
        self._record("send", handle, controls)
        return handle

    async def edit(self, handle: int, markdown: str, *, final: bool, controls: Controls | None = None) -> int:
        handle = await super().edit(handle, markdown, final=final)
        self._record("edit", handle, controls)
        return handle

    def _record(self, kind: str, handle: int, controls: Controls | None) -> None:
        self.controls.append((kind, handle, controls))
        self.buttons[handle] = controls or Controls()


@pytest.fixture
async def dify() -> AsyncIterator[FakeDify]:
    async with FakeDify(mode="advanced-chat") as fake:
        yield fake


@pytest.fixture
async def client(dify: FakeDify) -> AsyncIterator[DifyClient]:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, retry_delays=(0, 0)) as opened:
        yield opened


def pipeline(client: DifyClient, store: ConversationStore, *, feedback: bool = True) -> AnswerPipeline:
    desk = ControlDesk(feedback=FeedbackBook(store, client), options=ControlOptions(feedback_buttons=feedback))
    return AnswerPipeline(ChatService(dify=client, store=store, lock_wait=10), controls=desk)


async def ask(
    answers: AnswerPipeline, surface: ButtonSurface, question: str = "hello", *, quote: str = ""
) -> RenderStats:
    return await answers.answer(
        chat=CHAT,
        text=question,
        asker=ASKER,
        quote=quote,
        sink=lambda stream: StreamRenderer(surface, throttle=Throttle(0.02), status_delay=0.05),
    )


async def started(answers: AnswerPipeline, surface: ButtonSurface) -> str:
    """The stop token of the answer streaming in CHAT, once its first words are shown with a Stop button."""
    for _ in range(300):
        running = answers.controls.stops.running(CHAT)
        shows_text = "one" in surface.shown.get(1, "")
        if running is not None and shows_text and any(c and c.stop for _, _, c in surface.controls):
            return running.token
        await asyncio.sleep(0.01)
    raise AssertionError("the answer never showed a Stop button")


SLOW = Answer("one two three four five six seven eight nine ten", delay=0.1)


async def slow_answer(
    dify: FakeDify, answers: AnswerPipeline, surface: ButtonSurface
) -> tuple[asyncio.Task[RenderStats], str]:
    """A slow answer under way in CHAT, and its stop token once its first words show with a Stop button."""
    dify.script(SLOW)
    answer = asyncio.create_task(ask(answers, surface))
    return answer, await started(answers, surface)


async def test_stop_ends_the_answer_with_the_text_so_far_and_frees_the_chat(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    answers = pipeline(client, store)
    surface = ButtonSurface()
    answer, token = await slow_answer(dify, answers, surface)
    assert len(stop_data(token).encode()) <= 64 and parse_action(stop_data(token)) is not None
    pressed = asyncio.get_running_loop().time()
    outcome, notice = await answers.controls.stop(by=ASKER, lang="en", token=token)
    assert (outcome, notice) == ("stopped", text("stop_done"))
    stats = await asyncio.wait_for(answer, 5)
    for _ in range(100):
        if dify.stops:
            break
        await asyncio.sleep(0.01)
    assert asyncio.get_running_loop().time() - pressed < 1.0
    assert len(dify.stops) == 1  # the answer's task, once
    assert stats.outcome == "stopped"
    final = surface.shown[1]
    body = final.removesuffix("\n\n" + text("stopped")).removesuffix(text("stopped")).strip()
    assert final.endswith(text("stopped")) and body and SLOW.text.startswith(body) and body != SLOW.text
    assert surface.controls[-1][2] == Controls()  # the Stop button is gone
    ops = len(surface.ops)
    await asyncio.sleep(0.3)
    assert len(surface.ops) == ops  # nothing is edited after the final frame
    assert answers.controls.stops.running(CHAT) is None
    dify.script(Answer("next"))
    second = ButtonSurface()
    await asyncio.wait_for(ask(answers, second, "again"), 3)  # the chat is free at once
    assert second.shown == {1: "next"}


async def test_only_the_asker_or_an_admin_may_stop(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    answers = pipeline(client, store)
    surface = ButtonSurface()
    answer, token = await slow_answer(dify, answers, surface)

    async def not_admin() -> bool:
        return False

    async def admin() -> bool:
        return True

    assert await answers.controls.stop(by="8", lang="en", token=token, is_admin=not_admin) == (
        "not_yours",
        text("stop_not_yours"),
    )
    assert not answer.done()
    assert (await answers.controls.stop(by="9", lang="en", chat=CHAT, is_admin=admin))[0] == "stopped"
    assert (await asyncio.wait_for(answer, 5)).outcome == "stopped"
    assert await answers.controls.stop(by=ASKER, lang="en", token=token) == ("ended", text("stop_ended"))
    assert await answers.controls.stop(by=ASKER, lang="en", chat=CHAT) == ("ended", text("stop_nothing"))


async def test_buttons_follow_the_answer_stop_while_streaming_then_feedback(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    answers = pipeline(client, store)
    surface = ButtonSurface()
    dify.script(Answer("a b c d e f", delay=0.05))
    stats = await ask(answers, surface)
    assert stats.outcome == "done" and stats.message_id
    # Every interim frame with text carries Stop (a placeholder before Dify started its task cannot).
    frames = zip(surface.ops[:-1], surface.controls[:-1], strict=True)
    interim = [controls for op, (_, _, controls) in frames if "a" in op.text]
    assert interim and all(controls is not None and controls.stop for controls in interim)
    assert surface.controls[-1][2] == Controls(feedback=FeedbackButtons(message_id=stats.message_id))
    assert dify.controls.suggested_calls == []  # the app suggests nothing: not even asked


async def test_no_feedback_buttons_when_they_are_off(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    surface = ButtonSurface()
    dify.script(Answer("done"))
    await ask(pipeline(client, store, feedback=False), surface)
    assert surface.controls[-1][2] == Controls()


async def test_like_dislike_dislike_sends_like_dislike_null_with_the_conversation_user(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    answers = pipeline(client, store)
    dify.script(Answer("rated answer"))
    stats = await ask(answers, ButtonSurface())
    assert stats.message_id
    message_id = stats.message_id
    presses = [
        await answers.controls.rate(FeedbackAction(message_id, rating), chat=CHAT, lang="en")
        for rating in ("like", "dislike", "dislike")
    ]
    assert [(p.ok, p.rating) for p in presses] == [(True, "like"), (True, "dislike"), (True, None)]
    assert [p.notice for p in presses] == [text("feedback_like"), text("feedback_dislike"), text("feedback_cleared")]
    user = CHAT.user
    assert dify.controls.feedbacks == [
        FeedbackCall(message_id, "like", user),
        FeedbackCall(message_id, "dislike", user),
        FeedbackCall(message_id, None, user),
    ]
    # After a restart (a new desk on the same Redis) the rating is still known: 👍 again sets, not clears.
    restarted = pipeline(client, store)
    again = await restarted.controls.rate(FeedbackAction(message_id, "like"), chat=CHAT, lang="en")
    assert (again.ok, again.rating) == (True, "like")
    cleared = await restarted.controls.rate(FeedbackAction(message_id, "like"), chat=CHAT, lang="en")
    assert (cleared.ok, cleared.rating) == (True, None)
    assert [call.rating for call in dify.controls.feedbacks[3:]] == ["like", None]


async def test_feedback_for_an_unknown_message_says_it_could_not_be_saved(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    answers = pipeline(client, store)
    rated = await answers.controls.rate(FeedbackAction("no-such-message", "like"), chat=CHAT, lang="en")
    assert (rated.ok, rated.rating, rated.notice) == (False, None, text("feedback_failed"))
    assert dify.controls.feedbacks == []


async def test_follow_up_questions_join_the_feedback_buttons(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    dify.controls.follow_ups_enabled = True
    answers = pipeline(client, store)
    surface = ButtonSurface()
    dify.script(Answer("first answer"))
    stats = await ask(answers, surface)
    assert stats.message_id
    expected = tuple(dify.controls.follow_ups[:3])
    assert surface.controls[-1][2] == Controls(
        feedback=FeedbackButtons(message_id=stats.message_id), suggestions=expected
    )
    assert surface.shown == {1: "first answer"}
    assert dify.controls.suggested_calls == [(stats.message_id, CHAT.user)]
    # Asking one continues the same conversation, with the question quoted above the answer.
    dify.script(Answer("second answer"))
    second = ButtonSurface()
    await ask(answers, second, expected[0], quote=expected[0])
    assert second.shown == {1: f"{text('asked', text=expected[0])}\n\nsecond answer"}
    first_id, second_id = (request["conversation_id"] for request in dify.chat_requests())
    assert first_id == "" and second_id != ""


async def test_a_stop_pressed_on_another_replica_reaches_the_answer(
    dify: FakeDify, client: DifyClient, store: ConversationStore, key_prefix: str
) -> None:
    running_here = pipeline(client, store)  # the replica streaming the answer
    pressed_there = pipeline(client, store)  # the replica the press reaches (a load balancer's choice)
    channel = f"{key_prefix}:stops"
    async with (
        running_here.controls.relay_over(store.redis, channel=channel),
        pressed_there.controls.relay_over(store.redis, channel=channel),
    ):
        surface = ButtonSurface()
        answer, token = await slow_answer(dify, running_here, surface)

        async def admin() -> bool:
            return False

        refused = await pressed_there.controls.stop(by="8", lang="en", token=token, is_admin=admin)
        assert refused == ("not_yours", text("stop_not_yours")) and not answer.done()
        assert await pressed_there.controls.stop(by=ASKER, lang="en", token=token) == ("stopped", text("stop_done"))
        assert (await asyncio.wait_for(answer, 5)).outcome == "stopped"
        assert surface.shown[1].endswith(text("stopped"))
        # An answer no replica runs any more: "ended", without waiting for replies that cannot come.
        clock = asyncio.get_running_loop().time
        before = clock()
        assert (await pressed_there.controls.stop(by=ASKER, lang="en", token=token))[0] == "ended"
        assert clock() - before < 1.5
