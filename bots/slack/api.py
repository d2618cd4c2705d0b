"""SlackApi: the Web API calls of one answer, counted per method and kept within the workspace's budgets."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.blocks import FALLBACK_CHARS, Block, markdown_block
from bots.slack.budgets import WorkspaceBucket
from bots.slack.errors import NETWORK_ERRORS, describe, error_code, retry_after, status_code
from bots.slack.markdown import to_mrkdwn
from core.render.surface import SurfaceBusy
from core.render.throttle import TokenBucket

__all__ = ["BUSY_RETRY", "MARKDOWN_REFUSED", "STATUS_REFRESH", "BudgetFor", "SlackApi"]

log = logging.getLogger(__name__)

STATUS_REFRESH = 60.0  # Slack drops a status after 2 minutes without a message
# Errors with which a workspace or API version refuses `markdown_text`.
MARKDOWN_REFUSED = frozenset({"invalid_arguments", "invalid_markdown", "markdown_text_not_supported"})

BudgetFor = Callable[[str], TokenBucket | None]
BUSY_RETRY = 0.5  # seconds before an interim frame tries a spent budget again
SECTION_CHARS = 3000  # a section block's text limit


class SlackApi:
    """Web API calls of one answer, counted per method and kept within the workspace's budgets."""

    def __init__(
        self, client: AsyncWebClient, *, channel: str, thread_ts: str, budget: BudgetFor | None = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.calls: Counter[str] = Counter()
        self.urgent = False  # a final frame waits for budget; an interim one is skipped instead
        self._budget = budget
        self._status_broken = False
        self._status_shown: str | None = None
        self._status_at = float("-inf")
        self._mrkdwn = False

    async def call(
        self, method: str, request: Awaitable[AsyncSlackResponse], *, urgent: bool | None = None
    ) -> AsyncSlackResponse:
        """Send `request` within the budgets: this replica's bucket first (cheap), then the one every replica
        shares. A final frame (`urgent`) waits for both; anything else raises SurfaceBusy instead."""
        urgent = self.urgent if urgent is None else urgent
        bucket = self._budget(method) if self._budget is not None else None
        if bucket is not None:
            reserve = 0 if urgent else bucket.burst // 2  # half the burst is kept for final frames
            if urgent:
                await bucket.take()
            elif not bucket.try_take(reserve=reserve):
                _discard(request)
                raise SurfaceBusy(max(bucket.delay(), BUSY_RETRY))
            if isinstance(bucket, WorkspaceBucket):
                while wait_ms := await bucket.take_shared(reserve=reserve):
                    if not urgent:
                        _discard(request)
                        raise SurfaceBusy(max(wait_ms / 1000, BUSY_RETRY))
                    await asyncio.sleep(wait_ms / 1000)
        self.calls[method] += 1
        try:
            return await request
        except SlackApiError as exc:
            if isinstance(bucket, WorkspaceBucket) and status_code(exc) == 429:
                await bucket.pause_shared(retry_after(exc))
            raise

    async def post(self, markdown: str) -> str:
        if not self._mrkdwn:
            try:
                response = await self.call(
                    "chat.postMessage",
                    self.client.chat_postMessage(
                        channel=self.channel, thread_ts=self.thread_ts, markdown_text=markdown
                    ),
                )
                return str(response["ts"])
            except SlackApiError as exc:
                self._give_up_markdown(exc)
        response = await self.call(
            "chat.postMessage",
            self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=to_mrkdwn(markdown)),
        )
        return str(response["ts"])

    async def post_blocks(self, markdown: str, controls: list[Block]) -> str:
        """Post `markdown` as blocks with the `controls` blocks under it (markdown_text takes no blocks)."""
        response = await self._with_blocks(
            "chat.postMessage",
            lambda content: self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, **content),
            markdown,
            controls,
        )
        return str(response["ts"])

    async def update_blocks(self, ts: str, markdown: str, controls: list[Block]) -> None:
        """Rewrite message `ts` as blocks: `markdown`, then `controls` (none: the buttons go away)."""
        await self._with_blocks(
            "chat.update",
            lambda content: self.client.chat_update(channel=self.channel, ts=ts, **content),
            markdown,
            controls,
        )

    async def _with_blocks(
        self,
        method: str,
        request: Callable[[dict[str, Any]], Awaitable[AsyncSlackResponse]],
        markdown: str,
        controls: list[Block],
    ) -> AsyncSlackResponse:
        if not self._mrkdwn:
            try:
                return await self.call(method, request(_block_content(markdown, controls, mrkdwn=False)))
            except SlackApiError as exc:
                if error_code(exc) not in MARKDOWN_REFUSED | {"invalid_blocks"}:
                    raise
                self._give_up_markdown(exc, refused=True)
        return await self.call(method, request(_block_content(markdown, controls, mrkdwn=True)))

    async def update(self, ts: str, markdown: str) -> None:
        if not self._mrkdwn:
            try:
                await self.call(
                    "chat.update", self.client.chat_update(channel=self.channel, ts=ts, markdown_text=markdown)
                )
                return
            except SlackApiError as exc:
                self._give_up_markdown(exc)
        await self.call("chat.update", self.client.chat_update(channel=self.channel, ts=ts, text=to_mrkdwn(markdown)))

    def _give_up_markdown(self, exc: SlackApiError, *, refused: bool = False) -> None:
        """Where Slack refuses `markdown_text`, send Slack's own mrkdwn in `text` from now on."""
        if not refused and error_code(exc) not in MARKDOWN_REFUSED:
            raise exc
        log.info("slack refused markdown_text (%s); sending mrkdwn text instead", error_code(exc))
        self._mrkdwn = True

    async def delete(self, ts: str) -> None:
        await self.call("chat.delete", self.client.chat_delete(channel=self.channel, ts=ts))

    async def set_status(self, text: str) -> None:
        """Best effort; after the first failure (often a missing scope) stop trying for this answer."""
        if self._status_broken:
            return
        now = time.monotonic()
        if text == self._status_shown and now - self._status_at < STATUS_REFRESH:
            return
        try:
            await self.call(
                "assistant.threads.setStatus",
                self.client.assistant_threads_setStatus(channel_id=self.channel, thread_ts=self.thread_ts, status=text),
                urgent=False,
            )
        except SurfaceBusy:
            return  # the workspace's budget is spent: the next progress line tries again
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            self._status_broken = True
            log.info("cannot set the thread status in %s: %s", self.channel, describe(exc))
            return
        self._status_shown, self._status_at = text, now


def _block_content(markdown: str, controls: list[Block], *, mrkdwn: bool) -> dict[str, Any]:
    """`blocks` (the text, then the controls) and the `text` notifications show; mrkdwn sections where
    Slack refuses markdown."""
    # Only notifications show the fallback: a bounded beginning keeps interim frames cheap.
    fallback = to_mrkdwn(markdown if mrkdwn else markdown[:FALLBACK_CHARS])
    if mrkdwn:
        body = [
            {"type": "section", "text": {"type": "mrkdwn", "text": fallback[start : start + SECTION_CHARS]}}
            for start in range(0, len(fallback), SECTION_CHARS)
        ]
    else:
        body = [markdown_block(markdown)] if markdown else []
    return {"blocks": [*body, *controls], "text": fallback[:FALLBACK_CHARS] or " "}


def _discard(request: Awaitable[AsyncSlackResponse]) -> None:
    if inspect.iscoroutine(request):
        request.close()  # never sent
