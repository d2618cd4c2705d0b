"""Dify's file links: relative ones resolved against the Dify host, Markdown images on the Dify host picked out."""

from __future__ import annotations

import re
from collections.abc import Iterable

from yarl import URL

_IMAGE = re.compile(r"!\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def absolute_url(url: str, host_url: str) -> str:
    """`url` as an absolute link; relative ones (`/files/tools/...`) resolve against the host, not `/v1`."""
    if url.startswith(("http://", "https://")):
        return url
    return host_url.rstrip("/") + "/" + url.lstrip("/")


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parsed = URL(url)
    except ValueError:
        return None
    if not parsed.host:
        return None
    return (parsed.scheme, parsed.host.lower(), parsed.port)


def dify_images(text: str, host_url: str, extra_hosts: Iterable[str] = ()) -> list[str]:
    """Absolute URLs of the Markdown images in `text` that are relative or served by Dify (in order, once)."""
    ours = {origin for origin in (_origin(host) for host in (host_url, *extra_hosts)) if origin is not None}
    found: list[str] = []
    for match in _IMAGE.finditer(text):
        url = match.group(1)
        if url.startswith(("http://", "https://")):
            if _origin(url) not in ours:
                continue
        elif not url.startswith("/") or url.startswith("//"):
            continue
        absolute = absolute_url(url, host_url)
        if absolute not in found:
            found.append(absolute)
    return found
