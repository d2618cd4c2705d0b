"""The root of every error a reply can end with; Dify's own tree lives in core.dify.errors."""

from __future__ import annotations


class BotError(Exception):
    """A failure that ends an answer. `message` is for logs, never for users."""

    retryable: bool = False

    def __init__(self, message: str = "", *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class StoreUnavailable(BotError):
    """Redis could not be reached or answered with an error."""


class ConversationBusy(BotError):
    """The previous answer in this chat did not finish within the wait limit."""


class Interrupted(BotError):
    """The bot is shutting down and stopped this answer."""


class Stopped(BotError):
    """Someone pressed Stop (or sent /stop): the answer ends with the text so far and a short note."""


class StartupError(BotError):
    """Something the bot needs at start-up is unusable; `message` is one sentence for the person running it."""


class AnswerTimedOut(BotError):
    """The answer hit a time limit; its Dify task was stopped and the text so far is kept."""


class AnswerIdle(AnswerTimedOut):
    """Dify sent nothing but pings for longer than the idle limit."""


class AnswerTooLong(AnswerTimedOut):
    """The answer ran longer than the total limit."""
