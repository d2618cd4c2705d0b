"""OPENAI_* settings: the OpenAI-compatible endpoint's section."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.settings import SecretList, SettingsSection


class OpenAISettings(SettingsSection):
    """Set OPENAI_API_KEYS to enable the endpoint."""

    model_config = SettingsConfigDict(env_prefix="OPENAI_")

    api_keys: SecretList = Field((), description="comma-separated bearer keys clients must present")
    model_name: str = Field("dify", min_length=1, description="the model id /v1/models lists")
    system_input: str = Field("system_prompt", description="the Dify input that receives a system message")
    max_image_mb: int = Field(20, ge=1, le=100, description="largest image (MB) the bot downloads from a link")
    image_private_hosts: bool = Field(
        False, description="true: image links may point to private, loopback or link-local addresses"
    )
