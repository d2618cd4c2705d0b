"""Strict fake Telegram Bot API server that the real aiogram Bot talks to over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from aiohttp import web

from tests.fakes.local_server import come_back, go_offline, serve_locally
from tests.fakes.telegram_controls import DEFAULT_DEADLINE, USER_NOT_FOUND, CallbackQueries, ChatMembers
from tests.fakes.telegram_files import FakeFile, FileApiError, TelegramFiles, media_fields, media_group_items
from tests.fakes.telegram_reactions import TelegramReactions
from tests.fakes.telegram_text import CANT_PARSE_PREFIX as CANT_PARSE_PREFIX
from tests.fakes.telegram_text import UNSUPPORTED_PARSE_MODE as UNSUPPORTED_PARSE_MODE
from tests.fakes.telegram_text import ApiError as ApiError
from tests.fakes.telegram_text import _auto_entities
from tests.fakes.telegram_text import render_text as render_text
from tests.fakes.telegram_text import utf16_len as utf16_len

JsonDict = dict[str, Any]
Handler = Callable[[JsonDict], Awaitable[Any]]

MAX_TEXT_UTF16 = 4096
MAX_CAPTION_UTF16 = 1024
MAX_CALLBACK_DATA_BYTES = 64
GROUP_WINDOW_SECONDS = 60.0
_EPSILON = 1e-9

# Exact descriptions Telegram answers with.
UNAUTHORIZED = "Unauthorized"
NOT_FOUND = "Not Found"
TEXT_EMPTY = "Bad Request: message text is empty"
SEND_TOO_LONG = "Bad Request: message is too long"
EDIT_TOO_LONG = "Bad Request: MESSAGE_TOO_LONG"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
DELETE_NOT_FOUND = "Bad Request: message to delete not found"
CANT_BE_EDITED = "Bad Request: message can't be edited"
NO_TEXT_TO_EDIT = "Bad Request: there is no text in the message to edit"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
CHAT_NOT_FOUND = "Bad Request: chat not found"
CHAT_ID_EMPTY = "Bad Request: chat_id is empty"
MESSAGE_ID_MISSING = "Bad Request: message identifier is not specified"
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
BAD_SECRET_TOKEN = "Bad Request: secret token contains unallowed characters"
BAD_CHAT_ACTION = "Bad Request: wrong parameter action in request"
BOT_COMMAND_INVALID = "Bad Request: BOT_COMMAND_INVALID"
BOT_COMMAND_DESCRIPTION_INVALID = "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"
FORBIDDEN_BLOCKED = "Forbidden: bot was blocked by the user"
SERVER_ERROR = "Internal Server Error"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
MIGRATED = "Bad Request: group chat was upgraded to a supergroup chat"
# What nginx in front of the Bot API answers when the API behind it is down.
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)
ANY_METHOD = "*"
CONFLICT_OTHER_POLLER = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)

# Fields whose form value is a JSON document.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "reply_parameters",
        "link_preview_options",
        "commands",
        "scope",
        "media",
    }
)
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "offset",
        "limit",
        "timeout",
        "draft_id",
        "max_connections",
        "from_chat_id",
        "user_id",
        "cache_time",
        "direct_messages_topic_id",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "drop_pending_updates",
        "show_alert",
        "can_stop",
        "keep_on_stop",
        "has_spoiler",
        "allow_paid_broadcast",
        "disable_content_type_detection",
        "show_caption_above_media",
    }
)
# Operations that draw on the per-chat flood allowance.
_COUNTED_METHODS = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
        "sendPhoto",
        "sendDocument",
        "sendMediaGroup",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram leaves out when allowed_updates is empty or was never set.
_NOT_DELIVERED_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_COMMAND_NAME_RE = re.compile(r"[a-z0-9_]{1,32}")
_INT_RE = re.compile(r"-?\d+")

_FIXED_FAULTS: dict[str, tuple[int, str]] = {
    "not_found": (400, EDIT_NOT_FOUND),
    "cant_be_edited": (400, CANT_BE_EDITED),
    "cant_parse": (400, CANT_PARSE_PREFIX + "Can't find end of the entity starting at byte offset 0"),
    "server_error": (500, SERVER_ERROR),
    "forbidden": (403, FORBIDDEN_BLOCKED),
    "thread_not_found": (400, THREAD_NOT_FOUND),
    "chat_not_found": (400, CHAT_NOT_FOUND),
    "bad_gateway": (502, BAD_GATEWAY_HTML),  # answered as an HTML page, not JSON
}


class FakeClock(Protocol):
    def __call__(self) -> float: ...


class ManualClock:
    """A clock for `FakeTelegram(clock=...)` that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ApiCall:
    method: str
    params: JsonDict
    at: float
    status: int = 200
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> int | str | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None


