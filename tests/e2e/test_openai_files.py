"""Images through the OpenAI-compatible API with the official client: image parts in, file links out."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web

from core.conversations import ConversationStore
from core.files.intake import DEFAULT_QUESTION
from core.files.model import FileProblem
from core.texts import friendly_error
from tests.e2e.openai_harness import Api, running_api, stream_text
from tests.fakes.dify import Answer, FakeDify, FileUpload, Transcript
from tests.fakes.dify_transcripts import agent_tool_image, chatflow_with_files
from tests.fakes.local_server import serve_locally

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
MB = 1024 * 1024


@dataclass
class ImageHost:
    """A web server holding the caller's pictures; records what the bot sent it."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    auth_headers: list[str | None] = field(default_factory=list)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.auth_headers.append(request.headers.get("Authorization"))
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=data, content_type="image/png")


@pytest.fixture
async def host() -> AsyncIterator[ImageHost]:
    images = ImageHost()
    app = web.Application()
    app.router.add_get("/pics/{name}", images.serve)
    runner, port = await serve_locally(app, shutdown_timeout=1.0)
    images.url = f"http://127.0.0.1:{port}/pics"
    try:
        yield images
    finally:
        await runner.cleanup()


def image_app(**config: Any) -> FakeDify:
    return FakeDify(mode="chat", file_upload=FileUpload(enabled=True, **config))


async def opened(store: ConversationStore, dify: FakeDify, **options: Any) -> AsyncIterator[Api]:
    async with running_api(store, dify=dify, **options) as api:
        try:
            yield api
        finally:
            await api.api.close()


@pytest.fixture
async def api(store: ConversationStore) -> AsyncIterator[Api]:
    # The picture host of these tests is on 127.0.0.1, which the bot refuses by default (see below).
    app = image_app(allowed_file_types=["image"])
    async for running in opened(store, app, max_image_bytes=MB, private_image_hosts=True):
        yield running


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def ask(text: str | None, *urls: str) -> list[Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text is not None else []
    parts += [{"type": "image_url", "image_url": {"url": url, "detail": "low"}} for url in urls]
    return [{"role": "user", "content": parts}]


# --- images in ---------------------------------------------------------------------------------------


async def test_a_data_url_image_is_uploaded_for_the_conversation_user(api: Api) -> None:
    async with api.client() as client:
        completion = await client.chat.completions.create(
            model="dify", messages=ask("What is in it?", data_url(PNG)), user="alice"
        )
    assert completion.choices[0].message.content == "echo: What is in it?"
    [request] = api.dify.chat_requests()
    assert request["query"] == "What is in it?"
    [[image]] = api.dify.received_files
    assert (image.type, image.transfer_method, image.data) == ("image", "local_file", PNG)
    assert image.file is not None and image.file.user == request["user"] == "openai-alice"
    assert "data:" not in str(request)


async def test_an_image_link_is_downloaded_by_the_bot_not_by_dify(api: Api, host: ImageHost) -> None:
    host.files["cat.png"] = PNG
    link = f"{host.url}/cat.png?token=secret"
    async with api.client() as client:
        text, _ = await stream_text(client, messages=ask("Describe", link))
    assert text == "echo: Describe"
    [[image]] = api.dify.received_files
    assert (image.name, image.data) == ("cat.png", PNG)
    assert host.auth_headers == [None]  # neither key goes to the picture's host
    assert all(link not in str(r.json) and "secret" not in str(r.json) for r in api.dify.requests)


async def test_an_image_without_text_gets_the_default_question(api: Api) -> None:
    async with api.client() as client:
        completion = await client.chat.completions.create(model="dify", messages=ask(None, data_url(PNG)))
    assert completion.choices[0].message.content == f"echo: {DEFAULT_QUESTION}"
    assert len(api.dify.received_files) == 1


async def test_images_are_refused_when_the_app_takes_none(store: ConversationStore) -> None:
    async for api in opened(store, image_app(allowed_file_types=["document"])):
        async with api.client() as client:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="dify", messages=ask("What is it?", data_url(PNG)))
        error = caught.value
        assert error.code == "image_not_supported" and error.param == "messages[0].content"
        assert "does not accept images" in error.message
        assert api.dify.chat_requests() == [] and api.dify.uploads == {}


async def test_images_are_refused_when_file_upload_is_off(store: ConversationStore) -> None:
    async for api in opened(store, FakeDify()):
        async with api.client() as client:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="dify", messages=ask("hi", data_url(PNG)), stream=True)
        assert caught.value.code == "image_not_supported"
        assert api.dify.chat_requests() == []


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png,rawbytes",
        "data:image/png;base64,not base64!",
        "data:text/plain;base64,aGk=",
        "ftp://example.com/cat.png",
    ],
    ids=["not-base64-url", "bad-base64", "not-image", "ftp"],
)
async def test_unusable_image_urls_are_400(api: Api, url: str) -> None:
    async with api.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="dify", messages=ask("look", url))
    assert caught.value.param == "messages[0].content"
    assert api.dify.chat_requests() == [] and api.dify.uploads == {}


