"""Request models for /v1/chat/completions, and the prompt taken from a request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bots.openai_api.errors import ApiError, invalid_request

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    """One part of a content array; parts other than `text` and `image_url` are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(BaseModel):
    """The fields this endpoint uses; sampling parameters and the like are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    """What Dify gets: the last user message, its images (files for Dify), and the system message."""

    query: str
    system: str
    images: tuple[str, ...]
    param: str = "messages"  # where the last user message is, for errors about it


_FIELDS = frozenset({*ChatCompletionRequest.model_fields, *ChatMessage.model_fields, *ContentPart.model_fields})


def _param(loc: tuple[int | str, ...]) -> str:
    """`messages[1].content` from a pydantic location, skipping union branch tags."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif item in _FIELDS:
            out += f".{item}" if out else item
    return out


def parse_request(raw: bytes) -> ChatCompletionRequest:
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object.")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> ApiError:
    error = max(exc.errors(), key=lambda item: len(item["loc"]))  # the deepest says the most
    param = _param(error["loc"])
    if error["type"] == "missing":
        return invalid_request(f"Missing required parameter: '{param}'.", param=param)
    if error["type"] == "literal_error" and isinstance(error["input"], str):
        return invalid_request(f"Invalid value '{error['input'][:80]}' for '{param}': {error['msg']}.", param=param)
    if param == "messages" and error["type"] == "too_short":
        return invalid_request("'messages' must contain at least one message.", param=param)
    return invalid_request(f"Invalid '{param}': {error['msg']}.", param=param)


def _texts_and_images(content: str | list[ContentPart] | None) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif part.type == "image_url" and part.image_url is not None:
            url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
            images.append(url)
    return "\n".join(texts), images


def prompt_of(request: ChatCompletionRequest) -> Prompt:
    """The query is the last user message; system and developer messages together are the system prompt."""
    last_user = None
    for index, message in enumerate(request.messages):
        if message.role == "user":
            last_user = index
    if last_user is None:
        raise invalid_request("'messages' must include a message with role 'user'.", param="messages")
    param = f"messages[{last_user}].content"
    query, images = _texts_and_images(request.messages[last_user].content)
    if not query.strip() and not images:
        raise invalid_request("The last user message has no text.", param=param)
    systems = [
        _texts_and_images(message.content)[0] for message in request.messages if message.role in ("system", "developer")
    ]
    system = "\n\n".join(text for text in systems if text.strip())
    return Prompt(query=query, system=system, images=tuple(images), param=param)
