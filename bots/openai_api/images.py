"""Image parts of a completion request as attachments: data: URLs decoded, web links downloaded with a cap."""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import unquote, urlsplit

import aiohttp
from yarl import URL

from bots.openai_api.errors import ApiError, invalid_request
from bots.openai_api.public_hosts import PrivateAddress, check_literal
from core.files.model import CHUNK, FileFetchFailed, FileProblem, IncomingFile

MB = 1024 * 1024
DEFAULT_MAX_BYTES = 20 * MB
MAX_REDIRECTS = 5
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SPACE = re.compile(r"\s+")
_DECODE_STEP = (CHUNK // 3) * 4  # base64 characters per decoded chunk (a multiple of 4)

Session = Callable[[], Awaitable[aiohttp.ClientSession]]


def _name(index: int, mime: str) -> str:
    """`image-1.png`; without a known image type the name has no extension and the bytes decide."""
    extension = (mimetypes.guess_extension(mime) or "") if mime.startswith("image/") else ""
    return f"image-{index}{extension}"


def data_url_image(url: str, index: int, *, param: str, max_bytes: int) -> IncomingFile:
    """`data:image/...;base64,...`: checked now, decoded chunk by chunk when the pipeline reads it."""
    head, comma, payload = url.partition(",")
    if not comma or not head.lower().endswith(";base64"):
        raise invalid_request("Image data URLs must be base64 encoded (data:image/png;base64,...).", param=param)
    mime = head[len("data:") :].split(";", 1)[0].strip().lower()
    if mime and not mime.startswith("image/"):
        raise invalid_request(f"The data URL holds {mime[:60]}, not an image.", param=param)
    if _SPACE.search(payload):
        payload = _SPACE.sub("", payload)
    if len(payload) % 4 or not _BASE64.fullmatch(payload):
        raise invalid_request("The image data URL is not valid base64.", param=param)
    size = len(payload) // 4 * 3 - payload[-2:].count("=")
    if size == 0:
        raise invalid_request("The image data URL is empty.", param=param)

    async def fetch() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), _DECODE_STEP):
            yield base64.b64decode(payload[start : start + _DECODE_STEP])

    return IncomingFile(name=_name(index, mime), mime=mime, size=size, fetch=fetch, platform_limit=max_bytes)


async def _open(client: aiohttp.ClientSession, url: str, *, allow_private: bool) -> aiohttp.ClientResponse:
    """GET `url`, following up to MAX_REDIRECTS redirects by hand so that every hop's host is checked."""
    for _ in range(MAX_REDIRECTS + 1):
        check_literal(URL(url).host, allow_private=allow_private)
        response = await client.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False)
        location = response.headers.get("Location")
        if response.status not in (301, 302, 303, 307, 308) or not location:
            return response
        response.release()
        url = str(URL(url).join(URL(location)))
    raise FileFetchFailed("image link redirected too often")


def web_image(url: str, index: int, *, session: Session, max_bytes: int, allow_private: bool = False) -> IncomingFile:
    """An http(s) image link, downloaded by the bot (never passed to Dify), at most `max_bytes`; links into the
    bot's own network (loopback, private, link-local) are refused unless `allow_private`."""
    path = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = path if "." in path and len(path) <= 100 else _name(index, mimetypes.guess_type(path)[0] or "image/png")

    async def fetch() -> AsyncIterator[bytes]:
        client = await session()
        try:
            async with await _open(client, url, allow_private=allow_private) as response:
                if response.status != 200:
                    raise FileFetchFailed(f"image link answered HTTP {response.status}")
                received = 0
                async for block in response.content.iter_chunked(CHUNK):
                    received += len(block)
                    if received > max_bytes:
                        raise FileProblem("too_large", "image link over the cap", limit_mb=str(max(1, max_bytes // MB)))
                    yield block
        except (aiohttp.ClientError, TimeoutError, ValueError, PrivateAddress) as exc:
            raise FileFetchFailed(f"image link failed: {type(exc).__name__}") from None

    return IncomingFile(name=name, mime="", size=None, fetch=fetch, platform_limit=max_bytes)


def image_attachments(
    urls: Sequence[str],
    *,
    param: str,
    session: Session,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private: bool = False,
) -> list[IncomingFile]:
    """The attachments for a request's image parts; a URL that is neither a data URL nor a web link is a 400."""
    files: list[IncomingFile] = []
    for index, url in enumerate(urls, start=1):
        scheme = urlsplit(url).scheme.lower() if ":" in url else ""
        if scheme == "data":
            files.append(data_url_image(url, index, param=param, max_bytes=max_bytes))
        elif scheme in ("http", "https"):
            files.append(web_image(url, index, session=session, max_bytes=max_bytes, allow_private=allow_private))
        else:
            raise invalid_request("Image URLs must be https:// links or base64 data: URLs.", param=param)
    return files


def images_refused(param: str) -> ApiError:
    return ApiError(
        400,
        "This assistant does not accept images (image upload is off in its Dify app). "
        "Please send your question as text.",
        code="image_not_supported",
        param=param,
        retry=False,
    )
