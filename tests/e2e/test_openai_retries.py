"""The OpenAI endpoint and retries: one rate-limited answer is retried by the caller only, told when."""

from __future__ import annotations

from collections.abc import AsyncIterable

import openai
import pytest

from bots.openai_api.errors import RETRY_AFTER
from bots.openai_api.routes import chat_key
from core.answer import Done, Failed, ReplyEvent
from core.conversations import ConversationStore
from core.errors import BotError
from core.question import MAX_QUESTION_CHARS, QuestionTooLong
from core.render.renderer import RenderStats
from core.service import ReplyStream
from core.texts import friendly_error
from tests.e2e.openai_harness import running_api, stream_text, user
from tests.fakes.dify import HttpError
from tests.fakes.dify_transcripts import recorded


@pytest.mark.parametrize("stream", [True, False])
async def test_a_busy_app_reaches_the_caller_once_with_retry_after(store: ConversationStore, stream: bool) -> None:
    async with running_api(store) as api, api.client() as client:
        api.dify.script(*[HttpError(429, "too_many_requests", "Too many requests")] * 3)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="dify", messages=[user("q")], stream=stream)
        assert caught.value.response.headers["Retry-After"] == str(RETRY_AFTER)
        assert "x-should-retry" not in caught.value.response.headers  # the client's own retry policy decides
        assert len(api.dify.chat_requests()) == 1  # not retried here as well


async def test_the_pipeline_still_retries_a_busy_app_for_chat_doors(store: ConversationStore) -> None:
    async with running_api(store) as api:
        api.dify.script(HttpError(429, "too_many_requests", "Too many requests"))
        stats = await api.pipeline.answer(chat=chat_key("retry-test"), text="q", sink=_Collect.of)
        assert stats.outcome == "done" and len(api.dify.chat_requests()) == 2


async def test_an_over_long_question_is_a_400_and_never_reaches_dify(store: ConversationStore) -> None:
    async with running_api(store) as api, api.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="dify", messages=[user("x" * (MAX_QUESTION_CHARS + 1))])
        body = caught.value.body
        assert isinstance(body, dict)
        assert body["code"] == "context_length_exceeded" and body["message"] == friendly_error(QuestionTooLong())
        assert api.dify.chat_requests() == []


class _Collect:
    """A sink that reads the answer to its end."""

    @classmethod
    def of(cls, stream: ReplyStream) -> _Collect:
        return cls()

    async def render(self, events: AsyncIterable[ReplyEvent]) -> RenderStats:
        stats = RenderStats()
        async for event in events:
            if isinstance(event, Done | Failed):
                stats.outcome = "done" if isinstance(event, Done) else "failed"
        return stats

    def interrupt(self, error: BotError) -> None:
        return None


async def test_a_streamed_workflow_answer_is_the_outputs_not_the_preview(store: ConversationStore) -> None:
    async with running_api(store) as api, api.client() as client:
        api.dify.mode = "workflow"
        api.dify.script(recorded("41_wf_stream"))
        answer, _ = await stream_text(client, messages=[user("hello")])
        assert answer == "hello workflow\n**bold** 你好"
