"""OpenAIApi: the /v1 routes, their bearer-key check, and how a request becomes one answer of the pipeline."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from bots.openai_api.errors import ApiError, from_bot_error, invalid_api_key, invalid_request, shutting_down
from bots.openai_api.images import DEFAULT_MAX_BYTES, MB, image_attachments, images_refused
from bots.openai_api.payloads import Completion
from bots.openai_api.public_hosts import connector_options
from bots.openai_api.relay import AnswerRelay, ChunkRelay, CompletionRelay
from bots.openai_api.schema import Prompt, parse_request, prompt_of
from core.answering import AnswerPipeline
from core.conversations import ChatKey
from core.dify.client import WORKFLOW_MODE, caller_retries
from core.dify.errors import DifyError
from core.errors import BotError
from core.files.model import IncomingFile
from core.service import ReplyStream

log = logging.getLogger(__name__)

PLATFORM = "openai"
CONVERSATION_HEADER = "X-Conversation-Id"
MAX_CONVERSATION_ID = 200  # "openai-" + id stays within Dify's 255-character user field

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chat_key(conversation: str) -> ChatKey:
    return ChatKey(platform=PLATFORM, scope=f"{PLATFORM}:{conversation}", user=f"{PLATFORM}-{conversation}")


def _checked_id(value: str, param: str) -> str:
    if len(value) > MAX_CONVERSATION_ID:
        raise invalid_request(f"'{param}' is longer than {MAX_CONVERSATION_ID} characters.", param=param)
    return value


class OpenAIApi:
    """`POST /v1/chat/completions`, `GET /v1/models` and `DELETE /v1/conversations/{user}` over the pipeline."""

    def __init__(
        self,
        *,
        pipeline: AnswerPipeline,
        keys: Sequence[str],
        model: str = "dify",
        system_input: str = "system_prompt",
        system_prefix: bool = False,
        clock: Callable[[], float] = time.time,
        max_image_bytes: int = DEFAULT_MAX_BYTES,
        private_image_hosts: bool = False,
    ) -> None:
        self._pipeline = pipeline
        self._service = pipeline.service
        self._keys = tuple(key.encode() for key in keys if key)  # an empty key would accept "Bearer "
        self._model = model
        self._system_input = system_input
        self._system_prefix = system_prefix
        self._clock = clock
        self._max_image_bytes = max_image_bytes
        self._http: aiohttp.ClientSession | None = None  # downloads image links; never carries a key
        self._private_image_hosts = private_image_hosts
        self._accepting = True

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def stop_intake(self) -> None:
        """New completions get 503 (shutdown); answers in flight go on."""
        self._accepting = False

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._guard(self._chat_completions))
        app.router.add_get("/v1/models", self._guard(self._models))
        app.router.add_get("/v1/models/{model:.+}", self._guard(self._model_info))
        app.router.add_delete("/v1/conversations/{user}", self._guard(self._delete_conversation))

    # ---- plumbing ---------------------------------------------------------------------------------

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                self._authorize(request)
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return guarded

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "").strip()
        if not header:
            raise invalid_api_key(
                "You didn't provide an API key. Send it in an Authorization header using Bearer auth "
                "(Authorization: Bearer YOUR_KEY)."
            )
        scheme, _, token = header.partition(" ")
        presented = token.strip().encode("utf-8", "surrogateescape")
        matched = False
        for key in self._keys:  # every key is compared, so the time taken says nothing about which matched
            matched |= secrets.compare_digest(presented, key)
        if scheme.lower() != "bearer" or not presented or not matched:
            raise invalid_api_key("Incorrect API key provided.")

    def _model_object(self) -> dict[str, Any]:
        return {"id": self._model, "object": "model", "created": 0, "owned_by": "dify-bots"}

    # ---- routes -----------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [self._model_object()]})

    async def _model_info(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        if name != self._model:
            raise ApiError(404, f"The model '{name[:100]}' does not exist.", code="model_not_found", retry=False)
        return web.json_response(self._model_object())

    async def _delete_conversation(self, request: web.Request) -> web.StreamResponse:
        conversation = _checked_id(request.match_info["user"], "user")
        try:
            deleted = await self._service.reset(chat_key(conversation))
        except BotError as exc:
            raise from_bot_error(exc) from None
        return web.json_response({"id": conversation, "object": "conversation.deleted", "deleted": deleted})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        if not self._accepting:
            raise shutting_down()
        try:
            # Room for images sent inline as base64 data URLs (4/3 of their size), beyond the server's default.
            raw = await request.clone(client_max_size=2 * self._max_image_bytes + MB).read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "The request body is too large.", retry=False) from None
        body = parse_request(raw)
        prompt = prompt_of(body)
        header = request.headers.get(CONVERSATION_HEADER, "").strip()
        conversation = (
            _checked_id(header, CONVERSATION_HEADER) if header else _checked_id((body.user or "").strip(), "user")
        )
        one_off = not conversation
        if one_off:
            conversation = f"once-{secrets.token_hex(8)}"
        chat = chat_key(conversation)
        meta = Completion.new(created=self._clock(), model=body.model or self._model)
        try:
            query, inputs = await self._query_and_inputs(prompt, chat, new=one_off)
            attachments = await self._attachments(prompt)
            hold_back = bool(body.stream) and await self._is_workflow()
            relays: list[AnswerRelay] = []

            def sink(stream: ReplyStream) -> AnswerRelay:
                relay = (ChunkRelay if body.stream else CompletionRelay)(request, stream, meta)
                relay.hold_back = hold_back
                relay.host_url = self._service.dify.host_url
                relays.append(relay)
                return relay

            with caller_retries():  # OpenAI clients retry 429s themselves, after Retry-After
                await self._pipeline.answer(chat=chat, text=query, sink=sink, inputs=inputs, attachments=attachments)
            return relays[0].response()
        finally:
            if one_off:
                await self._forget(chat)

    # ---- helpers ----------------------------------------------------------------------------------

    async def _query_and_inputs(self, prompt: Prompt, chat: ChatKey, *, new: bool) -> tuple[str, dict[str, Any]]:
        inputs: dict[str, Any] = {}
        query = prompt.query
        if not prompt.system:
            return query, inputs
        if self._system_input:
            inputs[self._system_input] = prompt.system
        if self._system_prefix:
            try:
                new = new or await self._service.store.get(chat) is None
            except BotError as exc:
                raise from_bot_error(exc) from None
            if new:
                query = f"{prompt.system}\n\n{query}"
        return query, inputs

    async def _attachments(self, prompt: Prompt) -> list[IncomingFile]:
        """The prompt's images as files for Dify, when the app takes images; otherwise a 400 that says so."""
        if not prompt.images:
            return []
        try:
            rules = (await self._service.parameters.get()).files
        except BotError as exc:
            raise from_bot_error(exc) from None
        if not (rules.enabled and "image" in rules.allowed_types):
            raise images_refused(prompt.param)
        return image_attachments(
            prompt.images,
            param=prompt.param,
            session=self._session,
            max_bytes=self._max_image_bytes,
            allow_private=self._private_image_hosts,
        )

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            connector = aiohttp.TCPConnector(**connector_options(allow_private=self._private_image_hosts))
            self._http = aiohttp.ClientSession(connector=connector)
        return self._http

    async def _is_workflow(self) -> bool:
        """Whether the app is a workflow, whose streamed text is only a preview (a failure shows in the answer)."""
        try:
            return await self._service.dify.app_mode() == WORKFLOW_MODE
        except DifyError:
            return False

    async def _forget(self, chat: ChatKey) -> None:
        try:
            await self._service.reset(chat)
        except BotError as exc:
            log.warning("could not drop the one-off conversation %s: %r", chat.scope, exc)
