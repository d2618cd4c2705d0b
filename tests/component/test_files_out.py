"""Files the app produces: fetched at once, delivered after the exact answer text; what can't be fetched is noted."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from core.answer import Done, Files, FilesReady, ReplyEvent
from core.answering import AnswerPipeline
from core.conversations import ChatKey, ConversationStore
from core.dify.client import DifyClient
from core.dify.errors import DifyError
from core.dify.parameters import ParametersCache
from core.files.model import FileProblem, ProducedFile
from core.files.produced import ProducedFiles
from core.render.renderer import StreamRenderer
from core.render.throttle import Throttle
from core.service import ChatService
from tests.component.conftest import leftovers
from tests.fakes.dify import Answer, FakeDify, Transcript
from tests.fakes.dify_transcripts import agent_tool_image, chatflow_with_files, workflow_with_files
from tests.fakes.local_server import serve_locally
from tests.unit.test_renderer import MemorySurface

CHAT = ChatKey(platform="telegram", scope="tg:1:100", user="tg-7")
CHART = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


@dataclass
class FileSurface(MemorySurface):
    delivered: list[tuple[str, str, bytes]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    async def attach(self, files: Sequence[ProducedFile]) -> None:
        for file in files:
            data = b"".join([chunk async for chunk in file.chunks()])
            self.delivered.append((file.kind, file.mime, data))
            self.names.append(file.name)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def dify(clock: Clock) -> AsyncIterator[FakeDify]:
    async with FakeDify(mode="agent-chat", clock=clock) as fake:
        yield fake


@pytest.fixture
async def client(dify: FakeDify) -> AsyncIterator[DifyClient]:
    async with DifyClient(base_url=dify.url, api_key=dify.api_key, retry_delays=(0, 0)) as opened:
        yield opened


def pipeline(client: DifyClient, store: ConversationStore, files_url: str = "") -> AnswerPipeline:
    return AnswerPipeline(ChatService(dify=client, store=store, lock_wait=10, files_url=files_url))


async def ask(answers: AnswerPipeline, surface: MemorySurface, text: str = "chart please") -> None:
    await answers.answer(
        chat=CHAT,
        text=text,
        sink=lambda stream: StreamRenderer(surface, throttle=Throttle(0.01), status_delay=0.05),
    )


async def test_an_image_made_by_an_agent_tool_arrives_with_the_same_bytes(
    dify: FakeDify, client: DifyClient, store: ConversationStore, workdir: Path
) -> None:
    url = dify.produce(CHART, name="chart.png")
    assert url.startswith("/files/tools/")  # relative, as self-hosted Dify sends it
    dify.script(Transcript(agent_tool_image(url, ["Here is ", "the chart."])))
    surface = FileSurface()
    await ask(pipeline(client, store), surface)
    assert surface.shown == {1: "Here is the chart."}
    assert surface.delivered == [("image", "image/png", CHART)]
    assert len(dify.files.downloads) == 1
    assert leftovers(workdir) == []  # downloads are removed once delivered


async def test_a_tool_image_repeated_in_the_text_is_sent_once(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    url = dify.produce(CHART, name="chart.png")
    dify.script(Transcript(agent_tool_image(url, ["Chart: ", f"![chart]({url})"])))
    surface = FileSurface()
    await ask(pipeline(client, store), surface)
    assert surface.shown == {1: f"Chart: ![chart]({url})"}
    assert surface.delivered == [("image", "image/png", CHART)]


async def test_an_expired_link_adds_one_line_and_keeps_the_answer(
    dify: FakeDify, client: DifyClient, store: ConversationStore, clock: Clock
) -> None:
    url = dify.produce(CHART, name="chart.png")
    clock.now += 301  # Dify's links live 300 s
    dify.script(Transcript(agent_tool_image(url, ["Here is ", "the chart."])))
    surface = FileSurface()
    await ask(pipeline(client, store), surface)
    note = "⚠️ A file from the answer could not be fetched: "
    assert surface.shown[1].startswith("Here is the chart.\n\n" + note) and surface.shown[1].endswith(".png")
    assert surface.delivered == []


async def test_chatflow_files_are_delivered_once(dify: FakeDify, client: DifyClient, store: ConversationStore) -> None:
    dify.mode = "advanced-chat"
    output = dify.produce_output(CHART, name="report.png")
    dify.script(Transcript(chatflow_with_files("Your report.", [output])))
    surface = FileSurface()
    await ask(pipeline(client, store), surface)
    assert surface.shown == {1: "Your report."}
    assert surface.delivered == [("image", "image/png", CHART)]


async def test_workflow_output_images_in_the_text_are_fetched_once(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    dify.mode = "workflow"
    output = dify.produce_output(
        b"%PDF-1.4 report", name="report.pdf", mime_type="application/pdf", file_type="document"
    )
    dify.script(Transcript(workflow_with_files("Done.", [output])))
    surface = FileSurface()
    await ask(pipeline(client, store), surface)
    assert surface.shown == {1: "Done."}
    assert surface.delivered == [("document", "application/pdf", b"%PDF-1.4 report")]
    assert surface.names == ["report.pdf"]  # Dify's file name, not the link's


async def test_markdown_images_on_the_dify_host_are_sent_as_pictures_and_the_text_stays(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    url = dify.produce(CHART, name="plot.png")
    text = f"See ![plot]({url}) and ![logo](https://elsewhere.example/logo.png). Again: ![plot]({url})"
    dify.script(Answer(text))
    surface = FileSurface()
    await ask(pipeline(client, store), surface)
    assert surface.shown == {1: text}
    assert surface.delivered == [("image", "image/png", CHART)]


async def test_link_only_sinks_keep_the_links_and_fetch_nothing(
    dify: FakeDify, client: DifyClient, store: ConversationStore
) -> None:
    url = dify.produce(CHART, name="chart.png")
    dify.script(Transcript(agent_tool_image(url, ["Here."])))
    surface = MemorySurface()  # no attach: links stay in the text
    await ask(pipeline(client, store), surface)
    assert surface.shown[1].startswith("Here.\n\n[image](/files/tools/")
    assert dify.files.downloads == []


async def test_the_api_key_goes_only_to_the_dify_host(dify: FakeDify, client: DifyClient, tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def image(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=CHART, content_type="image/png")

    app = web.Application()
    app.router.add_get("/img/{name}", image)
    runner, port = await serve_locally(app)
    try:
        files_host = f"http://127.0.0.1:{port}"
        produced = ProducedFiles(client, extra_hosts=(files_host,))

        async def events() -> AsyncIterator[ReplyEvent]:
            yield Files(files=())
            yield Done(answer=f"![a]({files_host}/img/a.png)")

        out = [event async for event in produced.relay(events())]
        ready = out[0]
        assert isinstance(ready, FilesReady) and ready.missing == () and isinstance(out[1], Done)
        assert [f.path.read_bytes() for f in ready.files] == [CHART]
        assert seen == [None]
        produced.close()
        assert not ready.files[0].path.exists()
    finally:
        await runner.cleanup()


async def test_the_relay_adds_nothing_without_files(client: DifyClient) -> None:
    produced = ProducedFiles(client)

    async def events() -> AsyncIterator[ReplyEvent]:
        yield Done(answer="plain ![x](https://elsewhere.example/x.png)")

    assert [event async for event in produced.relay(events())] == [
        Done(answer="plain ![x](https://elsewhere.example/x.png)")
    ]


async def test_parameters_are_cached_and_a_failed_refresh_keeps_the_last(clock: Clock) -> None:
    async with FakeDify(mode="advanced-chat", speech_to_text=True) as fake:
        async with DifyClient(base_url=fake.url, api_key=fake.api_key, retry_delays=()) as client:
            cache = ParametersCache(client, ttl=300, clock=clock)
            first = await cache.get()
            assert first.speech_to_text and (await cache.get()) is first
            fake.files.speech_to_text = False
            clock.now += 301
            second = await cache.get()
            assert not second.speech_to_text
            assert len([r for r in fake.requests if r.path == "/v1/parameters"]) == 2
            await fake.__aexit__(None, None, None)  # Dify goes away
            clock.now += 301
            assert (await cache.get()) is second
            with pytest.raises(DifyError):
                await ParametersCache(client, clock=clock).get()


async def test_fetch_file_enforces_its_cap_and_reports_dead_links_without_them(
    dify: FakeDify, client: DifyClient, tmp_path: Path
) -> None:
    url = client.host_url + dify.produce(CHART, name="chart.png")
    kind, size = await client.fetch_file(url, tmp_path / "ok", max_bytes=len(CHART))
    assert (kind, size) == ("image/png", len(CHART)) and (tmp_path / "ok").read_bytes() == CHART
    with pytest.raises(FileProblem) as caught:
        await client.fetch_file(url, tmp_path / "big", max_bytes=1000)
    assert caught.value.reason == "too_large"
    with pytest.raises(FileProblem) as caught:
        await client.fetch_file(url.split("?", 1)[0], tmp_path / "unsigned", max_bytes=len(CHART))
    assert caught.value.reason == "fetch_failed" and "files/tools" not in str(caught.value)
