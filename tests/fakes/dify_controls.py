"""The fake Dify's answer controls: message feedback and suggested questions, as strict as Dify's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.dify_files import DifyApiError, dify_json

_CHAT_MODES = frozenset({"chat", "agent-chat", "advanced-chat", "agent"})
DEFAULT_FOLLOW_UPS = ("How do refunds work?", "What does shipping cost?", "Can I change my order?", "One more?")


@dataclass(frozen=True)
class FeedbackCall:
    message_id: str
    rating: str | None
    user: str


class AnswerControls:
    """POST /messages/{id}/feedbacks and GET /messages/{id}/suggested over the fake's recorded messages.

    `owner(message_id)` names the user a message belongs to (None: no such message)."""

    def __init__(self, *, owner: Callable[[str], str | None], mode: Callable[[], str]) -> None:
        self._owner = owner
        self._mode = mode
        self.openers: list[str] = []  # the app's opening suggested_questions
        self.follow_ups_enabled = False  # suggested_questions_after_answer
        self.follow_ups: list[str] = list(DEFAULT_FOLLOW_UPS)
        self.feedbacks: list[FeedbackCall] = []  # every accepted feedback call, in order
        self.ratings: dict[str, str] = {}  # message id → its current rating
        self.suggested_calls: list[tuple[str, str]] = []  # (message id, user) of accepted calls

    def parameters(self) -> dict[str, Any]:
        return {
            "suggested_questions": list(self.openers),
            "suggested_questions_after_answer": {"enabled": self.follow_ups_enabled},
        }

    def _message(self, message_id: str, user: str) -> None:
        if self._owner(message_id) != user:
            raise DifyApiError(404, "not_found", "Message Not Exists.")

    async def feedback(self, request: web.Request, body: Any) -> web.StreamResponse:
        message_id = request.match_info["message_id"]
        if not isinstance(body, dict):
            raise DifyApiError(400, "bad_request", "Invalid JSON payload received or JSON payload is empty.")
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise DifyApiError(400, "invalid_param", "Arg user must be provided.")
        rating = body.get("rating")
        if rating not in ("like", "dislike", None):
            raise DifyApiError(400, "invalid_param", f"{rating!r} is not a valid choice.")
        self._message(message_id, user)
        if rating is None and message_id not in self.ratings:
            raise DifyApiError(400, "invalid_param", "rating cannot be None when feedback not exists")
        if rating is None:
            del self.ratings[message_id]
        else:
            self.ratings[message_id] = rating
        self.feedbacks.append(FeedbackCall(message_id=message_id, rating=rating, user=user))
        return dify_json({"result": "success"})

    async def suggested(self, request: web.Request) -> web.StreamResponse:
        message_id = request.match_info["message_id"]
        user = request.query.get("user", "")
        if not user:
            raise DifyApiError(400, "invalid_param", "Arg user must be provided.")
        if self._mode() not in _CHAT_MODES:
            raise DifyApiError(400, "not_chat_app", "Please check if your app mode matches the right API route.")
        self._message(message_id, user)
        if not self.follow_ups_enabled:
            raise DifyApiError(400, "bad_request", "Suggested Questions Is Disabled.")
        self.suggested_calls.append((message_id, user))
        return dify_json({"result": "success", "data": list(self.follow_ups)})
