"""UpdateSurface: one Slack answer as thread replies posted once and then rewritten with chat.update."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.api import BudgetFor, SlackApi
from bots.slack.blocks import ControlBlocks
from bots.slack.errors import NETWORK_ERRORS, error_code, surface_error
from bots.slack.uploads import FileUploader
from core.controls.model import Controls
from core.files.model import ProducedFile
from core.render.surface import SurfaceLimits

__all__ = ["CURSOR", "THINKING", "UPDATE_LIMITS", "UpdateSurface", "frame"]

# chat.update with markdown_text takes 12,000 characters, but long messages get refused well before that
# in practice: keep each message of the update path under 4k.
UPDATE_LIMITS = SurfaceLimits(max_length=3900, cursor_length=2, placeholder=True)
CURSOR = " ▌"
THINKING = "is thinking…"
NO_CONTROLS = Controls()


def frame(markdown: str, final: bool) -> str:
    """The message text for a frame: interim frames end with the typing cursor."""
    return markdown if final else markdown + CURSOR


class UpdateSurface:
    """One answer as thread replies posted with chat.postMessage and rewritten with chat.update."""

    limits = UPDATE_LIMITS

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        budget: BudgetFor | None = None,
        clear_buttons: bool = False,
    ) -> None:
        """`clear_buttons`: every edit goes out as blocks, taking off buttons another process put there."""
        self._slack = SlackApi(client, channel=channel, thread_ts=thread_ts, budget=budget)
        self._uploads = FileUploader(self._slack)
        self.channel = channel
        self.thread_ts = thread_ts
        self._posted = False
        self._blocks = ControlBlocks()
        self._has_blocks: set[str] = set()  # messages posted or rewritten with blocks
        self._clear_buttons = clear_buttons

    @property
    def calls(self) -> Counter[str]:
        """Web API calls per method, failed ones included."""
        return self._slack.calls

    def count_calls_in(self, calls: Counter[str]) -> None:
        """Add this surface's calls so far to `calls` and count every later one there too."""
        calls.update(self._slack.calls)
        self._slack.calls = calls

    def measure(self, markdown: str) -> int:
        return len(markdown)

    async def send(self, markdown: str, *, final: bool, controls: Controls | None = None) -> str:
        self._slack.urgent = final
        buttons = self._blocks(controls or NO_CONTROLS)
        try:
            if buttons:
                ts = await self._slack.post_blocks(frame(markdown, final), buttons)
                self._has_blocks.add(ts)
            else:
                ts = await self._slack.post(frame(markdown, final))
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            raise surface_error(exc) from exc
        self._posted = True
        return ts

    async def edit(self, handle: str, markdown: str, *, final: bool, controls: Controls | None = None) -> str:
        self._slack.urgent = final
        buttons = self._blocks(controls or NO_CONTROLS)
        try:
            if buttons or self._clear_buttons or handle in self._has_blocks:
                # A message that carried buttons keeps using blocks: an empty list takes the buttons off.
                await self._slack.update_blocks(handle, frame(markdown, final), buttons)
                self._has_blocks.add(handle)
            else:
                await self._slack.update(handle, frame(markdown, final))
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            raise surface_error(exc) from exc
        return handle

    async def delete(self, handle: str) -> None:
        try:
            await self._slack.delete(handle)
        except SlackApiError as exc:
            if error_code(exc) != "message_not_found":  # already gone is what we wanted
                raise surface_error(exc) from exc
        except NETWORK_ERRORS as exc:
            raise surface_error(exc) from exc

    async def attach(self, files: Sequence[ProducedFile]) -> None:
        """Share files the app produced into the answer's thread."""
        await self._uploads.attach(files)

    async def typing(self) -> None:
        # Posting a reply clears the status; setting it again afterwards would leave it hanging under
        # the finished answer, and the placeholder with its cursor shows progress from then on.
        if not self._posted:
            await self._slack.set_status(THINKING)

    async def status(self, text: str) -> None:
        """Progress lines normally go into the placeholder; shown as the thread status if asked."""
        if not self._posted:
            await self._slack.set_status(text)
