"""A real OGG/Opus voice note converted by the real code path (soundfile's bundled libsndfile) to MP3."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile  # type: ignore[import-untyped]

from core.files.kinds import sniff
from core.files.model import FileProblem
from core.files.voice import speech_file

VOICE = Path(__file__).parents[1] / "data" / "voice.ogg"


async def test_ogg_opus_voice_becomes_mp3_labelled_for_audio_to_text(tmp_path: Path) -> None:
    head = VOICE.read_bytes()[:64]
    assert sniff(head) == "ogg" and soundfile.info(str(VOICE)).subtype == "OPUS"
    speech = await speech_file(VOICE, "voice.oga", head, tmp_path)
    assert (speech.name, speech.mime) == ("voice.mp3", "audio/mp3")
    assert speech.path.parent == tmp_path and sniff(speech.path.read_bytes()[:64]) == "mp3"
    info = soundfile.info(str(speech.path))
    assert info.format == "MP3" and abs(info.duration - 1.5) < 0.1 and info.samplerate == 48000


async def test_formats_dify_accepts_pass_untouched_with_its_exact_label(tmp_path: Path) -> None:
    mp3 = (await speech_file(VOICE, "voice.oga", VOICE.read_bytes()[:64], tmp_path)).path
    again = await speech_file(mp3, "song.mpeg", mp3.read_bytes()[:64], tmp_path / "unused")
    assert again.path == mp3 and (again.name, again.mime) == ("song.mp3", "audio/mp3")  # never audio/mpeg
    m4a_head = b"\0\0\0\x20ftypM4A \0\0\0\0"
    clip = await speech_file(mp3, "audio_message.m4a", m4a_head, tmp_path)
    assert (clip.name, clip.mime) == ("audio_message.m4a", "audio/m4a")


async def test_unreadable_audio_is_a_transcription_problem(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(FileProblem) as caught:
        await speech_file(junk, "voice.oga", junk.read_bytes()[:64], tmp_path)
    assert caught.value.reason == "transcription_failed"
