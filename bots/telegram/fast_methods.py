"""Light Bot API methods for the hot path: sendMessage, editMessageText and sendChatAction without models.

aiogram's own method objects validate every entity as a pydantic model, serialise them field by field and
parse the whole `Message` Telegram answers with; an answer edits its message every second, so those costs
add up. These methods take the entities (and any inline keyboard) already as JSON and read back only the
message id. They still go through `bot(method)`, so every request middleware (metrics, shared budgets) sees
them as usual; `LeanSession` then encodes their form itself and reads a successful answer without models."""

from __future__ import annotations

import json
from typing import Any, ClassVar, cast

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiohttp import ClientError, ClientTimeout
from pydantic import BaseModel, ConfigDict
from yarl import URL

__all__ = ["NO_PREVIEW_JSON", "ChatAction", "EditText", "LeanSession", "SendText", "SentMessage", "form_body"]

NO_PREVIEW_JSON = json.dumps({"is_disabled": True})
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def form_body(fields: dict[str, Any]) -> bytes:
    """`application/x-www-form-urlencoded` of the truthy fields, as aiogram sends them (falsy ones left out).

    aiohttp encodes forms with urllib, which quotes byte by byte in Python (0.16 ms for a 1,500-character
    edit, on every edit); yarl's query encoder, already under aiohttp, quotes in C (0.03 ms)."""
    return URL.build(query={name: value for name, value in fields.items() if value}).raw_query_string.encode()


class SentMessage(BaseModel):
    """The part of Telegram's `Message` answer the surface uses."""

    model_config = ConfigDict(extra="ignore")

    message_id: int


class _LeanMethod:
    """A method `LeanSession` sends with its own form encoding and answer reading."""

    def form(self) -> bytes:
        return form_body(vars(self))


class SendText(_LeanMethod, TelegramMethod[SentMessage]):
    """sendMessage with the formatting given as entities (JSON); no parse mode."""

    __returning__: ClassVar[type] = SentMessage
    __api_method__: ClassVar[str] = "sendMessage"

    chat_id: int
    text: str
    entities: str | None = None
    message_thread_id: int | None = None
    reply_parameters: str | None = None
    link_preview_options: str | None = None
    reply_markup: str | None = None  # an inline keyboard as JSON


class EditText(_LeanMethod, TelegramMethod[SentMessage | bool]):
    """editMessageText with the formatting given as entities (JSON); no parse mode."""

    __returning__: ClassVar[object] = SentMessage | bool
    __api_method__: ClassVar[str] = "editMessageText"

    chat_id: int
    message_id: int
    text: str
    entities: str | None = None
    link_preview_options: str | None = None
    reply_markup: str | None = None  # an inline keyboard as JSON; none removes the message's keyboard


class ChatAction(_LeanMethod, TelegramMethod[bool]):
    """sendChatAction (the typing indicator every answer starts with)."""

    __returning__: ClassVar[type] = bool
    __api_method__: ClassVar[str] = "sendChatAction"

    chat_id: int
    action: str
    message_thread_id: int | None = None


# aiogram parses every answer as `Response[<the method's result type>]`, and pydantic keeps parametrised
# models only weakly: without a lasting reference each call built the model anew (~2 % of the bot's CPU).
PARSED_RESPONSES = (Response[SentMessage], Response[SentMessage | bool], Response[bool])
# aiogram defers building its method models; these are on every answer's path, so build them now.
SendText.model_rebuild()
EditText.model_rebuild()
ChatAction.model_rebuild()


def _quick_result(status: int, raw: bytes) -> SentMessage | bool | None:
    """The result of a successful answer (a message id, or True); None for anything aiogram must judge."""
    if status != 200:
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        return None
    result = answer.get("result")
    if result is True:
        return True
    if isinstance(result, dict) and type(message_id := result.get("message_id")) is int:
        return SentMessage.model_construct(message_id=message_id)
    return None


class LeanSession(AiohttpSession):
    """aiogram's aiohttp session; the hot methods skip its form building and answer models.

    Errors, and anything unexpected in an answer, still go through aiogram's `check_response`, so the same
    exceptions (retry after, bad request, migrated chat, ...) come out either way."""

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        if not isinstance(method, _LeanMethod):
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(
                url,
                data=method.form(),
                headers=_FORM_HEADERS,
                timeout=ClientTimeout(total=self.timeout if timeout is None else timeout),
            ) as response:
                raw = await response.read()
        except TimeoutError as exc:
            raise TelegramNetworkError(method=method, message="Request timeout error") from exc
        except ClientError as exc:
            raise TelegramNetworkError(method=method, message=f"{type(exc).__name__}: {exc}") from exc
        result = _quick_result(response.status, raw)
        if result is not None:
            return cast(TelegramType, result)
        checked = self.check_response(
            bot=bot, method=method, status_code=response.status, content=raw.decode(errors="replace")
        )
        return cast(TelegramType, checked.result)
