"""Files users share with the bot: Slack file objects become IncomingFiles, downloaded with the bot token."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.errors import NETWORK_ERRORS, describe
from core.files.model import CHUNK, Fetch, FileFetchFailed, IncomingFile
from core.render.throttle import TokenBucket

__all__ = ["FILE_FIELDS", "SLACK_FILE_DOMAINS", "file_fields", "incoming_files", "token_may_go_to"]

log = logging.getLogger(__name__)

# What the bot keeps of a file object (also stored with a journaled answer, to take the files again).
FILE_FIELDS = (
    "id",
    "name",
    "title",
    "mimetype",
    "filetype",
    "size",
    "mode",
    "subtype",
    "file_access",
    "url_private",
    "url_private_download",
)
# Hosts that may see the bot token besides the Web API's own: Slack's file hosts.
SLACK_FILE_DOMAINS = ("slack.com", "slack-gov.com")
# Files Slack does not host (an external service's link, a deleted or hidden file): nothing to download.
NOT_HOSTED = frozenset({"external", "tombstone", "hidden_by_limit"})
VOICE_SUBTYPES = frozenset({"slack_audio"})
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)


def file_fields(files: Any) -> list[dict[str, Any]]:
    """The file objects of an event's `files`, reduced to FILE_FIELDS (malformed entries dropped)."""
    if not isinstance(files, list):
        return []
    kept: list[dict[str, Any]] = []
    for item in files:
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
            kept.append({name: item[name] for name in FILE_FIELDS if item.get(name) is not None})
    return kept


def token_may_go_to(url: str, api_base: str) -> bool:
    """Whether a download from `url` may carry the bot token: Slack's file hosts or the Web API's host."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return False
    if host == (urllib.parse.urlsplit(api_base).hostname or "").lower():
        return True
    return parts.scheme == "https" and any(host == d or host.endswith("." + d) for d in SLACK_FILE_DOMAINS)


async def incoming_files(
    client: AsyncWebClient, files: Sequence[dict[str, Any]], *, budget: TokenBucket | None = None
) -> list[IncomingFile]:
    """One IncomingFile per shared file; Slack Connect stubs are looked up with files.info first."""
    taken: list[IncomingFile] = []
    for obj in files:
        if obj.get("file_access") == "check_file_info":
            obj = await _file_info(client, obj, budget=budget)
        taken.append(_incoming(client, obj))
    return taken


async def _file_info(client: AsyncWebClient, stub: dict[str, Any], *, budget: TokenBucket | None) -> dict[str, Any]:
    """The full object of a Slack Connect stub; the stub itself (which then cannot be fetched) on failure."""
    if budget is not None:
        await budget.take()
    try:
        response = await client.files_info(file=str(stub["id"]))
    except (SlackApiError, *NETWORK_ERRORS) as exc:
        log.warning("slack: files.info for a shared file failed: %s", describe(exc))
        return stub
    full = response.get("file")
    return (file_fields([full]) or [stub])[0]


def _incoming(client: AsyncWebClient, obj: dict[str, Any]) -> IncomingFile:
    name = str(obj.get("name") or obj.get("title") or obj.get("id") or "file")
    mime = str(obj.get("mimetype") or "")
    size = obj.get("size")
    declared = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    url = str(obj.get("url_private_download") or obj.get("url_private") or "")
    problem = _why_not_downloadable(obj, url, client.base_url)
    fetch = _refusal(problem) if problem else _download(url, str(client.token or ""), declared)
    return IncomingFile(
        name=name,
        mime=mime,
        size=declared,
        fetch=fetch,
        voice=obj.get("subtype") in VOICE_SUBTYPES,
    )


def _why_not_downloadable(obj: dict[str, Any], url: str, api_base: str) -> str | None:
    if obj.get("file_access") == "check_file_info":
        return "Slack did not describe the shared file (files.info failed)"
    if obj.get("mode") in NOT_HOSTED:
        return f"the file is not hosted by Slack (mode {obj.get('mode')})"
    if not url:
        return "the file has no download URL"
    if not token_may_go_to(url, api_base):
        return "the file's download URL is not on a Slack host"
    return None


def _refusal(reason: str) -> Fetch:
    async def chunks() -> AsyncIterator[bytes]:
        raise FileFetchFailed(reason)
        yield b""  # pragma: no cover - makes this an async generator

    return chunks


def _download(url: str, token: str, declared: int | None) -> Fetch:
    """GET the file with `Authorization: Bearer <bot token>`, in CHUNK pieces. Errors name no URL or token."""

    async def chunks() -> AsyncIterator[bytes]:
        received = 0
        try:
            async with (
                aiohttp.ClientSession(timeout=DOWNLOAD_TIMEOUT) as session,
                session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
            ):
                if response.status != 200:
                    raise FileFetchFailed(f"Slack answered the download with HTTP {response.status}")
                if response.content_type == "text/html":
                    # Slack's answer to a missing token or scope is a sign-in page, not an error status.
                    raise FileFetchFailed("Slack served a sign-in page instead of the file (files:read scope?)")
                async for block in response.content.iter_chunked(CHUNK):
                    received += len(block)
                    if declared is not None and received > declared:
                        raise FileFetchFailed(f"the download is larger than the {declared} bytes Slack declared")
                    yield block
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp's errors carry the request (URL and headers): keep only their type.
            raise FileFetchFailed(f"the download failed ({type(exc).__name__})") from None
        if declared is not None and received != declared:
            raise FileFetchFailed(f"the download ended after {received} of {declared} bytes")

    return chunks
