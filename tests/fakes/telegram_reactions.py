"""The fake Bot API's setMessageReaction: the bots' exact emoji list, per-chat restrictions, a record per message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.telegram_text import ApiError

# ReactionTypeEmoji's exact list (Bot API): anything else is REACTION_INVALID.
ALLOWED_EMOJI = frozenset(
    {
        "❤",
        "👍",
        "👎",
        "🔥",
        "🥰",
        "👏",
        "😁",
        "🤔",
        "🤯",
        "😱",
        "🤬",
        "😢",
        "🎉",
        "🤩",
        "🤮",
        "💩",
        "🙏",
        "👌",
        "🕊",
        "🤡",
        "🥱",
        "🥴",
        "😍",
        "🐳",
        "❤\u200d🔥",
        "🌚",
        "🌭",
        "💯",
        "🤣",
        "⚡",
        "🍌",
        "🏆",
        "💔",
        "🤨",
        "😐",
        "🍓",
        "🍾",
        "💋",
        "🖕",
        "😈",
        "😴",
        "😭",
        "🤓",
        "👻",
        "👨\u200d💻",
        "👀",
        "🎃",
        "🙈",
        "😇",
        "😨",
        "🤝",
        "✍",
        "🤗",
        "🫡",
        "🎅",
        "🎄",
        "☃",
        "💅",
        "🤪",
        "🗿",
        "🆒",
        "💘",
        "🙉",
        "🦄",
        "😘",
        "💊",
        "🙊",
        "😎",
        "👾",
        "🤷\u200d♂",
        "🤷",
        "🤷\u200d♀",
        "😡",
    }
)
REACTION_INVALID = "Bad Request: REACTION_INVALID"
MESSAGE_NOT_FOUND = "Bad Request: message to react not found"


@dataclass(slots=True)
class TelegramReactions:
    """Reactions the bot set, by (chat_id, message_id); `history` keeps every change in order."""

    current: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    history: list[tuple[int, int, list[str]]] = field(default_factory=list)
    restricted: set[int] = field(default_factory=set)  # chats whose admins allow no reactions

    def set(self, chat_id: int, message_id: int, raw: Any, *, known: bool) -> bool:
        """Apply one setMessageReaction; raise ApiError as Telegram does."""
        if not known:
            raise ApiError(400, MESSAGE_NOT_FOUND)
        emoji = _emoji_of(raw)
        if emoji and (chat_id in self.restricted or any(item not in ALLOWED_EMOJI for item in emoji)):
            raise ApiError(400, REACTION_INVALID)
        if len(emoji) > 1:
            raise ApiError(400, "Bad Request: REACTIONS_TOO_MANY")
        if emoji:
            self.current[(chat_id, message_id)] = emoji
        else:
            self.current.pop((chat_id, message_id), None)
        self.history.append((chat_id, message_id, emoji))
        return True


def _emoji_of(raw: Any) -> list[str]:
    """The emoji of a `reaction` parameter (absent or empty: none, i.e. remove)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "Bad Request: can't parse reaction types JSON object") from exc
    if not isinstance(raw, list):
        raise ApiError(400, "Bad Request: reaction must be an array")
    emoji: list[str] = []
    for item in raw:
        if not isinstance(item, dict) or item.get("type") != "emoji" or not isinstance(item.get("emoji"), str):
            raise ApiError(400, REACTION_INVALID)
        emoji.append(item["emoji"])
    return emoji
