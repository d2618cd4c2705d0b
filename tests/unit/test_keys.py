"""RedisKeys spells exactly the keys existing deployments already hold, one conversation's script keys in one slot."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bots.slack.addressing import SlackMessage, channel_generation_name, thread_flag_name
from core.conversations import ChatKey, ConversationStore
from core.keys import RedisKeys, hash_source

KEYS = RedisKeys(prefix="difybots", app="0123abcdef45")
CHAT = ChatKey(platform="slack", scope="slack:T1:C1:g0:1700000000.000100", user="slack-T1-U1")


def test_conversation_key() -> None:
    assert KEYS.conversation(CHAT) == "difybots:conv:0123abcdef45:slack:slack:T1:C1:g0:1700000000.000100"


def test_lock_queue_and_alive_keys_wrap_the_conversation_key() -> None:
    conversation = "difybots:conv:0123abcdef45:slack:slack:T1:C1:g0:1700000000.000100"
    assert KEYS.lock(CHAT) == "{" + conversation + "}:lock"
    assert KEYS.queue(CHAT) == "{" + conversation + "}:queue"
    assert KEYS.queue_alive(CHAT) == "{" + conversation + "}:alive"


def test_hash_source_follows_the_cluster_spec() -> None:
    assert hash_source("{user1000}.following") == "user1000"
    assert hash_source("foo{}{bar}") == "foo{}{bar}"  # an empty tag: the whole key
    assert hash_source("foo{{bar}}zap") == "{bar"
    assert hash_source("foo{bar}{zap}") == "bar"
    assert hash_source("no-tag}here") == "no-tag}here"


@pytest.mark.parametrize(
    "scope",
    [
        "tg:1:42",
        "slack:T1:C1:g0:1.2",
        "openai:team{a}",
        "openai:odd}one",
        "openai:open{ended",
        "openai:{}x",
        "openai:{",
    ],
)
def test_one_conversations_script_keys_share_a_slot(scope: str) -> None:
    chat = ChatKey(platform="openai", scope=scope, user="u")
    family = {key_slot(key.encode()) for key in (KEYS.lock(chat), KEYS.queue(chat), KEYS.queue_alive(chat))}
    assert len(family) == 1
    if hash_source(KEYS.conversation(chat)) != KEYS.conversation(chat) or "}" not in KEYS.conversation(chat):
        assert family == {key_slot(KEYS.conversation(chat).encode())}


def test_conversations_with_braces_keep_keys_of_their_own() -> None:
    scopes = ["openai:a{x}", "openai:b{x}", "openai:c}", "openai:d}", "openai:e{", "openai:f{"]
    chats = [ChatKey(platform="openai", scope=scope, user="u") for scope in scopes]
    for kind in (KEYS.conversation, KEYS.lock, KEYS.queue, KEYS.queue_alive):
        assert len({kind(chat) for chat in chats}) == len(chats)
    # A scope that extends another one's never lands on that one's keys.
    tagged, longer = (ChatKey(platform="openai", scope=scope, user="u") for scope in ("x{a}", "x{a}:lock"))
    mine = {KEYS.conversation(tagged), KEYS.lock(tagged), KEYS.queue(tagged), KEYS.queue_alive(tagged)}
    theirs = {KEYS.conversation(longer), KEYS.lock(longer), KEYS.queue(longer), KEYS.queue_alive(longer)}
    assert mine.isdisjoint(theirs)
    other_app = RedisKeys(prefix="difybots", app="other")
    assert {other_app.lock(chat) for chat in chats}.isdisjoint({KEYS.lock(chat) for chat in chats})


def test_delivery_key_is_shared_by_apps() -> None:
    assert KEYS.delivery("telegram", "42:1001") == "difybots:seen:telegram:42:1001"
    assert RedisKeys(prefix="difybots", app="other").delivery("telegram", "42:1001") == KEYS.delivery(
        "telegram", "42:1001"
    )


def test_generation_key() -> None:
    assert KEYS.generation("slack:T1:C1") == "difybots:gen:0123abcdef45:slack:T1:C1"


def test_flag_key() -> None:
    assert KEYS.flag("slack-dm-thread:T1:D1:1.2") == "difybots:flag:0123abcdef45:slack-dm-thread:T1:D1:1.2"


def test_part_joins_pieces_like_keys() -> None:
    assert RedisKeys.part("slack", "T1", "C1") == "slack:T1:C1"
    assert RedisKeys.part(7, 1001) == "7:1001"


def test_prefix_and_app_are_the_builders_own() -> None:
    keys = RedisKeys(prefix="acme", app="app2")
    assert keys.conversation(CHAT).startswith("acme:conv:app2:")
    assert keys.generation("x") == "acme:gen:app2:x"


def test_store_uses_the_builder() -> None:
    # Never connects: building keys must not touch Redis.
    store = ConversationStore(Redis(), app="0123abcdef45", ttl=60, prefix="difybots")
    assert store.keys.conversation(CHAT) == KEYS.conversation(CHAT)
    assert store.key(CHAT) == KEYS.conversation(CHAT)
    assert store.keys.lock(CHAT) == KEYS.lock(CHAT)


def test_slack_names_keep_their_keys() -> None:
    dm = SlackMessage(team="T1", channel="D1", user="U1", text="hi", ts="1.3", thread_ts="1.2", is_dm=True)
    assert KEYS.generation(channel_generation_name("T1", "C1")) == "difybots:gen:0123abcdef45:slack:T1:C1"
    assert KEYS.flag(thread_flag_name(dm)) == "difybots:flag:0123abcdef45:slack-dm-thread:T1:D1:1.2"
