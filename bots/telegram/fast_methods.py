"""Light Bot API methods for the streaming hot path: sendMessage and editMessageText without per-call models.

aiogram's own method objects validate every entity as a pydantic model, serialise them field by field and
parse the whole `Message` Telegram answers with; an answer edits its message every second, so those costs
add up. These methods take the entities (and any inline keyboard) already as JSON and read back only the
message id. They still go through `bot(method)`, so every request middleware (metrics, shared budgets) sees
them as usual."""

from __future__ import annotations

import json
from typing import ClassVar

from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response
from pydantic import BaseModel, ConfigDict

__all__ = ["NO_PREVIEW_JSON", "EditText", "SendText", "SentMessage"]

NO_PREVIEW_JSON = json.dumps({"is_disabled": True})


class SentMessage(BaseModel):
    """The part of Telegram's `Message` answer the surface uses."""

    model_config = ConfigDict(extra="ignore")

    message_id: int


class SendText(TelegramMethod[SentMessage]):
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


class EditText(TelegramMethod[SentMessage | bool]):
    """editMessageText with the formatting given as entities (JSON); no parse mode."""

    __returning__: ClassVar[object] = SentMessage | bool
    __api_method__: ClassVar[str] = "editMessageText"

    chat_id: int
    message_id: int
    text: str
    entities: str | None = None
    link_preview_options: str | None = None
    reply_markup: str | None = None  # an inline keyboard as JSON; none removes the message's keyboard


# aiogram parses every answer as `Response[<the method's result type>]`, and pydantic keeps parametrised
# models only weakly: without a lasting reference each call built the model anew (~2 % of the bot's CPU).
PARSED_RESPONSES = (Response[SentMessage], Response[SentMessage | bool], Response[bool])
# aiogram defers building its method models; these two are on every answer's path, so build them now.
SendText.model_rebuild()
EditText.model_rebuild()
