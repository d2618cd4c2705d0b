"""REDIS_URL: one server (redis://, rediss://, unix://), a Sentinel group or a Cluster, and a password-free form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme → TLS
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_PORT = 26379
REDIS_PORT = 6379
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")

SENTINEL_SHAPE = "redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db][?sentinel_password=…]"
CLUSTER_SHAPE = "redis+cluster://[[user]:password@]host:port[,host:port…]"

Address = tuple[str, int]
_QUERY_SECRET = re.compile(r"[?&](?:sentinel_)?(?:password|username)=[^&#]*")


class RedisUrlError(ValueError):
    """A REDIS_URL that cannot be used; the message never contains any part of the URL."""

    def __init__(self, problem: str, shape: str | None = None) -> None:
        self.problem = problem
        super().__init__(problem if shape is None else f"{problem}; expected {shape}")


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """One Redis server, in a form redis-py parses itself."""

    url: str


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A master found through Sentinels. `password` is the master's; the Sentinels' comes from the query."""

    sentinels: tuple[Address, ...]
    service: str
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    ssl: bool = False


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A Redis Cluster reached through any of its nodes (the client discovers the others)."""

    nodes: tuple[Address, ...]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ssl: bool = False


RedisTarget = ServerUrl | SentinelUrl | ClusterUrl


def parse_redis_url(url: str) -> RedisTarget:
    """What REDIS_URL points at; RedisUrlError (naming the expected shape, never the URL) when malformed."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep:
        raise RedisUrlError(_unknown_scheme())
    if scheme in PLAIN_SCHEMES:
        return ServerUrl(url.strip())
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(rest, ssl=SENTINEL_SCHEMES[scheme])
    if scheme in CLUSTER_SCHEMES:
        return _cluster(rest, ssl=CLUSTER_SCHEMES[scheme])
    raise RedisUrlError(_unknown_scheme())


def describe_url(url: str) -> str:
    """The URL without user, password or query (which may hold a Sentinel password), for messages."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return "(not a URL)"
    # A password in the query may hold an '@' and one before it a '?': drop query passwords first.
    rest = _QUERY_SECRET.sub("", rest).rpartition("@")[2]
    rest = rest.partition("?")[0].partition("&")[0].partition("#")[0]
    if scheme.lower() == "unix":
        return f"unix://{rest}"
    return f"{scheme.lower()}://{rest or 'localhost'}"


def _unknown_scheme() -> str:
    return (
        "must start with redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, "
        "redis+cluster:// or rediss+cluster://"
    )


def _sentinel(rest: str, *, ssl: bool) -> SentinelUrl:
    username, password, hosts, path, query = _split(rest, SENTINEL_SHAPE)
    sentinels = _addresses(hosts, SENTINEL_PORT, SENTINEL_SHAPE)
    pieces = [unquote(piece) for piece in path.split("/") if piece]
    if not pieces:
        raise RedisUrlError("names no Sentinel service", SENTINEL_SHAPE)
    if len(pieces) > 2:
        raise RedisUrlError("has too many path parts", SENTINEL_SHAPE)
    db = _db(pieces[1], SENTINEL_SHAPE) if len(pieces) == 2 else 0
    options = _query(query, SENTINEL_OPTIONS, SENTINEL_SHAPE)
    return SentinelUrl(
        sentinels=sentinels,
        service=pieces[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        ssl=ssl,
    )


def _cluster(rest: str, *, ssl: bool) -> ClusterUrl:
    username, password, hosts, path, query = _split(rest, CLUSTER_SHAPE)
    nodes = _addresses(hosts, REDIS_PORT, CLUSTER_SHAPE)
    if path.strip("/") not in ("", "0"):
        raise RedisUrlError("names a database, but a Redis Cluster has only database 0", CLUSTER_SHAPE)
    _query(query, (), CLUSTER_SHAPE)
    return ClusterUrl(nodes=nodes, username=username, password=password, ssl=ssl)


def _split(rest: str, shape: str) -> tuple[str | None, str | None, str, str, str]:
    """(user, password, hosts, path, query) of what follows `scheme://`.

    The credentials end at the last '@' before the query, so a password may hold '/', '@' or '+' as they are
    (a '?' or '#' in it must be percent-encoded, as in any URL)."""
    body, _, query = rest.partition("#")[0].partition("?")
    userinfo, at, location = body.rpartition("@")
    hosts, _, path = location.partition("/")
    if not at:
        return None, None, hosts, path, query
    user, colon, password = userinfo.partition(":")
    if not colon:
        raise RedisUrlError("has a user but no password (write user:password@ or :password@)", shape)
    return (unquote(user) or None), (unquote(password) or None), hosts, path, query


def _addresses(hosts: str, default_port: int, shape: str) -> tuple[Address, ...]:
    if not hosts.strip():
        raise RedisUrlError("names no host", shape)
    addresses = []
    for item in hosts.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, bracket, tail = item[1:].partition("]")
            if not bracket or (tail and not tail.startswith(":")):
                raise RedisUrlError("has a malformed IPv6 address", shape)
            port_text = tail[1:]
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise RedisUrlError("has an empty host in its host list", shape)
        addresses.append((host, _port(port_text, default_port, shape)))
    return tuple(addresses)


def _port(text: str, default: int, shape: str) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise RedisUrlError("has a port that is not a number from 1 to 65535", shape)
    return int(text)


def _db(text: str, shape: str) -> int:
    if not text.isdigit():
        raise RedisUrlError("has a database index that is not a number", shape)
    return int(text)


def _query(query: str, allowed: tuple[str, ...], shape: str) -> dict[str, str]:
    # Split by hand: parse_qsl would turn a '+' in a password into a space.
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        if unquote(name) not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise RedisUrlError(f"has an unknown query option (known: {known})", shape)
        options[unquote(name)] = unquote(value)
    return options
