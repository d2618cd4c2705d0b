"""Voice for Dify's /audio-to-text: accepted formats pass as they are, anything else becomes MP3 via soundfile.

soundfile ships libsndfile (with Opus, Vorbis, FLAC and MP3) inside its wheel, so conversion works after a
plain `pip install` without a system ffmpeg."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path, PurePath

from core.files.kinds import sniff
from core.files.model import FileProblem

log = logging.getLogger(__name__)

BLOCK_FRAMES = 16384  # frames converted at a time: memory stays flat whatever the length
# Exactly what /audio-to-text accepts, by the extension sniffed from the bytes (audio/mpeg is refused).
ACCEPTED = {"mp3": "audio/mp3", "m4a": "audio/m4a", "mp4": "audio/m4a", "wav": "audio/wav", "amr": "audio/amr"}


@dataclass(frozen=True, slots=True)
class SpeechFile:
    """A voice recording in a form /audio-to-text takes."""

    path: Path
    name: str
    mime: str


def _to_mp3(source: Path, dest: Path) -> None:
    import soundfile  # type: ignore[import-untyped]

    with soundfile.SoundFile(source) as audio:
        channels = min(audio.channels, 2)
        with soundfile.SoundFile(
            dest, "w", samplerate=audio.samplerate, channels=channels, format="MP3", subtype="MPEG_LAYER_III"
        ) as out:
            for block in audio.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                out.write(block[:, :channels])


async def speech_file(path: Path, name: str, head: bytes, workdir: Path) -> SpeechFile:
    """The recording at `path` as /audio-to-text wants it, converted to MP3 in a thread when needed."""
    stem = PurePath(name).stem or "voice"
    sniffed = sniff(head)
    if sniffed in ACCEPTED:
        ext = "m4a" if sniffed == "mp4" else sniffed
        return SpeechFile(path=path, name=f"{stem}.{ext}", mime=ACCEPTED[sniffed])
    dest = workdir / f"{path.stem}-speech.mp3"
    try:
        await asyncio.to_thread(_to_mp3, path, dest)
    except Exception as exc:  # libsndfile raises its own error types for unreadable or odd input
        log.info("could not convert a voice message: %s", type(exc).__name__)
        raise FileProblem("transcription_failed", "the voice message could not be converted") from None
    return SpeechFile(path=dest, name=f"{stem}.mp3", mime="audio/mp3")
