"""Slack surfaces: one answer as chat.update edits of thread replies, or as native chat streams."""

from __future__ import annotations

from bots.slack.api import BudgetFor
from bots.slack.errors import error_code, surface_error
from bots.slack.stream_surface import STREAM_LIMITS, NativeStreamSurface
from bots.slack.update_surface import UPDATE_LIMITS, UpdateSurface

__all__ = [
    "STREAM_LIMITS",
    "UPDATE_LIMITS",
    "BudgetFor",
    "NativeStreamSurface",
    "UpdateSurface",
    "error_code",
    "surface_error",
]