@dataclass
class StoredMessage:
    message_id: int
    chat_id: int
    text: str
    entities: list[JsonDict] = field(default_factory=list)
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    reply_markup: JsonDict | None = None
    edits: int = 0
    history: list[str] = field(default_factory=list)
    deleted: bool = False
    sent_at: float = 0.0
    edited_at: float | None = None
    date: int = 0
    edit_date: int | None = None
    media: str | None = None  # "photo", "document", "video", "audio"; `text` then holds the caption
    media_group_id: str | None = None


@dataclass
class _Fault:
    method: str
    status: int
    description: str
    parameters: JsonDict | None
    chat_id: int | None
    remaining: int

    @property
    def html(self) -> bool:
        return self.description == BAD_GATEWAY_HTML


# --------------------------------------------------------------------------- parameters


def _decode_params(raw: Mapping[str, Any]) -> JsonDict:
    params: JsonDict = {}
    for key, value in raw.items():
        if isinstance(value, web.FileField):
            params[key] = {
                "filename": value.filename,
                "content_type": value.content_type,
                "data": value.file.read(),
            }
        elif isinstance(value, str) and key in _JSON_FIELDS:
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        elif isinstance(value, str) and key in _INT_FIELDS and _INT_RE.fullmatch(value):
            params[key] = int(value)
        elif isinstance(value, str) and key in _BOOL_FIELDS:
            params[key] = value.lower() in {"true", "1"}
        else:
            params[key] = value
    return params


def _resolve_attachments(params: JsonDict) -> JsonDict:
    """Replace multipart `attach://<field>` references with the uploaded file they name."""
    resolved = dict(params)
    for key, value in params.items():
        if isinstance(value, str) and value.startswith("attach://"):
            field_name = value.removeprefix("attach://")
            upload = params.get(field_name)
            if isinstance(upload, dict) and "data" in upload:
                resolved[key] = upload
                resolved.pop(field_name, None)
    return resolved


def _chat_id(params: JsonDict) -> int:
    value = params.get("chat_id")
    if value is None or value == "":
        raise ApiError(400, CHAT_ID_EMPTY)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, CHAT_NOT_FOUND)
    return value


def _optional_int(params: JsonDict, key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"Bad Request: invalid {key} specified")
    return value


