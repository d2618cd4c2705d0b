"""An OpenAI-compatible Chat Completions endpoint in front of the Dify app."""

from bots.openai_api.routes import OpenAIApi

__all__ = ["OpenAIApi"]
