"""What the chat shows for files: the voice transcript above the answer, missing-file lines, files after the text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.answer import Done, Failed, FilesReady, Heard, ReplyEvent, TextDelta
from core.files.model import FileProblem, ProducedFile
from core.render.surface import SurfaceError, SurfaceRateLimited, SurfaceTransient
from core.texts import friendly_error
from tests.unit.test_renderer import MemorySurface, renderer, script


@dataclass
class FileSurface(MemorySurface):
    attach_faults: list[Exception] = field(default_factory=list)
    attached: list[tuple[str, ...]] = field(default_factory=list)
    attach_calls: int = 0

    async def attach(self, files: Sequence[ProducedFile]) -> None:
        self.attach_calls += 1
        if self.attach_faults:
            raise self.attach_faults.pop(0)
        self.attached.append(tuple(f.path.read_text() for f in files))


def produced(tmp_path: Path, name: str = "chart.png") -> ProducedFile:
    path = tmp_path / name
    path.write_text(f"bytes of {name}")
    return ProducedFile(name=name, mime="image/png", size=path.stat().st_size, path=path, kind="image", url="u")


async def test_heard_voice_is_the_first_line_of_every_frame() -> None:
    surface = MemorySurface()
    events: list[ReplyEvent | float] = [
        Heard("what time is it"),
        0.15,
        TextDelta("It is"),
        0.12,
        TextDelta(" noon."),
        Done("It is noon."),
    ]
    await renderer(surface).render(script(events))
    assert surface.ops[-1].text == "🎤 what time is it\n\nIt is noon."
    assert all(op.text.startswith("🎤 what time is it") for op in surface.ops)


async def test_files_arrive_after_the_final_frame_with_missing_ones_noted(tmp_path: Path) -> None:
    surface = FileSurface()
    ready = FilesReady(files=(produced(tmp_path),), missing=("old.png",))
    stats = await renderer(surface).render(script([TextDelta("Here it is."), ready, Done("Here it is.")]))
    assert surface.shown[1] == "Here it is.\n\n⚠️ A file from the answer could not be fetched: old.png"
    assert surface.attached == [("bytes of chart.png",)] and stats.outcome == "done"


async def test_attach_retries_through_rate_limits_and_outages(tmp_path: Path) -> None:
    surface = FileSurface(attach_faults=[SurfaceRateLimited(0.05), SurfaceTransient("502")])
    await renderer(surface).render(script([FilesReady(files=(produced(tmp_path),)), Done("")]))
    assert surface.attach_calls == 3 and surface.attached == [("bytes of chart.png",)]


async def test_a_refused_file_does_not_fail_the_answer(tmp_path: Path) -> None:
    surface = FileSurface(attach_faults=[SurfaceError("file_type_not_allowed")])
    stats = await renderer(surface).render(
        script([TextDelta("ok"), FilesReady(files=(produced(tmp_path),)), Done("ok")])
    )
    assert surface.attach_calls == 1 and stats.outcome == "done" and surface.shown[1] == "ok"


async def test_surfaces_without_attach_just_show_the_text(tmp_path: Path) -> None:
    surface = MemorySurface()
    await renderer(surface).render(script([TextDelta("ok"), FilesReady(files=(produced(tmp_path),)), Done("ok")]))
    assert surface.shown == {1: "ok"}


async def test_a_file_problem_is_one_friendly_sentence_in_both_languages() -> None:
    problem = FileProblem("too_large", "over", limit_mb="20")
    surface = MemorySurface()
    await renderer(surface).render(script([Failed(problem)]))
    assert surface.shown == {1: "⚠️ This file is too large: the limit is 20 MB. Please send a smaller file."}
    assert "20 MB" in friendly_error(problem, "zh")
    for reason in ("files_disabled", "type_refused", "too_many", "fetch_failed", "upload_failed",
                   "voice_unsupported", "transcription_failed"):  # fmt: skip
        english = friendly_error(FileProblem(reason, limit="3", what=".exe"))
        assert english != friendly_error(BaseException()) and "{" not in english and "?" not in english
        assert "{" not in friendly_error(FileProblem(reason), "zh")
