"""Feedback presses: 👍/👎 toggle an answer's rating in Dify, with the user and rating kept in Redis."""

from __future__ import annotations

import json
import logging

from core.controls.model import Rating
from core.conversations import ConversationStore, guard_store
from core.dify.client import DifyClient

log = logging.getLogger(__name__)

FEEDBACK_TTL = 30 * 24 * 3600  # seconds an answer can still be rated from the chat


class FeedbackBook:
    """Remembers, per Dify message, the user Dify knows it by and the rating chosen in the chat."""

    def __init__(self, store: ConversationStore, dify: DifyClient, *, ttl: int = FEEDBACK_TTL) -> None:
        self._redis = store.redis
        self._keys = store.keys
        self._dify = dify
        self._ttl = ttl

    async def remember(self, message_id: str, user: str) -> None:
        """Record whose answer `message_id` is (Dify refuses feedback under any other user)."""
        value = json.dumps({"user": user, "rating": None})
        await guard_store(self._redis.set(self._keys.feedback(message_id), value, ex=self._ttl, nx=True))

    async def press(self, message_id: str, pressed: Rating, *, fallback_user: str) -> Rating | None:
        """Apply a press: the pressed rating, or none when it was already chosen; returns the new rating.
        Raises DifyError (not stored) or StoreUnavailable."""
        key = self._keys.feedback(message_id)
        raw = await guard_store(self._redis.get(key))
        state = _decode(raw)
        user = state.get("user") or fallback_user
        current = state.get("rating")
        rating: Rating | None = None if current == pressed else pressed
        # Dify refuses to clear a rating it does not have, so None goes out only when one was set here.
        await self._dify.feedback(message_id=message_id, rating=rating, user=user)
        await guard_store(self._redis.set(key, json.dumps({"user": user, "rating": rating}), ex=self._ttl))
        return rating


def _decode(raw: str | bytes | None) -> dict[str, str | None]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    user, rating = value.get("user"), value.get("rating")
    return {
        "user": user if isinstance(user, str) else None,
        "rating": rating if rating in ("like", "dislike") else None,
    }