async def test_a_dead_image_link_is_a_clear_400(api: Api, host: ImageHost) -> None:
    async with api.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="dify", messages=ask("look", f"{host.url}/gone.png"))
    assert caught.value.code == "fetch_failed"
    assert caught.value.body == {
        "message": friendly_error(FileProblem("fetch_failed")),
        "type": "invalid_request_error",
        "param": None,
        "code": "fetch_failed",
    }
    assert host.url not in caught.value.message
    assert api.dify.chat_requests() == [] and api.dify.uploads == {}


@pytest.mark.parametrize("where", ["127.0.0.1", "localhost", "169.254.169.254", "[::1]", "10.0.0.7"])
async def test_image_links_into_the_bots_own_network_are_refused(
    store: ConversationStore, host: ImageHost, where: str
) -> None:
    """By default a client cannot make the bot fetch from loopback, private or cloud-metadata addresses."""
    host.files["cat.png"] = PNG
    port = host.url.split(":")[2].split("/")[0]
    link = f"http://{where}:{port}/pics/cat.png"
    async for api in opened(store, image_app(allowed_file_types=["image"])):
        async with api.client() as client:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="dify", messages=ask("look", link))
        assert caught.value.code == "fetch_failed"
        assert host.auth_headers == []  # nothing reached the picture host
        assert api.dify.chat_requests() == [] and api.dify.uploads == {}


async def test_an_image_over_the_cap_is_not_sent(api: Api, host: ImageHost) -> None:
    host.files["huge.png"] = PNG + bytes(2 * MB)
    async with api.client() as client:
        for url in (f"{host.url}/huge.png", data_url(PNG + bytes(2 * MB))):
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="dify", messages=ask("look", url))
            assert caught.value.code == "too_large" and "1 MB" in caught.value.message
    assert api.dify.chat_requests() == [] and api.dify.uploads == {}


async def test_too_many_images_are_refused(store: ConversationStore) -> None:
    async for api in opened(store, image_app(allowed_file_types=["image"], number_limits=2)):
        async with api.client() as client:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="dify", messages=ask("three", *[data_url(PNG)] * 3))
        assert caught.value.code == "too_many" and "2" in caught.value.message
        assert api.dify.chat_requests() == [] and api.dify.uploads == {}


# --- files out -----------------------------------------------------------------------------------------


async def test_a_tool_image_comes_back_as_an_absolute_markdown_image(store: ConversationStore) -> None:
    async for api in opened(store, FakeDify(mode="agent-chat")):
        url = api.dify.produce(PNG, name="chart.png")
        builder = agent_tool_image(url, ["Here is", " the chart."])
        api.dify.script(Transcript(builder), Transcript(builder))
        expected = f"Here is the chart.\n\n![image]({api.dify.host_url}{url})"
        async with api.client() as client:
            completion = await client.chat.completions.create(model="dify", messages=ask("chart"))
            streamed, _ = await stream_text(client, messages=ask("chart"))
        assert completion.choices[0].message.content == expected
        assert streamed == expected


async def test_relative_markdown_images_get_an_absolute_copy(api: Api) -> None:
    url = api.dify.produce(PNG, name="chart.png")
    answer = f"Look: ![chart]({url})"
    api.dify.script(Answer(answer))
    async with api.client() as client:
        streamed, _ = await stream_text(client, messages=ask("chart"))
    assert streamed == f"{answer}\n\n![image]({api.dify.host_url}{url})"


async def test_produced_documents_are_plain_links_and_not_repeated(store: ConversationStore) -> None:
    async for api in opened(store, FakeDify(mode="advanced-chat")):
        report = api.dify.produce_output(
            b"%PDF-1.7", name="report.pdf", mime_type="application/pdf", file_type="document"
        )
        api.dify.script(Transcript(chatflow_with_files("Your report is ready.", [report])))
        async with api.client() as client:
            completion = await client.chat.completions.create(model="dify", messages=ask("report"))
        content = completion.choices[0].message.content or ""
        assert content.startswith("Your report is ready.\n\n")
        assert content == f"Your report is ready.\n\n[document]({report['url']})"


async def test_a_body_over_the_image_allowance_is_413(api: Api) -> None:
    url = data_url(bytes(4 * MB))  # the allowance is 2 x 1 MB + 1 MB of request body
    async with api.client() as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="dify", messages=ask("look", url))
    assert caught.value.status_code == 413 and "too large" in caught.value.message
    assert api.dify.chat_requests() == []