def _normalise_markup(markup: Any) -> JsonDict | None:
    """Validate reply_markup; return the inline keyboard a message would show (None if none)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    keyboard = markup.get("inline_keyboard")
    if keyboard is None:
        return None
    if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
        raise ApiError(
            400,
            'Bad Request: can\'t parse inline keyboard button: field "inline_keyboard" must be an Array of Arrays',
        )
    for row in keyboard:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise ApiError(
                    400,
                    'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String',
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                raise ApiError(400, BUTTON_DATA_INVALID)
    return {"inline_keyboard": keyboard} if any(keyboard) else None


def _update_type(update: JsonDict) -> str:
    return next((key for key in update if key != "update_id"), "")


def _retry_after_error(seconds: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})


# --------------------------------------------------------------------------- the server


class FakeTelegram:
    """A strict in-process Telegram Bot API server on 127.0.0.1.

    Use as ``async with FakeTelegram() as fake:`` and point aiogram at it with
    ``AiohttpSession(api=TelegramAPIServer.from_base(fake.url))``.
    """

    def __init__(
        self,
        *,
        token: str = "123456:TEST-TOKEN",
        username: str = "test_bot",
        clock: Callable[[], float] = time.monotonic,
        private_min_interval: float = 1.0,
        group_per_minute: int = 20,
        rate_limits: bool = True,
        retry_after: int = 3,
        callback_deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.token = token
        self.username = username
        self.bot_id = int(token.split(":", 1)[0])
        self.private_min_interval = private_min_interval
        self.group_per_minute = group_per_minute
        self.rate_limits = rate_limits
        self.retry_after = retry_after
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[int, int], StoredMessage] = {}
        self.rate_limited = 0
        self.webhook: JsonDict | None = None
        self.commands: list[JsonDict] = []

        self._clock = clock
        self._url: str | None = None
        self._runner: web.AppRunner | None = None
        self._updates: list[JsonDict] = []
        self._allowed_updates: list[str] | None = None
        self._wakeup = asyncio.Event()
        self._poll_generation = 0
        self._closing = False
        self._update_ids = itertools.count(1)
        self._last_update_id = 0
        self._callback_ids = itertools.count(1)
        self._message_ids: dict[int, int] = {}
        self._user_messages: dict[tuple[int, int], JsonDict] = {}
        self._chats: dict[int, JsonDict] = {}
        self._faults: list[_Fault] = []
        self._last_op: dict[int, float] = {}
        self._window: dict[int, deque[float]] = {}
        self._migrated: dict[int, int] = {}  # old group id → supergroup id
        self._site: web.TCPSite | None = None
        self._port = 0
        self.offline = False
        self.files = TelegramFiles()
        self.reactions = TelegramReactions()
        self.queries = CallbackQueries(clock, deadline=callback_deadline)  # answerCallbackQuery, once each
        self.members = ChatMembers()  # getChatMember statuses (make_admin)
        self._media_groups = itertools.count(1)
        routes: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getMyCommands": self._get_my_commands,
            "sendChatAction": self._send_chat_action,
            "setMessageReaction": self._set_message_reaction,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "getChatMember": self._get_chat_member,
            "sendMessageDraft": self._true,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "deleteMessage": self._delete_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendMediaGroup": self._send_media_group,
            "getFile": self._get_file,
        }
        self._handlers = {name.lower(): (name, handler) for name, handler in routes.items()}

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._closing = False
        self._runner, port = await serve_locally(app, handler_cancellation=True, shutdown_timeout=1.0)
        self._port = port
        self._site = next(iter(self._runner.sites), None)  # type: ignore[assignment]
        self._url = f"http://127.0.0.1:{port}"
        return self

    async def refuse_connections(self) -> None:
        """The Bot API goes away: open connections are dropped and new ones refused until `accept_connections`."""
        assert self._runner is not None
        self.offline = True
        await go_offline(self._runner, self._site)
        self._site = None
        self._wake()

    async def accept_connections(self) -> None:
        """The Bot API is back, on the same port."""
        assert self._runner is not None
        if self._site is None:
            self._site = await come_back(self._runner, self._port)
        self.offline = False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeTelegram is not running; use `async with FakeTelegram() as fake`")
        return self._url

    # ----------------------------------------------------------------- test-side helpers

    def push_update(self, update: dict[str, Any]) -> int:
        if "update_id" not in update:
            update["update_id"] = next(self._update_ids)
        update_id = int(update["update_id"])
        if update_id >= self._last_update_id:
            self._last_update_id = update_id
            self._update_ids = itertools.count(update_id + 1)
        for key in ("message", "edited_message"):
            message = update.get(key)
            if isinstance(message, dict):
                self._remember_user_message(message)
        self._updates.append(update)
        self._updates.sort(key=lambda u: int(u["update_id"]))
        self._wake()
        return update_id

    def message_update(
        self,
        *,
        chat_id: int,
        user_id: int,
        text: str,
        chat_type: str = "private",
        message_thread_id: int | None = None,
        reply_to_bot_message_id: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        language_code: str = "en",
        is_topic_message: bool = False,
    ) -> dict[str, Any]:
        message = self._user_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_thread_id=message_thread_id,
            reply_to_bot_message_id=reply_to_bot_message_id,
            language_code=language_code,
            is_topic_message=is_topic_message,
        )
        message["text"] = text
        found = _auto_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        return self._queue_message(message)

    def media_update(
        self,
        *,
        chat_id: int,
        user_id: int,
        kind: str,
        file: FakeFile,
        caption: str | None = None,
        caption_entities: list[dict[str, Any]] | None = None,
        media_group_id: str | None = None,
        file_name: str | None = None,
        mime_type: str | None = None,
        chat_type: str = "private",
        message_thread_id: int | None = None,
        reply_to_bot_message_id: int | None = None,
        language_code: str = "en",
        is_topic_message: bool = False,
    ) -> dict[str, Any]:
        """Build (does not queue) a message update carrying `file` (from `files.add`) as a photo, document,
        audio, video, voice or video_note, the way Telegram shapes it (a photo comes in three sizes)."""
        message = self._user_message(
            chat_id=chat_id,
            user_id=user_id,
            chat_type=chat_type,
            message_thread_id=message_thread_id,
            reply_to_bot_message_id=reply_to_bot_message_id,
            language_code=language_code,
            is_topic_message=is_topic_message,
        )
        message.update(media_fields(self.files, kind, file, file_name=file_name, mime_type=mime_type))
        if caption:
            message["caption"] = caption
            found = _auto_entities(caption) if caption_entities is None else caption_entities
            if found:
                message["caption_entities"] = found
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        return self._queue_message(message)

    def _user_message(
        self,
        *,
        chat_id: int,
        user_id: int,
        chat_type: str,
        message_thread_id: int | None,
        reply_to_bot_message_id: int | None,
        language_code: str,
        is_topic_message: bool,
    ) -> JsonDict:
        chat = self._chat(chat_id, chat_type, forum=is_topic_message)
        message: JsonDict = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(user_id, language_code),
        }
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
        if is_topic_message:
            message["is_topic_message"] = True
        if reply_to_bot_message_id is not None:
            stored = self.messages.get((chat_id, reply_to_bot_message_id))
            message["reply_to_message"] = (
                self._message_dict(stored, with_reply=False)
                if stored is not None
                else {
                    "message_id": reply_to_bot_message_id,
                    "date": int(time.time()),
                    "chat": chat,
                    "from": self._bot_user(),
                }
            )
        return message

    def _queue_message(self, message: JsonDict) -> JsonDict:
        self._remember_user_message(message)
        update_id = next(self._update_ids)
        self._last_update_id = update_id
        return {"update_id": update_id, "message": message}

    def callback_update(
        self,
        *,
        chat_id: int,
        user_id: int,
        message_id: int,
        data: str,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """Build (does not queue) a callback_query Update for a button on a bot message."""
        stored = self.messages.get((chat_id, message_id))
        message = (
            self._message_dict(stored)
            if stored is not None
            else {"message_id": message_id, "date": 0, "chat": self._chat(chat_id, chat_type)}
        )
        query_id = str(next(self._callback_ids))
        self.queries.press(query_id)
        query = {
            "id": query_id,
            "from": self._user(user_id, "en"),
            "chat_instance": str(chat_id),
            "message": message,
            "data": data,
        }
        update_id = next(self._update_ids)
        self._last_update_id = update_id
        return {"update_id": update_id, "callback_query": query}

    def press_update(
        self, *, chat_id: int, user_id: int, button: str, message_id: int | None = None, queue: bool = False
    ) -> dict[str, Any]:
        """A user presses the button labelled `button` on a bot message (by default the newest one that has
        it): the callback_query Update with that button's callback_data; `queue` also queues it for polling."""
        candidates = [self.messages[(chat_id, message_id)]] if message_id is not None else self.chat_messages(chat_id)
        for stored in reversed(candidates):
            for row in (stored.reply_markup or {}).get("inline_keyboard", []):
                for key in row:
                    if key.get("text") == button and "callback_data" in key:
                        update = self.callback_update(
                            chat_id=chat_id,
                            user_id=user_id,
                            message_id=stored.message_id,
                            data=str(key["callback_data"]),
                            chat_type=str(self._chat(chat_id).get("type", "private")),
                        )
                        if queue:
                            self.push_update(update)
                        return update
        raise LookupError(f"no button {button!r} in chat {chat_id}")

    def buttons(self, chat_id: int, message_id: int) -> list[list[str]]:
        """The labels of a bot message's inline keyboard, row by row (empty: no keyboard)."""
        markup = self.messages[(chat_id, message_id)].reply_markup or {}
        return [[str(key.get("text")) for key in row] for row in markup.get("inline_keyboard", [])]

    def migrate_chat(self, old_chat_id: int, new_chat_id: int, *, announce: bool = True) -> None:
        """Upgrade group `old_chat_id` to supergroup `new_chat_id`: every later call for the old id is refused
        with MIGRATED and `migrate_to_chat_id`; `announce` queues the service messages Telegram sends."""
        self._migrated[old_chat_id] = new_chat_id
        old = {**self._chat(old_chat_id, "group")}
        new = self._chat(new_chat_id, "supergroup")
        if not announce:
            return
        now = int(time.time())
        self.push_update(
            {
                "message": {
                    "message_id": self._next_message_id(old_chat_id),
                    "date": now,
                    "chat": old,
                    "from": self._user(1, "en"),
                    "migrate_to_chat_id": new_chat_id,
                }
            }
        )
        self.push_update(
            {
                "message": {
                    "message_id": self._next_message_id(new_chat_id),
                    "date": now,
                    "chat": new,
                    "from": self._user(1, "en"),
                    "migrate_from_chat_id": old_chat_id,
                }
            }
        )

    def fail_next(self, method: str, fault: str, *, chat_id: int | None = None, count: int = 1) -> None:
        """Answer the next `count` calls of `method` (ANY_METHOD: of every method) with `fault`:
        a name in _FIXED_FAULTS ("bad_gateway" is nginx's HTML 502 page) or "retry_after:N"."""
        parameters: JsonDict | None = None
        if fault.startswith("retry_after:"):
            seconds = int(fault.split(":", 1)[1])
            status, description, parameters = (
                429,
                f"Too Many Requests: retry after {seconds}",
                {"retry_after": seconds},
            )
        elif fault in _FIXED_FAULTS:
            status, description = _FIXED_FAULTS[fault]
        else:
            raise ValueError(f"unknown fault {fault!r}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._faults.append(_Fault(method.lower(), status, description, parameters, chat_id, count))

    def clear_faults(self) -> None:
        """Forget every fault still queued by fail_next."""
        self._faults.clear()

    def chat_messages(self, chat_id: int) -> list[StoredMessage]:
        return [m for m in self.messages.values() if m.chat_id == chat_id and not m.deleted]

    def visible_texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.chat_messages(chat_id)]

    def count(self, method: str, *, chat_id: int | None = None, status: int | None = None) -> int:
        return sum(
            1
            for call in self.calls
            if call.method.lower() == method.lower()
            and (chat_id is None or call.chat_id == chat_id)
            and (status is None or call.status == status)
        )

    def delete_message(self, chat_id: int, message_id: int) -> None:
        self.messages[(chat_id, message_id)].deleted = True

    # ----------------------------------------------------------------- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.Response:
        at = self._clock()
        raw: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict):
                    raw.update(body)
        else:
            raw.update((await request.post()).items())
        params = _resolve_attachments(_decode_params(raw))
        name = request.match_info["method"]
        known = self._handlers.get(name.lower())
        method = known[0] if known else name
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, UNAUTHORIZED)
            if known is None:
                raise ApiError(404, NOT_FOUND)
            fault = self._take_fault(method, params)
            if fault is not None and fault.html:
                self.calls.append(ApiCall(method, params, at, fault.status, error="bad gateway"))
                return web.Response(status=fault.status, text=fault.description, content_type="text/html")
            if fault is not None:
                raise ApiError(fault.status, fault.description, fault.parameters)
            self._check_migrated(params)
            counted_chat = self._counted_chat(method, params)
            if counted_chat is not None:
                self._check_flood(counted_chat, at)
            result = await known[1](params)
            if counted_chat is not None:
                self._note_operation(counted_chat, at)
        except ApiError as error:
            self.calls.append(ApiCall(method, params, at, error.status, error=error.description))
            body_out: JsonDict = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body_out["parameters"] = error.parameters
            return web.json_response(body_out, status=error.status)
        self.calls.append(ApiCall(method, params, at, 200, result=result))
        return web.json_response({"ok": True, "result": result})

    def _take_fault(self, method: str, params: JsonDict) -> _Fault | None:
        chat_id = params.get("chat_id")
        for fault in self._faults:
            if fault.method in {method.lower(), ANY_METHOD} and (fault.chat_id is None or fault.chat_id == chat_id):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _check_migrated(self, params: JsonDict) -> None:
        new_chat_id = self._migrated.get(params["chat_id"]) if isinstance(params.get("chat_id"), int) else None
        if new_chat_id is not None:
            raise ApiError(400, MIGRATED, {"migrate_to_chat_id": new_chat_id})

    def _counted_chat(self, method: str, params: JsonDict) -> int | None:
        if not self.rate_limits or method not in _COUNTED_METHODS:
            return None
        chat_id = params.get("chat_id")
        return chat_id if isinstance(chat_id, int) and not isinstance(chat_id, bool) else None

    def _check_flood(self, chat_id: int, now: float) -> None:
        if chat_id > 0:
            last = self._last_op.get(chat_id)
            limited = last is not None and now - last < self.private_min_interval - _EPSILON
        else:
            window = self._window.get(chat_id, deque())
            while window and window[0] <= now - GROUP_WINDOW_SECONDS + _EPSILON:
                window.popleft()
            limited = len(window) >= self.group_per_minute
        if limited:
            self.rate_limited += 1
            raise _retry_after_error(self.retry_after)

    def _note_operation(self, chat_id: int, now: float) -> None:
        self._last_op[chat_id] = now
        self._window.setdefault(chat_id, deque()).append(now)

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # ----------------------------------------------------------------- objects

    def _bot_user(self) -> JsonDict:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Test", "username": self.username}

    @staticmethod
    def _user(user_id: int, language_code: str) -> JsonDict:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User{user_id}",
            "username": f"user{user_id}",
            "language_code": language_code,
        }

    def _chat(self, chat_id: int, chat_type: str | None = None, *, forum: bool = False) -> JsonDict:
        if chat_type is None and chat_id in self._chats:
            return self._chats[chat_id]
        kind = chat_type or ("private" if chat_id > 0 else "supergroup")
        chat: JsonDict = {"id": chat_id, "type": kind}
        if kind == "private":
            chat["first_name"] = f"User{chat_id}"
        else:
            chat["title"] = f"Group {chat_id}"
        if forum or self._chats.get(chat_id, {}).get("is_forum"):
            chat["is_forum"] = True
        self._chats[chat_id] = chat
        return chat

    def _next_message_id(self, chat_id: int) -> int:
        self._message_ids[chat_id] = self._message_ids.get(chat_id, 0) + 1
        return self._message_ids[chat_id]

    def _remember_user_message(self, message: JsonDict) -> None:
        chat = message.get("chat")
        message_id = message.get("message_id")
        if not isinstance(chat, dict) or not isinstance(message_id, int):
            return
        chat_id = int(chat["id"])
        self._chats.setdefault(chat_id, chat)
        self._message_ids[chat_id] = max(self._message_ids.get(chat_id, 0), message_id)
        self._user_messages[(chat_id, message_id)] = message

    def _message_dict(self, message: StoredMessage, *, with_reply: bool = True) -> JsonDict:
        result: JsonDict = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": self._chat(message.chat_id),
            "from": self._bot_user(),
        }
        if message.media is None:
            result["text"] = message.text
            if message.entities:
                result["entities"] = message.entities
        else:
            file_id = f"{message.media}-{message.chat_id}-{message.message_id}"
            file_info = {"file_id": file_id, "file_unique_id": f"u{file_id}"}
            if message.media == "photo":
                result["photo"] = [{**file_info, "width": 1, "height": 1}]
            elif message.media == "document":
                result["document"] = {**file_info, "file_name": "document"}
            else:
                result[message.media] = {**file_info, "duration": 1, "width": 1, "height": 1}
            if message.media_group_id is not None:
                result["media_group_id"] = message.media_group_id
            if message.text:
                result["caption"] = message.text
            if message.entities:
                result["caption_entities"] = message.entities
        if message.message_thread_id is not None:
            result["message_thread_id"] = message.message_thread_id
            result["is_topic_message"] = True
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.reply_markup is not None:
            result["reply_markup"] = message.reply_markup
        if with_reply and message.reply_to_message_id is not None:
            target = self._reply_target(message.chat_id, message.reply_to_message_id)
            if target is not None:
                result["reply_to_message"] = target
        return result

    def _reply_target(self, chat_id: int, message_id: int) -> JsonDict | None:
        stored = self.messages.get((chat_id, message_id))
        if stored is not None and not stored.deleted:
            return self._message_dict(stored, with_reply=False)
        user_message = self._user_messages.get((chat_id, message_id))
        if user_message is not None:
            return {key: value for key, value in user_message.items() if key != "reply_to_message"}
        return None

    # ----------------------------------------------------------------- methods

    async def _true(self, params: JsonDict) -> bool:
        return True

    async def _get_me(self, params: JsonDict) -> JsonDict:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, params: JsonDict) -> list[JsonDict]:
        if self.webhook is not None:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = _optional_int(params, "offset")
        limit = min(max(_optional_int(params, "limit") or 100, 1), 100)
        timeout = max(float(_optional_int(params, "timeout") or 0), 0.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # an older poll still waiting is terminated with 409
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, CONFLICT_OTHER_POLLER)
            if self.webhook is not None:
                raise ApiError(409, CONFLICT_WEBHOOK)
            batch = self._pending_updates(offset, limit)
            remaining = deadline - loop.time()
            if batch or self._closing or remaining <= 0:
                return batch
            wakeup = self._wakeup
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), remaining)

    def _pending_updates(self, offset: int | None, limit: int) -> list[JsonDict]:
        if offset is not None and offset < 0:
            self._updates = self._updates[offset:]
        elif offset is not None:
            self._updates = [u for u in self._updates if int(u["update_id"]) >= offset]
        allowed = self._allowed_updates
        self._updates = [
            u
            for u in self._updates
            if (_update_type(u) in allowed if allowed else _update_type(u) not in _NOT_DELIVERED_BY_DEFAULT)
        ]
        return self._updates[:limit]

    async def _set_webhook(self, params: JsonDict) -> bool:
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN_RE.fullmatch(str(secret)):
            raise ApiError(400, BAD_SECRET_TOKEN)
        if params.get("drop_pending_updates"):
            self._updates.clear()
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None
        url = params.get("url")
        self.webhook = dict(params) if url else None
        self._wake()
        return True

    async def _delete_webhook(self, params: JsonDict) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook = None
        return True

    async def _get_webhook_info(self, params: JsonDict) -> JsonDict:
        info: JsonDict = {
            "url": str(self.webhook.get("url", "")) if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook and self._allowed_updates:
            info["allowed_updates"] = self._allowed_updates
        return info

    async def _set_my_commands(self, params: JsonDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict) or not _COMMAND_NAME_RE.fullmatch(str(command.get("command", ""))):
                raise ApiError(400, BOT_COMMAND_INVALID)
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, BOT_COMMAND_DESCRIPTION_INVALID)
        self.commands = list(commands)
        return True

    async def _delete_my_commands(self, params: JsonDict) -> bool:
        self.commands = []
        return True

    async def _get_my_commands(self, params: JsonDict) -> list[JsonDict]:
        return list(self.commands)

    async def _send_chat_action(self, params: JsonDict) -> bool:
        _chat_id(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise ApiError(400, BAD_CHAT_ACTION)
        return True

    async def _set_message_reaction(self, params: JsonDict) -> bool:
        chat_id = _chat_id(params)
        message_id = _optional_int(params, "message_id")
        known = message_id is not None and (chat_id, message_id) in self._user_messages
        return self.reactions.set(chat_id, message_id or 0, params.get("reaction"), known=known)

    def _reply_to(self, params: JsonDict) -> int | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and isinstance(reply.get("message_id"), int):
            return int(reply["message_id"])
        return _optional_int(params, "reply_to_message_id")

    def _store_new(
        self,
        params: JsonDict,
        text: str,
        entities: list[JsonDict],
        *,
        media: str | None = None,
        media_group_id: str | None = None,
    ) -> JsonDict:
        chat_id = _chat_id(params)
        thread_id = _optional_int(params, "message_thread_id")
        markup = _normalise_markup(params.get("reply_markup"))
        message = StoredMessage(
            message_id=self._next_message_id(chat_id),
            chat_id=chat_id,
            text=text,
            entities=entities,
            reply_to_message_id=self._reply_to(params),
            message_thread_id=thread_id,
            reply_markup=markup,
            history=[text],
            sent_at=self._clock(),
            date=int(time.time()),
            media=media,
            media_group_id=media_group_id,
        )
        self.messages[(chat_id, message.message_id)] = message
        return self._message_dict(message)

    def _check_thread(self, params: JsonDict) -> None:
        if _optional_int(params, "message_thread_id") == 1:
            raise ApiError(400, THREAD_NOT_FOUND)

    async def _send_message(self, params: JsonDict) -> JsonDict:
        _chat_id(params)
        self._check_thread(params)
        text, entities = render_text(
            str(params.get("text") or ""),
            entities=params.get("entities"),
            parse_mode=params.get("parse_mode"),
        )
        if not text:
            raise ApiError(400, TEXT_EMPTY)
        if utf16_len(text) > MAX_TEXT_UTF16:
            raise ApiError(400, SEND_TOO_LONG)
        return self._store_new(params, text, entities)

    def _caption(self, params: JsonDict) -> tuple[str, list[JsonDict]]:
        caption, entities = render_text(
            str(params.get("caption") or ""),
            entities=params.get("caption_entities"),
            parse_mode=params.get("parse_mode"),
        )
        if utf16_len(caption) > MAX_CAPTION_UTF16:
            raise ApiError(400, CAPTION_TOO_LONG)
        return caption, entities

    async def _send_media(self, params: JsonDict, kind: str) -> JsonDict:
        _chat_id(params)
        self._check_thread(params)
        if not params.get(kind):
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        caption, entities = self._caption(params)
        try:
            upload = self.files.check_upload(kind, params[kind])
        except FileApiError as exc:
            raise ApiError(exc.status, exc.description) from exc
        message = self._store_new(params, caption, entities, media=kind)
        self.files.record(f"send{kind.capitalize()}", kind, upload, message, params)
        return message

    async def _send_photo(self, params: JsonDict) -> JsonDict:
        return await self._send_media(params, "photo")

    async def _send_document(self, params: JsonDict) -> JsonDict:
        return await self._send_media(params, "document")

    async def _send_media_group(self, params: JsonDict) -> list[JsonDict]:
        _chat_id(params)
        self._check_thread(params)
        try:
            items = media_group_items(params)
            uploads = [self.files.check_upload(kind, upload) for kind, _, upload in items]
        except FileApiError as exc:
            raise ApiError(exc.status, exc.description) from exc
        captions = [self._caption(item) for _, item, _ in items]
        group_id = f"1{next(self._media_groups):017d}"
        plain = {key: value for key, value in params.items() if key != "reply_markup"}  # albums carry no keyboard
        sent: list[JsonDict] = []
        for (kind, _, _), upload, (caption, entities) in zip(items, uploads, captions, strict=True):
            message = self._store_new(plain, caption, entities, media=kind, media_group_id=group_id)
            self.files.record("sendMediaGroup", kind, upload, message, params)
            sent.append(message)
        return sent

    async def _get_file(self, params: JsonDict) -> JsonDict:
        try:
            return self.files.get_file(params)
        except FileApiError as exc:
            raise ApiError(exc.status, exc.description) from exc

    async def _download(self, request: web.Request) -> web.StreamResponse:
        return await self.files.download(request, token=self.token)

    def _editable(self, params: JsonDict) -> StoredMessage:
        """The bot message an edit names, or the error Telegram gives for it."""
        chat_id = _chat_id(params)
        message_id = _optional_int(params, "message_id")
        if message_id is None:
            raise ApiError(400, MESSAGE_ID_MISSING)
        stored = self.messages.get((chat_id, message_id))
        if stored is None or stored.deleted:
            if (chat_id, message_id) in self._user_messages:
                raise ApiError(400, CANT_BE_EDITED)
            raise ApiError(400, EDIT_NOT_FOUND)
        return stored

    async def _edit_message_text(self, params: JsonDict) -> JsonDict:
        stored = self._editable(params)
        if stored.media is not None:
            raise ApiError(400, NO_TEXT_TO_EDIT)
        text, entities = render_text(
            str(params.get("text") or ""),
            entities=params.get("entities"),
            parse_mode=params.get("parse_mode"),
        )
        if not text:
            raise ApiError(400, TEXT_EMPTY)
        if utf16_len(text) > MAX_TEXT_UTF16:
            raise ApiError(400, EDIT_TOO_LONG)
        markup = _normalise_markup(params.get("reply_markup"))
        if text == stored.text and entities == stored.entities and markup == stored.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        stored.text = text
        stored.entities = entities
        stored.reply_markup = markup
        stored.edits += 1
        stored.history.append(text)
        stored.edited_at = self._clock()
        stored.edit_date = int(time.time())
        return self._message_dict(stored)

    async def _edit_message_reply_markup(self, params: JsonDict) -> JsonDict:
        stored = self._editable(params)
        markup = _normalise_markup(params.get("reply_markup"))
        if markup == stored.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        stored.reply_markup = markup
        stored.edited_at = self._clock()
        stored.edit_date = int(time.time())
        return self._message_dict(stored)

    async def _answer_callback_query(self, params: JsonDict) -> bool:
        return self.queries.answer(params)

    async def _get_chat_member(self, params: JsonDict) -> JsonDict:
        chat_id = _chat_id(params)
        user_id = _optional_int(params, "user_id")
        if user_id is None:
            raise ApiError(400, USER_NOT_FOUND)
        return self.members.get(chat_id, self._user(user_id, "en"))

    async def _delete_message(self, params: JsonDict) -> bool:
        chat_id = _chat_id(params)
        message_id = _optional_int(params, "message_id")
        if message_id is None:
            raise ApiError(400, MESSAGE_ID_MISSING)
        stored = self.messages.get((chat_id, message_id))
        if stored is not None and not stored.deleted:
            stored.deleted = True
            return True
        if self._user_messages.pop((chat_id, message_id), None) is not None:
            return True
        raise ApiError(400, DELETE_NOT_FOUND)
