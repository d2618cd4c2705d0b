"""REDIS_URL parsing: servers, Sentinel groups and Clusters, defaults, errors that never quote a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.config import load
from core.errors import StartupError
from core.redis_connection import open_redis
from core.redis_urls import (
    ClusterUrl,
    RedisUrlError,
    SentinelUrl,
    ServerUrl,
    describe_url,
    parse_redis_url,
)
from core.settings import SettingsError

SECRET = "s3cr/et+pa@ss"
ENCODED = "s3cr%2Fet%2Bpa%40ss"


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://:pw@redis.example.com:6380/2", "unix:///run/redis.sock?db=1"],
)
def test_a_single_server_is_left_to_redis_py(url: str) -> None:
    assert parse_redis_url(url) == ServerUrl(url)


def test_a_sentinel_url_with_every_part() -> None:
    target = parse_redis_url(
        f"redis+sentinel://:{ENCODED}@s1.example:26380,10.0.0.2,[::1]:26381/my-master/3?sentinel_password=sp%2B1"
    )
    assert target == SentinelUrl(
        sentinels=(("s1.example", 26380), ("10.0.0.2", 26379), ("::1", 26381)),
        service="my-master",
        db=3,
        password=SECRET,
        sentinel_password="sp+1",
    )


def test_sentinel_defaults() -> None:
    target = parse_redis_url("redis+sentinel://sentinel/mymaster")
    assert target == SentinelUrl(sentinels=(("sentinel", 26379),), service="mymaster")
    assert isinstance(target, SentinelUrl)
    assert (target.db, target.password, target.sentinel_password, target.ssl) == (0, None, None, False)


def test_sentinel_user_tls_and_a_literal_plus_in_the_query() -> None:
    target = parse_redis_url("rediss+sentinel://app:pw@h:1/svc/?sentinel_username=s&sentinel_password=a+b")
    assert target == SentinelUrl(
        sentinels=(("h", 1),),
        service="svc",
        username="app",
        password="pw",
        sentinel_username="s",
        sentinel_password="a+b",
        ssl=True,
    )


def test_a_cluster_url() -> None:
    assert parse_redis_url("redis+cluster://n1:7000,n2:7001,n3") == ClusterUrl(
        nodes=(("n1", 7000), ("n2", 7001), ("n3", 6379))
    )
    assert parse_redis_url(f"rediss+cluster://default:{ENCODED}@n1:7000/0") == ClusterUrl(
        nodes=(("n1", 7000),), username="default", password=SECRET, ssl=True
    )
    assert parse_redis_url("REDIS+CLUSTER://n1:7000/") == ClusterUrl(nodes=(("n1", 7000),))


def test_passwords_stay_out_of_repr() -> None:
    target = parse_redis_url(f"redis+sentinel://:{ENCODED}@h/svc?sentinel_password=other-secret")
    assert SECRET not in repr(target) and "other-secret" not in repr(target)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "must start with redis://"),
        ("http://h:1", "must start with redis://"),
        (f"redis+sentinel://:{SECRET}@h:26379", "names no Sentinel service"),
        (f"redis+sentinel://:{SECRET}@h:26379/", "names no Sentinel service"),
        (f"redis+sentinel://:{SECRET}@h:26379/svc/0/extra", "has too many path parts"),
        (f"redis+sentinel://:{SECRET}@h:26379/svc/zero", "has a database index that is not a number"),
        (f"redis+sentinel://:{SECRET}@/svc", "names no host"),
        (f"redis+sentinel://:{SECRET}@h1,,h2/svc", "has an empty host"),
        (f"redis+sentinel://:{SECRET}@h:port/svc", "has a port that is not a number"),
        (f"redis+sentinel://:{SECRET}@h:70000/svc", "has a port that is not a number"),
        (f"redis+sentinel://:{SECRET}@[::1/svc", "has a malformed IPv6 address"),
        (f"redis+sentinel://{SECRET}@h/svc", "has a user but no password"),
        (f"redis+sentinel://:{SECRET}@h/svc?{SECRET}=1", "has an unknown query option"),
        (f"redis+cluster://:{SECRET}@h:7000/1", "a Redis Cluster has only database 0"),
        (f"redis+cluster://:{SECRET}@h:7000?sentinel_password={SECRET}", "has an unknown query option"),
    ],
)
def test_a_malformed_url_names_the_problem_and_the_shape_but_no_secret(url: str, problem: str) -> None:
    with pytest.raises(RedisUrlError) as caught:
        parse_redis_url(url)
    message = str(caught.value)
    assert problem in message
    assert SECRET not in message and "s3cr" not in message
    if url.startswith("redis+sentinel"):
        assert message.endswith(
            "expected redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db][?sentinel_password=…]"
        )
    if url.startswith("redis+cluster"):
        assert message.endswith("expected redis+cluster://[[user]:password@]host:port[,host:port…]")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://host:6379/0"),
        ("redis://user:p@ss@host", "redis://host"),
        ("rediss://host:6380/1?ssl_cert_reqs=none", "rediss://host:6380/1"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock"),
        (
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0?sentinel_password=spw",
            "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        ),
        ("rediss+cluster://default:pw@n1:7000,n2:7001", "rediss+cluster://n1:7000,n2:7001"),
        ("redis://host/0?password=pw&db=1", "redis://host/0"),
        ("redis+sentinel://:p?w@h/svc?sentinel_password=a@b", "redis+sentinel://h/svc"),
        ("redis://", "redis://localhost"),
        ("nonsense", "(not a URL)"),
    ],
)
def test_describe_url_never_shows_a_password(url: str, shown: str) -> None:
    assert describe_url(url) == shown


def test_the_settings_accept_the_new_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    url = "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/0?sentinel_password=spw"
    config = load(env_file=None, dify_api_key="app-x", redis_url=url)
    assert config.core.redis_url == url
    config = load(env_file=None, dify_api_key="app-x", redis_url="redis+cluster://n1:7000")
    assert config.core.redis_url == "redis+cluster://n1:7000"


def test_the_settings_refuse_a_malformed_url_in_one_line_without_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load(env_file=None, dify_api_key="app-x", redis_url=f"redis+sentinel://:{SECRET}@s1:26379")
    message = str(caught.value)
    assert "REDIS_URL is unusable: it names no Sentinel service; expected a redis://" in message
    assert "\n" not in message and SECRET not in message and "s3cr" not in message


async def test_open_redis_refuses_a_malformed_url_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as caught:
        async with open_redis(url=f"redis+cluster://:{ENCODED}@n1:7000/2", data_dir=tmp_path):
            pass
    assert str(caught.value) == (
        "REDIS_URL names a database, but a Redis Cluster has only database 0; "
        "expected redis+cluster://[[user]:password@]host:port[,host:port…]"
    )
