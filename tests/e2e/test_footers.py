"""Telegram end to end: the sources line and the run-details footer under a completed answer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.slack_harness import slack_bot
from tests.e2e.telegram_harness import TelegramHarness, rendered, telegram_bot
from tests.fakes.dify import RETRIEVER_RESOURCE, USAGE, Answer, Events, ReplyContext, Step, StreamError, Transcript
from tests.fakes.slack import mention_event

ANSWER = "Refunds are accepted within 30 days of delivery."


def cited(*names: str, usage: dict[str, Any] | None = None) -> Transcript:
    """A chat answer whose message_end cites `names` (none: an empty retriever_resources)."""

    def build(ctx: ReplyContext) -> list[Step]:
        ev = Events(ctx, mode="chat")
        resources = [{**RETRIEVER_RESOURCE, "document_name": name, "title": name} for name in names]
        return [
            ev.message("Refunds are accepted"),
            ev.message(" within 30 days of delivery."),
            ev.message_end(retriever_resources=resources, usage=usage),
        ]

    return Transcript(build)


async def ask(bot: TelegramHarness, chat_id: int, **kwargs: Any) -> list[str]:
    await bot.say("refund?", chat_id=chat_id, **kwargs)
    return await bot.settled(chat_id)


def italic_text(bot: TelegramHarness, chat_id: int) -> list[str]:
    message = bot.telegram.chat_messages(chat_id)[-1]
    units = message.text.encode("utf-16-le")
    return [
        units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
        for e in message.entities
        if e["type"] == "italic"
    ]


async def test_sources_line_present_with_citations_and_absent_without(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, show_sources="on") as bot:
        bot.dify.script(cited("refunds.md", "shipping.md", "refunds.md", ""))
        assert await ask(bot, 42) == [rendered(ANSWER) + "\n\nSources: refunds.md, shipping.md"]
        bot.dify.script(cited())
        assert await ask(bot, 43) == [rendered(ANSWER)]
        bot.dify.script(cited("退款政策.md"))
        assert await ask(bot, 44, language_code="zh") == [rendered(ANSWER) + "\n\n来源：退款政策.md"]


async def test_sources_line_can_be_turned_off(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, show_sources="off") as bot:
        bot.dify.script(cited("refunds.md"))
        assert await ask(bot, 42) == [rendered(ANSWER)]


async def test_usage_footer_is_off_by_default(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as bot:
        bot.dify.script(Answer(ANSWER))
        assert await ask(bot, 42) == [rendered(ANSWER)]


async def test_usage_footer_with_tokens(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, show_usage="tokens") as bot:
        bot.dify.script(Answer(ANSWER))  # the fake's usage: 524 tokens, $0.000084, 1.214 s
        assert await ask(bot, 42) == [rendered(ANSWER) + "\n\n524 tokens"]
        assert italic_text(bot, 42) == ["524 tokens"]


async def test_usage_footer_in_full_after_the_sources(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, show_usage="full", show_sources="on") as bot:
        bot.dify.script(cited("refunds.md", usage=USAGE))
        expected = rendered(ANSWER) + "\n\nSources: refunds.md\n\n524 tokens · $0.000084 · 1.2 s"
        assert await ask(bot, 42) == [expected]
        assert italic_text(bot, 42) == ["524 tokens · $0.000084 · 1.2 s"]
        usage = {"total_tokens": 1234, "total_price": "0.0021", "currency": "RMB", "latency": 3.21}
        bot.dify.script(cited(usage=usage))
        assert await ask(bot, 43, language_code="zh") == [rendered(ANSWER) + "\n\n1,234 tokens · 0.0021 RMB · 3.2 秒"]


async def test_workflow_usage_counts_steps(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, dify_mode="workflow", show_usage="full") as bot:
        bot.dify.script(Answer(ANSWER))
        # price from the node's usage, time and steps from workflow_finished
        assert await ask(bot, 42) == [rendered(ANSWER) + "\n\n524 tokens · $0.000084 · 2.7 s · 3 steps"]


async def test_no_footers_on_a_failed_answer(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, show_usage="full", show_sources="on") as bot:
        bot.dify.script(StreamError("completion_request_error", "model overloaded", after_text="Refunds are"))
        [final] = await ask(bot, 42)
        assert final.startswith("Refunds are")
        assert "⚠️" in final
        assert "tokens" not in final and "Sources" not in final


@pytest.mark.parametrize("streaming", ["native", "update"])
async def test_slack_answer_ends_with_both_footers(redis_url: str, key_prefix: str, streaming: str) -> None:
    async with slack_bot(
        redis_url=redis_url, key_prefix=key_prefix, streaming=streaming, show_sources="on", show_usage="tokens"
    ) as bot:
        bot.dify.script(cited("refunds.md", usage=USAGE))
        ts = bot.next_ts()
        assert await bot.event(mention_event(channel="C100", user="U1", text="<@UBOT> refund?", ts=ts)) == 200
        replies = await bot.thread_settled("C100", ts)
        assert replies == [ANSWER + "\n\nSources: refunds.md\n\n_524 tokens_"]
