"""Import aiogram with each Telegram model built on first use rather than all of them at import."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

# Built at once, before the first update: what every answer meets. Built lazily, Message alone takes
# ~0.1 s, and a replica's first answer could then lose its place in the chat's order to a warm replica.
HOT_METHODS = (
    "AnswerCallbackQuery",
    "DeleteMessage",
    "EditMessageReplyMarkup",
    "EditMessageText",
    "GetChatMember",
    "GetFile",
    "GetMe",
    "GetUpdates",
    "SendChatAction",
    "SendDocument",
    "SendMediaGroup",
    "SendMessage",
    "SendPhoto",
    "SetMessageReaction",
)
HOT_TYPES = ("Update", "Message", "InlineKeyboardButton", "BotCommand")
_parsed_responses: list[Any] = []  # pydantic keeps parametrised models only weakly


def load_aiogram() -> None:
    """Import `aiogram.types` and `aiogram.methods`, deferring the build of every model until it is used.

    aiogram's types package rebuilds each of its ~300 pydantic models at import to resolve forward
    references: ~100 MB of validators and ~2.5 s of CPU, when a bot uses a few dozen models. Here each
    model is given the namespace that rebuild would have used, and pydantic builds it on first use.
    Does nothing once aiogram's types are imported; falls back to the plain import if pydantic differs."""
    if "aiogram.types" in sys.modules:
        return
    from pydantic import BaseModel

    rebuild = BaseModel.__dict__.get("model_rebuild")
    if not isinstance(rebuild, classmethod):
        log.debug("pydantic's model_rebuild is not a classmethod; importing aiogram as it is")
        return
    namespace: dict[str, Any] = {}

    def remember_namespace(cls: type[BaseModel], **kwargs: Any) -> bool | None:
        types_namespace = kwargs.get("_types_namespace")
        if types_namespace is None or not cls.__module__.startswith("aiogram."):
            return rebuild.__func__(cls, **kwargs)  # type: ignore[no-any-return]
        namespace.update(types_namespace)
        cls.__pydantic_parent_namespace__ = namespace  # what pydantic resolves names in when it builds later
        return None

    BaseModel.model_rebuild = classmethod(remember_namespace)  # type: ignore[method-assign, assignment, arg-type]
    try:
        import aiogram.methods
        import aiogram.types
    finally:
        BaseModel.model_rebuild = rebuild  # type: ignore[method-assign, assignment]
    for name in aiogram.methods.__all__:
        method = getattr(aiogram.methods, name)
        if isinstance(method, type) and issubclass(method, BaseModel):
            method.__pydantic_parent_namespace__ = {**namespace, **(method.__pydantic_parent_namespace__ or {})}
    _warm_up()


def _warm_up() -> None:
    """Build the models every answer uses now, the rest stays unbuilt until something needs it."""
    import aiogram.methods
    import aiogram.types
    from aiogram.methods.base import Response

    for name in HOT_TYPES:
        getattr(aiogram.types, name).model_rebuild()
    for name in HOT_METHODS:
        method = getattr(aiogram.methods, name)
        method.model_rebuild()
        _parsed_responses.append(Response[method.__returning__])  # type: ignore[name-defined]  # a ClassVar
