"""The fake Bot API's button side: answerCallbackQuery (once, in time, ≤ 200 chars) and getChatMember statuses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.telegram_text import ApiError

# Exact descriptions Telegram answers with.
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
ANSWER_TOO_LONG = "Bad Request: MESSAGE_TOO_LONG"
USER_NOT_FOUND = "Bad Request: user not found"
MAX_ANSWER_CHARS = 200
DEFAULT_DEADLINE = 10.0  # seconds (on the fake's clock) a query can be answered in

_ADMIN_RIGHTS = (
    "can_be_edited",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
)


@dataclass(frozen=True)
class CallbackAnswer:
    query_id: str
    text: str
    show_alert: bool
    at: float


class CallbackQueries:
    """Queries handed out (by id, with the time they were pressed) and the one answer each may get."""

    def __init__(self, clock: Callable[[], float], *, deadline: float = DEFAULT_DEADLINE) -> None:
        self._clock = clock
        self.deadline = deadline
        self.pressed: dict[str, float] = {}  # query id → when it was pressed
        self.answers: dict[str, CallbackAnswer] = {}
        self.refused: list[tuple[str, str]] = []  # (query id, description) of refused answers

    def press(self, query_id: str) -> None:
        self.pressed[query_id] = self._clock()

    def answer(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        notice = str(params.get("text") or "")
        try:
            pressed = self.pressed.get(query_id)
            if pressed is None or query_id in self.answers or self._clock() - pressed > self.deadline:
                raise ApiError(400, QUERY_INVALID)
            if len(notice) > MAX_ANSWER_CHARS:
                raise ApiError(400, ANSWER_TOO_LONG)
        except ApiError as error:
            self.refused.append((query_id, error.description))
            raise
        self.answers[query_id] = CallbackAnswer(
            query_id=query_id, text=notice, show_alert=bool(params.get("show_alert")), at=self._clock()
        )
        return True

    def unanswered(self) -> list[str]:
        return [query_id for query_id in self.pressed if query_id not in self.answers]

    def text_of(self, query_id: str) -> str:
        return self.answers[query_id].text


class ChatMembers:
    """getChatMember: `creator` / `administrator` for configured admins, `member` for everyone else."""

    def __init__(self) -> None:
        self.statuses: dict[tuple[int, int], str] = {}

    def make_admin(self, chat_id: int, user_id: int, *, status: str = "administrator") -> None:
        self.statuses[(chat_id, user_id)] = status

    def get(self, chat_id: int, user: dict[str, Any]) -> dict[str, Any]:
        status = self.statuses.get((chat_id, int(user["id"])), "member")
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update({"is_anonymous": False, **dict.fromkeys(_ADMIN_RIGHTS, True)})
        return member
