"""Every Telegram handler's filters run on the event loop: aiogram sends plain ones to a worker thread."""

from __future__ import annotations

import threading

from aiogram import F
from aiogram.types import Chat, Message

from bots.telegram.callbacks import build_callback_router
from bots.telegram.filters import on_loop
from bots.telegram.handlers import build_router


def _message(text: str | None) -> Message:
    return Message.model_validate(
        {"message_id": 1, "date": 0, "chat": Chat(id=5, type="private").model_dump(), "text": text}
    )


def test_every_filter_of_every_handler_is_awaited_in_place() -> None:
    context = object()  # the routers only keep it for their handlers
    routers = [build_router(context), build_callback_router(context)]  # type: ignore[arg-type]
    filters = [
        event_filter
        for router in routers
        for observer in router.observers.values()
        for handler in observer.handlers
        for event_filter in handler.filters or ()
    ]
    assert len(filters) >= 9
    assert all(event_filter.awaitable for event_filter in filters)


async def test_a_wrapped_filter_answers_as_the_magic_one_on_the_loop_thread() -> None:
    threads: list[str] = []

    def record(message: Message) -> bool:
        threads.append(threading.current_thread().name)
        return message.text is not None

    command = on_loop(F.text.startswith("/"))
    assert await command(_message("/help"))
    assert not await command(_message("hello"))
    assert not await command(_message(None))
    assert await on_loop(F.text)(_message("hello")) == "hello"
    assert await on_loop(record)(_message("x"))
    assert threads == [threading.current_thread().name]
