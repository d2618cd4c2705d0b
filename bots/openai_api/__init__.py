"""An OpenAI-compatible Chat Completions endpoint in front of the Dify app (imports nothing heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bots.openai_api.routes import OpenAIApi

__all__ = ["OpenAIApi"]


def __getattr__(name: str) -> Any:
    if name == "OpenAIApi":
        from bots.openai_api.routes import OpenAIApi

        return OpenAIApi
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
