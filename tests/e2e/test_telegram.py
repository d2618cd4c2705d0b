"""Telegram end to end: update in (polling or webhook) → fake Dify → what the user sees on the fake Telegram."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bots.telegram.markdown import utf16_len
from core.dify.errors import DifyQuotaExceeded
from core.texts import friendly_error, text
from tests.e2e.telegram_harness import TelegramHarness, eventually, rendered, telegram_bot
from tests.fakes.dify import Answer, Delay, HttpError, StreamError, Transcript
from tests.fakes.dify_transcripts import TRANSCRIPTS

MARKDOWN_ANSWER = (
    "# Refund policy\n\nYou can get **your money back** within *30 days*. See [the policy](https://example.com/p).\n\n"
    "- keep the receipt\n- use the `refund` form\n\n> Exceptions apply to ~~sale~~ items.\n"
)
CODE_ANSWER = (
    "Here is the script:\n\n```python\n"
    + "\n".join(f"def step_{i}(value):\n    return value * {i}  # multiply\n" for i in range(150))
    + "```\n\nRun it with `python script.py`."
)
CHINESE_ANSWER = "你好！退款须在三十天内申请。🌏👍 我们会尽快处理，谢谢你的耐心。😊"
LONG_ANSWER = "\n\n".join(
    f"Paragraph {i}: " + " ".join(f"word{j}" for j in range(60)) for i in range(25)
)  # ≈ 10,000 characters: three messages


def chunks_of(answer: str, size: int = 40) -> list[str]:
    return [answer[i : i + size] for i in range(0, len(answer), size)]


@pytest.fixture(params=["polling", "webhook"])
async def bot(request: pytest.FixtureRequest, redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=request.param == "webhook") as h:
        yield h


@pytest.fixture
async def polling_bot(redis_url: str, key_prefix: str) -> AsyncIterator[TelegramHarness]:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as harness:
        yield harness


@pytest.mark.parametrize(
    "answer",
    ["Refunds are accepted within 30 days of delivery.", MARKDOWN_ANSWER, CHINESE_ANSWER],
    ids=["short", "markdown", "chinese-emoji"],
)
async def test_final_text_equals_the_answer(bot: TelegramHarness, answer: str) -> None:
    bot.dify.script(Answer(answer, chunks=chunks_of(answer, 7), delay=0.01))
    update = await bot.say("question")
    texts = await bot.settled()
    assert texts == [rendered(answer)]
    message = bot.telegram.chat_messages(42)[0]
    assert message.reply_to_message_id == update["message"]["message_id"]
    assert bot.telegram.rate_limited == 0


async def test_markdown_becomes_entities(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.script(Answer(MARKDOWN_ANSWER))
    await polling_bot.say("policy?")
    await polling_bot.settled()
    entities = {e["type"] for e in polling_bot.telegram.chat_messages(42)[0].entities}
    assert {"bold", "italic", "text_link", "code"} <= entities
    assert "**" not in polling_bot.answers()[0]


async def test_long_answer_continues_in_three_messages(bot: TelegramHarness) -> None:
    bot.dify.script(Answer(LONG_ANSWER, chunks=chunks_of(LONG_ANSWER, 400), delay=0.005))
    await bot.say("tell me everything")
    texts = await bot.settled(count=3)
    assert len(texts) == 3
    assert all(utf16_len(t) <= 4096 for t in texts)
    assert "".join(texts).replace("\n", "").replace(" ", "") == LONG_ANSWER.replace("\n", "").replace(" ", "")
    for t in texts:  # never cut inside a word
        assert t.split()[-1].startswith("word") and t.split()[-1][4:].isdigit()
    assert bot.telegram.rate_limited == 0


async def test_code_heavy_answer_keeps_code_blocks_whole(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.script(Answer(CODE_ANSWER, chunks=chunks_of(CODE_ANSWER, 300), delay=0.005))
    await polling_bot.say("code please")
    texts = await polling_bot.settled(count=2)
    assert len(texts) >= 2
    messages = polling_bot.telegram.chat_messages(42)
    # every message that holds code shows it as a python code block
    for message in messages:
        if "def step_" in message.text:
            assert any(e["type"] == "pre" and e.get("language") == "python" for e in message.entities)
    shown = "".join(texts)
    assert all(f"def step_{i}(value):" in shown for i in range(150))
    assert "python script.py" in texts[-1]


async def test_no_placeholder_is_left_behind_when_dify_is_slow(polling_bot: TelegramHarness) -> None:
    def slow(ctx: object) -> list[object]:
        from tests.fakes.dify import Events

        ev = Events(ctx)  # type: ignore[arg-type]
        return [Delay(1.0), ev.message("Finally"), ev.message(" here."), ev.message_end()]

    polling_bot.dify.script(Transcript(slow))  # type: ignore[arg-type]
    await polling_bot.say("slow one")
    texts = await polling_bot.settled()
    assert texts == ["Finally here."]
    history = polling_bot.telegram.chat_messages(42)[0].history
    assert history[0] == text("thinking")  # the status placeholder came first ...
    assert len(polling_bot.telegram.chat_messages(42)) == 1  # ... and became the answer
    assert polling_bot.telegram.count("sendChatAction") >= 1


async def test_progress_is_shown_before_text(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.mode = "agent-chat"

    def with_pause(ctx: object) -> list[object]:
        steps = TRANSCRIPTS["agent_with_tool"](ctx)  # type: ignore[arg-type]
        return [*steps[:3], Delay(0.9), *steps[3:]]

    polling_bot.dify.script(Transcript(with_pause))  # type: ignore[arg-type]
    await polling_bot.say("what time is it?")
    await polling_bot.settled()
    history = polling_bot.telegram.chat_messages(42)[0].history
    assert text("progress_tool", label="Current Time") in history
    assert polling_bot.answers() == ["It is 10:00 UTC."]


@pytest.mark.parametrize("chat_id,chat_type", [(42, "private"), (-100500, "supergroup")])
async def test_no_429_at_the_default_cadence(redis_url: str, key_prefix: str, chat_id: int, chat_type: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix) as harness:
        answer = " ".join(f"token{i}" for i in range(300))
        # ≈ 150 Telegram seconds of streaming: far more edits than the group's 20 per minute if unthrottled
        harness.dify.script(Answer(answer, chunks=chunks_of(answer, 10), delay=0.03))
        text_ = "@test_bot go" if chat_type != "private" else "go"
        await harness.say(text_, chat_id=chat_id, chat_type=chat_type)
        texts = await harness.settled(chat_id, timeout=30)
        assert texts == [answer]
        assert harness.telegram.rate_limited == 0
        assert harness.telegram.count("editMessageText", chat_id=chat_id) >= 5


async def test_recovers_from_injected_429(polling_bot: TelegramHarness) -> None:
    answer = " ".join(f"w{i}" for i in range(80))
    polling_bot.telegram.fail_next("editMessageText", "retry_after:1")
    polling_bot.dify.script(Answer(answer, chunks=chunks_of(answer, 8), delay=0.02))
    await polling_bot.say("go")
    assert await polling_bot.settled() == [answer]
    assert polling_bot.telegram.count("editMessageText", status=429) == 1


async def test_final_frame_survives_a_429_storm(polling_bot: TelegramHarness) -> None:
    answer = " ".join(f"w{i}" for i in range(60))
    polling_bot.telegram.fail_next("editMessageText", "retry_after:1", count=5)
    polling_bot.dify.script(Answer(answer, chunks=chunks_of(answer, 8), delay=0.02))
    await polling_bot.say("go")
    assert await polling_bot.settled(timeout=30) == [answer]


async def test_recovers_when_the_message_was_deleted(polling_bot: TelegramHarness) -> None:
    answer = " ".join(f"w{i}" for i in range(80))
    polling_bot.telegram.fail_next("editMessageText", "not_found")
    polling_bot.dify.script(Answer(answer, chunks=chunks_of(answer, 8), delay=0.02))
    await polling_bot.say("go")
    await eventually(lambda: polling_bot.idle() and polling_bot.telegram.count("sendMessage") >= 2)
    texts = await polling_bot.settled()
    assert texts[-1] == answer


async def test_recovers_from_cant_parse_with_plain_text(polling_bot: TelegramHarness) -> None:
    polling_bot.telegram.fail_next("sendMessage", "cant_parse")
    polling_bot.dify.script(Answer(MARKDOWN_ANSWER))
    await polling_bot.say("go")
    texts = await polling_bot.settled()
    assert texts[0].startswith("# Refund policy")  # the raw Markdown, as plain text: nothing lost


async def test_dify_errors_are_friendly_and_localized(polling_bot: TelegramHarness) -> None:
    polling_bot.dify.script(StreamError("completion_request_error", "[openai] boom", after_text="The answer is"))
    await polling_bot.say("go")
    texts = await polling_bot.settled()
    from core.dify.errors import DifyProviderError

    assert texts == ["The answer is\n\n⚠️ " + friendly_error(DifyProviderError())]
    polling_bot.dify.script(HttpError(400, "provider_quota_exceeded", "Your quota ... exhausted"))
    await polling_bot.say("again", language_code="zh-hans")
    texts = await polling_bot.settled(count=2)
    assert texts[-1] == "⚠️ " + friendly_error(DifyQuotaExceeded(), "zh")


async def test_group_mention_rules(polling_bot: TelegramHarness) -> None:
    group = -1001
    await polling_bot.say("just chatting", chat_id=group, chat_type="supergroup")
    await polling_bot.say("@test_bot what is the refund window?", chat_id=group, chat_type="supergroup")
    texts = await polling_bot.settled(group)
    assert texts == ["echo: what is the refund window?"]  # the mention was stripped
    bot_message_id = polling_bot.telegram.chat_messages(group)[0].message_id
    await polling_bot.say(
        "and for sale items?", chat_id=group, chat_type="supergroup", reply_to_bot_message_id=bot_message_id
    )
    texts = await polling_bot.settled(group, count=2)
    assert texts[-1] == "echo: and for sale items?"
    await polling_bot.say("@other_bot hello", chat_id=group, chat_type="supergroup")
    await asyncio.sleep(0.3)
    assert [r["query"] for r in polling_bot.dify.chat_requests()] == [
        "what is the refund window?",
        "and for sale items?",
    ]
    requests = polling_bot.dify.chat_requests()
    assert requests[0]["user"] == f"tg-chat-{group}" and requests[1]["conversation_id"] != ""


async def test_forum_topics_are_separate_conversations(polling_bot: TelegramHarness) -> None:
    group = -1002
    for topic in (5, 9):
        await polling_bot.say(
            f"@test_bot topic {topic}",
            chat_id=group,
            chat_type="supergroup",
            message_thread_id=topic,
            is_topic_message=True,
        )
        await polling_bot.settled(group, count=1 if topic == 5 else 2)
    messages = polling_bot.telegram.chat_messages(group)
    assert [m.message_thread_id for m in messages] == [5, 9]
    assert len(polling_bot.dify.conversations) == 2


async def test_reset_clears_the_conversation(bot: TelegramHarness) -> None:
    await bot.say("one")
    await bot.settled()
    await bot.say("/reset")
    texts = await bot.settled(count=2)
    assert texts[-1] == text("reset_done")
    await bot.say("two")
    await bot.settled(count=3)
    assert [r["conversation_id"] for r in bot.dify.chat_requests()] == ["", ""]


async def test_start_help_and_unknown_commands(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("/start")
    await polling_bot.settled()
    await polling_bot.say("/help")
    await polling_bot.settled(count=2)
    await polling_bot.say("/frobnicate")
    texts = await polling_bot.settled(count=3)
    assert texts == ["Hello! Ask me anything.", text("help"), text("unknown_command")]
    assert polling_bot.dify.chat_requests() == []
    assert {c["command"] for c in polling_bot.telegram.commands} == {"start", "help", "reset", "stop"}


async def test_allow_lists(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, telegram_allowed_users="7") as harness:
        await harness.say("hello", chat_id=8, user_id=8)
        assert await harness.settled(8) == [text("not_allowed")]
        await harness.say("hello", chat_id=7, user_id=7)
        assert await harness.settled(7) == ["echo: hello"]
        assert [r["query"] for r in harness.dify.chat_requests()] == ["hello"]


async def test_wrong_webhook_secret_is_rejected(redis_url: str, key_prefix: str) -> None:
    async with telegram_bot(redis_url=redis_url, key_prefix=key_prefix, webhook=True) as harness:
        assert harness.telegram.webhook is not None
        assert harness.telegram.webhook["url"] == "https://bot.example.com/telegram/webhook"
        update = harness.telegram.message_update(chat_id=42, user_id=7, text="hi")
        assert await harness.deliver(update, secret="wrong") == 401
        assert await harness.deliver(update, secret=None) == 401
        await asyncio.sleep(0.2)
        assert harness.dify.chat_requests() == [] and harness.answers() == []


async def test_redelivered_update_is_answered_once(bot: TelegramHarness) -> None:
    update = bot.telegram.message_update(chat_id=42, user_id=7, text="once")
    assert await bot.deliver(update) == 200
    assert await bot.deliver(update) == 200
    await bot.settled()
    await asyncio.sleep(0.3)
    assert bot.answers() == ["echo: once"]
    assert len(bot.dify.chat_requests()) == 1


async def test_two_messages_together_are_answered_in_order(bot: TelegramHarness) -> None:
    bot.dify.script(Answer("first answer", delay=0.05), Answer("second answer"))
    first = bot.telegram.message_update(chat_id=42, user_id=7, text="first")
    second = bot.telegram.message_update(chat_id=42, user_id=7, text="second")
    await asyncio.gather(bot.deliver(first), bot.deliver(second))
    texts = await bot.settled(count=2)
    assert texts == ["first answer", "second answer"]
    requests = bot.dify.chat_requests()
    assert [r["query"] for r in requests] == ["first", "second"]
    assert requests[0]["conversation_id"] == "" and requests[1]["conversation_id"] != ""


async def test_blocked_bot_stops_the_dify_task(polling_bot: TelegramHarness) -> None:
    answer = " ".join(f"w{i}" for i in range(200))
    polling_bot.dify.script(Answer(answer, chunks=chunks_of(answer, 5), delay=0.03))
    await polling_bot.say("go")
    await eventually(lambda: polling_bot.telegram.count("sendMessage") >= 1)
    polling_bot.telegram.fail_next("editMessageText", "forbidden", count=50)
    await eventually(lambda: len(polling_bot.dify.stops) == 1 and polling_bot.idle())


async def test_stale_conversation_recovered_says_so(polling_bot: TelegramHarness) -> None:
    await polling_bot.say("one")
    await polling_bot.settled()
    polling_bot.dify.conversations.clear()  # Dify forgot it (deleted, app restored, ...)
    await polling_bot.say("two")
    texts = await polling_bot.settled(count=2)
    assert texts[-1] == "echo: two\n\n" + text("context_reset")


async def test_telegram_server_errors_skip_a_frame_and_the_final_arrives(polling_bot: TelegramHarness) -> None:
    answer = " ".join(f"w{i}" for i in range(60))
    polling_bot.telegram.fail_next("editMessageText", "server_error", count=2)
    polling_bot.dify.script(Answer(answer, chunks=chunks_of(answer, 8), delay=0.02))
    await polling_bot.say("go")
    assert await polling_bot.settled() == [answer]
    assert polling_bot.telegram.count("editMessageText", status=500) == 2
