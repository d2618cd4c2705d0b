"""Fixtures shared by the component tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory `tempfile` creates in during the test, so a test can see what the code left behind."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def leftovers(directory: Path) -> list[Path]:
    """What is still in `directory` (a sync helper, so async tests need not touch the filesystem themselves)."""
    return list(directory.iterdir())
