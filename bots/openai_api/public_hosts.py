"""A resolver for image links that refuses private, loopback and link-local addresses (no SSRF via the bot)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class PrivateAddress(OSError):
    """The link's host is (or resolves to) an address inside the bot's own network."""


def is_public(address: str) -> bool:
    """False for loopback, private, link-local (cloud metadata), multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops every address that is not public; none left is an error.

    Checking at resolve time (not before the request) also covers redirects and DNS answers that change."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [result for result in results if is_public(result["host"])]
        if not public:
            raise PrivateAddress(f"{host} is not a public address")
        return public

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_literal(host: str | None, *, allow_private: bool) -> None:
    """aiohttp skips the resolver for IP literals: refuse a literal inside the network here."""
    if allow_private or not host:
        return
    try:
        public = is_public(host.strip("[]"))
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not public:
        raise PrivateAddress(f"{host} is not a public address")


def connector_options(*, allow_private: bool) -> dict[str, Any]:
    """Keyword arguments for the image-fetching session's TCPConnector."""
    return {} if allow_private else {"resolver": PublicOnlyResolver()}
