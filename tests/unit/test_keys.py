"""RedisKeys spells exactly the keys existing deployments already hold."""

from __future__ import annotations

from redis.asyncio import Redis

from bots.slack.addressing import SlackMessage, channel_generation_name, thread_flag_name
from core.conversations import ChatKey, ConversationStore
from core.keys import RedisKeys

KEYS = RedisKeys(prefix="difybots", app="0123abcdef45")
CHAT = ChatKey(platform="slack", scope="slack:T1:C1:g0:1700000000.000100", user="slack-T1-U1")


def test_conversation_key() -> None:
    assert KEYS.conversation(CHAT) == "difybots:conv:0123abcdef45:slack:slack:T1:C1:g0:1700000000.000100"


def test_lock_key() -> None:
    assert KEYS.lock(CHAT) == "difybots:lock:0123abcdef45:slack:slack:T1:C1:g0:1700000000.000100"


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
