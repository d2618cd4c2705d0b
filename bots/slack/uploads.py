"""Files the Dify app produced, put into the answer's thread: getUploadURLExternal → POST → completeUploadExternal.

slack-sdk's files_upload_v2 reads each file into memory; here the bytes stream from disk with a known length."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.api import SlackApi
from bots.slack.errors import DEFAULT_RETRY_AFTER, NETWORK_ERRORS, error_code, surface_error
from core.files.model import ProducedFile
from core.render.surface import SurfaceError, SurfaceRateLimited, SurfaceTransient

__all__ = ["REFUSED", "UPLOAD_TIMEOUT", "FileUploader", "UploadRefused"]

# Answers meaning Slack will not take this file here; trying again would not help.
REFUSED = frozenset(
    {
        "missing_scope",
        "file_uploads_disabled",
        "file_uploads_except_images_disabled",
        "file_upload_size_restricted",
        "file_type_not_allowed",
        "alt_txt_too_large",
        "invalid_arguments",
        "not_allowed_token_type",
        "not_in_channel",
        "channel_not_found",
        "access_denied",
        "posting_to_channel_denied",
        "is_archived",
        "restricted_action",
        "invalid_auth",
        "token_revoked",
        "account_inactive",
    }
)
UPLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=120)


class UploadRefused(SurfaceError):
    """Slack refused a file for good (scope, workspace policy, type, channel): logged, not retried."""


class FileUploader:
    """Puts produced files into one thread. Files already shared are remembered, so a retried attach
    (after a rate limit or a network failure) does not post them twice."""

    def __init__(self, slack: SlackApi) -> None:
        self._slack = slack
        self._shared: set[Path] = set()

    async def attach(self, files: Sequence[ProducedFile]) -> None:
        todo = [f for f in files if f.path not in self._shared and f.size > 0]
        if not todo:
            return
        self._slack.urgent = True  # the answer is complete: wait for budget rather than skip
        tickets: list[tuple[str, ProducedFile]] = []
        async with aiohttp.ClientSession(timeout=UPLOAD_TIMEOUT) as session:
            for produced in todo:
                upload_url, file_id = await self._ticket(produced)
                await _post(session, upload_url, produced)
                tickets.append((file_id, produced))
        # One completion shares them all as one message in the thread (tickets from a failed attempt
        # are never completed, and Slack discards them).
        await self._web(
            "files.completeUploadExternal",
            self._slack.client.files_completeUploadExternal(
                files=[{"id": file_id, "title": produced.name} for file_id, produced in tickets],
                channel_id=self._slack.channel,
                thread_ts=self._slack.thread_ts,
            ),
        )
        self._shared.update(produced.path for produced in todo)

    async def _ticket(self, produced: ProducedFile) -> tuple[str, str]:
        response = await self._web(
            "files.getUploadURLExternal",
            self._slack.client.files_getUploadURLExternal(filename=produced.name, length=produced.size),
        )
        upload_url, file_id = response.get("upload_url"), response.get("file_id")
        if not isinstance(upload_url, str) or not isinstance(file_id, str):
            raise SurfaceTransient("files.getUploadURLExternal answered without an upload URL")
        return upload_url, file_id

    async def _web(self, method: str, request: Awaitable[AsyncSlackResponse]) -> dict[str, Any]:
        try:
            response = await self._slack.call(method, request)
        except SlackApiError as exc:
            code = error_code(exc)
            if code in REFUSED:
                hint = " (the app needs the files:write scope)" if code == "missing_scope" else ""
                raise UploadRefused(f"{method}: {code}{hint}") from None
            raise surface_error(exc) from None
        except NETWORK_ERRORS as exc:
            raise surface_error(exc) from None
        data = response.data
        return data if isinstance(data, dict) else {}


async def _post(session: aiohttp.ClientSession, url: str, produced: ProducedFile) -> None:
    """Send the file's bytes to its upload URL, streamed from disk with the length announced."""
    headers = {"Content-Length": str(produced.size), "Content-Type": "application/octet-stream"}
    try:
        async with session.post(url, data=produced.chunks(), headers=headers) as response:
            status = response.status
            retry_after = response.headers.get("Retry-After")
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The URL is an upload ticket: keep it out of logs and errors, only the failure's type.
        raise SurfaceTransient(f"upload failed ({type(exc).__name__})") from None
    if status == 200:
        return
    if status == 429:
        raise SurfaceRateLimited(_seconds(retry_after))
    if status >= 500:
        raise SurfaceTransient(f"upload answered HTTP {status}")
    raise UploadRefused(f"upload answered HTTP {status}")


def _seconds(retry_after: str | None) -> float:
    try:
        return max(0.0, float(retry_after)) if retry_after else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER
