"""Who and where a Telegram message is: is it for the bot, its query text, its conversation key."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import Message, User

from core.conversations import ChatKey

GROUP_TYPES = frozenset({"group", "supergroup"})


@dataclass(frozen=True, slots=True)
class Addressed:
    """A message the bot should answer, with the bot's mention removed."""

    query: str
    by_mention: bool


def topic_of(message: Message) -> int | None:
    """The forum topic a message belongs to (None outside forum topics)."""
    return message.message_thread_id if message.is_topic_message else None


def group_key(chat_id: int, *, bot_id: int, topic: int | None = None) -> ChatKey:
    """A group's conversation (or one forum topic's); the group is the Dify user."""
    scope = f"tg:{bot_id}:{chat_id}" + (f":{topic}" if topic is not None else "")
    return ChatKey(platform="telegram", scope=scope, user=f"tg-chat-{chat_id}")


def chat_key(message: Message, *, bot_id: int) -> ChatKey:
    """Private chats: the person's conversation. Groups: one per chat, or per forum topic."""
    chat = message.chat
    if chat.type in GROUP_TYPES:
        return group_key(chat.id, bot_id=bot_id, topic=topic_of(message))
    return private_key(chat.id, bot_id=bot_id, user_id=message.from_user.id if message.from_user else chat.id)


def private_key(chat_id: int, *, bot_id: int, user_id: int) -> ChatKey:
    """A private chat's conversation; the person is the Dify user."""
    return ChatKey(platform="telegram", scope=f"tg:{bot_id}:{chat_id}", user=f"tg-{user_id}")


def addressed_query(message: Message, *, me: User) -> Addressed | None:
    """The query if the bot should answer this text message, else None (group messages for others)."""
    text = message.text or ""
    if message.chat.type not in GROUP_TYPES:
        return Addressed(query=text.strip(), by_mention=False)
    mentioned = False
    for entity in message.entities or []:
        if entity.type == "mention" and me.username:
            if entity.extract_from(text).lower() == f"@{me.username.lower()}":
                mentioned = True
        elif entity.type == "text_mention" and entity.user is not None and entity.user.id == me.id:
            mentioned = True
    if mentioned:
        return Addressed(query=_strip_mentions(message, me=me), by_mention=True)
    reply = message.reply_to_message
    if reply is not None and reply.from_user is not None and reply.from_user.id == me.id:
        return Addressed(query=text.strip(), by_mention=False)
    return None


def _strip_mentions(message: Message, *, me: User) -> str:
    """Remove every mention of the bot, working in UTF-16 offsets like Telegram does."""
    text = message.text or ""
    encoded = text.encode("utf-16-le")
    cuts: list[tuple[int, int]] = []
    for entity in message.entities or []:
        is_me = (
            entity.type == "mention" and me.username and entity.extract_from(text).lower() == f"@{me.username.lower()}"
        ) or (entity.type == "text_mention" and entity.user is not None and entity.user.id == me.id)
        if is_me:
            cuts.append((entity.offset * 2, (entity.offset + entity.length) * 2))
    for start, end in sorted(cuts, reverse=True):
        encoded = encoded[:start] + encoded[end:]
    return " ".join(encoded.decode("utf-16-le").split())
