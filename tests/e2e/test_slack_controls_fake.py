"""The fake Slack's strictness about interactive blocks, through the real slack-sdk client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack

TOKEN = "xoxb-test-token"
BUTTON: dict[str, Any] = {
    "type": "button",
    "action_id": "stop",
    "text": {"type": "plain_text", "text": "Stop"},
    "value": "s:x",
}
STOP: dict[str, Any] = {"type": "actions", "elements": [BUTTON]}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=TOKEN) as slack:
        yield slack


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url)


async def refused(call: Any) -> str:
    with pytest.raises(SlackApiError) as error:
        await call
    return str(error.value.response["error"])


async def test_markdown_text_cannot_go_with_blocks(client: AsyncWebClient) -> None:
    call = client.chat_postMessage(channel="C1", thread_ts="1.1", markdown_text="hi", blocks=[STOP])
    assert await refused(call) == "invalid_arguments"


async def test_invalid_button_is_refused(client: AsyncWebClient) -> None:
    long_label = {**BUTTON, "text": {"type": "plain_text", "text": "x" * 76}}
    blocks = [{"type": "actions", "elements": [long_label]}]
    assert await refused(client.chat_postMessage(channel="C1", text="hi", blocks=blocks)) == "invalid_blocks"


async def test_streams_take_blocks_only_when_they_stop(fake: FakeSlack, client: AsyncWebClient) -> None:
    start = client.chat_startStream(channel="D1", thread_ts="1.1", markdown_text="hi", blocks=[STOP])
    assert await refused(start) == "invalid_arguments"
    started = await client.chat_startStream(channel="D1", thread_ts="1.1", markdown_text="hi")
    await client.chat_stopStream(channel="D1", ts=started["ts"], blocks=[STOP])
    assert fake.messages[("D1", started["ts"])].blocks == [STOP]


async def test_update_without_blocks_keeps_them_and_an_empty_list_clears(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C1", text="hi", blocks=[{"type": "markdown", "text": "hi"}, STOP])
    ts = posted["ts"]
    await client.chat_update(channel="C1", ts=ts, text="hello")
    assert fake.messages[("C1", ts)].blocks[1] == STOP
    await client.chat_update(channel="C1", ts=ts, text="hello", blocks=[])
    assert fake.messages[("C1", ts)].blocks == [] and fake.visible_text("C1", ts) == "hello"


async def test_ephemeral_messages_are_recorded(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postEphemeral(channel="C1", user="U2", text="only you", thread_ts="1.1")
    assert fake.ephemerals == [{"channel": "C1", "user": "U2", "text": "only you", "thread_ts": "1.1"}]
