"""Incremental decoder for the `text/event-stream` framing used by Dify's streaming API."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecodeError", "SSEDecoder", "SSEMessage"]

_BOM = b"\xef\xbb\xbf"
_DATA_PREFIX = b"data: "
_DATA_PREFIX_LEN = len(_DATA_PREFIX)
# Pieces of an unfinished line shorter than this are merged, so that a line trickling in a few
# bytes at a time is not held as millions of tiny objects.
_SMALL_PIECE = 16 * 1024


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched event block.

    ``event`` is the value of the last ``event:`` field of the block, or ``"message"`` when the
    block had none (or an empty one); ``data`` is the block's data lines joined with ``"\\n"``,
    or ``""`` when the block had no data line (Dify's ``event: ping`` block).
    """

    event: str
    data: str


# The decoder builds one SSEMessage per event, so it skips the frozen dataclass ``__init__``
# (two ``object.__setattr__`` calls behind a Python frame) and fills the slots directly, which is
# what that ``__init__`` does. Plain ``SSEMessage(event, data)`` is used everywhere else.
_new_instance: Callable[[type[SSEMessage]], SSEMessage] = object.__new__
_slots: Any = SSEMessage.__dict__
_set_event: Callable[[SSEMessage, str], None] = _slots["event"].__set__
_set_data: Callable[[SSEMessage, str], None] = _slots["data"].__set__
del _slots


class SSEDecodeError(ValueError):
    """The stream cannot be decoded: a line is too long or a complete line is not valid UTF-8."""


class SSEDecoder:
    """Split raw ``text/event-stream`` bytes into :class:`SSEMessage` blocks.

    Feed the body in arbitrary pieces with :meth:`feed` and call :meth:`flush` at end of stream.

    * Lines end in LF, CRLF or a lone CR, in any mix, even when a CRLF pair is split between two
      chunks. A UTF-8 BOM at the very start of the stream is dropped.
    * Each line is decoded as UTF-8 once, when it is complete, so a multi-byte character split
      across chunks is safe. The bytes of an incomplete line are only buffered: a long line
      arriving in many pieces is searched for its terminator once per piece (never rescanned),
      and its pieces are kept as they are and joined once, when the line completes.
    * ``:`` comment lines, ``id:``, ``retry:`` and unknown fields are ignored. A line without a
      colon is a field with an empty value; one space after the colon is dropped.
    * A blank line dispatches the block if it had at least one ``data`` or ``event`` field, so
      ``event: ping`` comes out as ``SSEMessage(event="ping", data="")``. A block made only of
      comments or ignored fields, and repeated blank lines, dispatch nothing.
    * A line longer than ``max_line_bytes`` (terminator excluded) raises :class:`SSEDecodeError`
      as soon as the buffered part exceeds the limit.

    After :class:`SSEDecodeError` the stream is corrupt: the decoder drops its buffered state and
    the rest of that stream should not be fed to it.
    """

    __slots__ = ("_at_start", "_cr_pending", "_data", "_event", "_max_line_bytes", "_partial", "_partial_len")

    def __init__(self, *, max_line_bytes: int = 64 * 1024 * 1024) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self._max_line_bytes = max_line_bytes
        self._partial: list[bytes | bytearray] = []  # pieces of the current line, unterminated
        self._partial_len = 0  # their total length
        self._data: list[str] = []  # data values of the current block
        self._event: str | None = None  # last event value of the current block, None if absent
        self._cr_pending = False  # the last chunk ended in CR: a leading LF completes a CRLF
        self._at_start = True  # no line completed yet, so a BOM may still have to be dropped

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Consume ``chunk`` and return every block it completes, in stream order."""
        if not chunk:
            return []
        if type(chunk) is not bytes:
            chunk = bytes(chunk)  # a caller's mutable buffer may change after feed() returns
        if self._cr_pending:
            self._cr_pending = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # Normalise CRLF and CR to LF. A CR ending the chunk already ends its line; remember
            # it so that an LF opening the next chunk is not read as a second line end.
            self._cr_pending = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        partial = self._partial
        max_line = self._max_line_bytes
        if chunk.find(b"\n") < 0:
            # Only this piece is searched: the pieces kept before it were searched already. They
            # are joined once, when the line completes.
            last_piece = partial[-1] if partial else None
            if len(chunk) >= _SMALL_PIECE:
                partial.append(chunk)
            elif isinstance(last_piece, bytearray) and len(last_piece) < _SMALL_PIECE:
                last_piece += chunk
            else:
                partial.append(bytearray(chunk))
            self._partial_len += len(chunk)
            if self._partial_len > max_line:
                self._fail()
                raise SSEDecodeError(f"SSE line longer than {max_line} bytes")
            return []

        lines = chunk.split(b"\n")
        tail = lines.pop()  # the unterminated rest, possibly empty
        if partial:
            partial.append(lines[0])
            lines[0] = b"".join(partial)
            partial.clear()
        if len(chunk) > max_line or len(lines[0]) > max_line:
            # Only the first line can outgrow the chunk, so shorter chunks need no per-line check.
            for line in lines:
                if len(line) > max_line:
                    self._fail()
                    raise SSEDecodeError(f"SSE line longer than {max_line} bytes")
            if len(tail) > max_line:
                self._fail()
                raise SSEDecodeError(f"SSE line longer than {max_line} bytes")
        if tail:
            partial.append(tail)
        self._partial_len = len(tail)
        if self._at_start:
            self._at_start = False
            if lines[0].startswith(_BOM):
                lines[0] = lines[0][len(_BOM) :]
        return self._lines(lines, end_of_stream=False)

    def flush(self) -> list[SSEMessage]:
        """End of stream: dispatch a last block left without its terminating blank line.

        A final line without a line ending counts as complete. The decoder is reset afterwards
        and can decode a new stream.
        """
        lines: list[bytes] = []
        if self._partial:
            line = b"".join(self._partial)
            if self._at_start and line.startswith(_BOM):
                line = line[len(_BOM) :]
            lines.append(line)
        try:
            return self._lines(lines, end_of_stream=True)
        finally:
            self._fail()
            self._at_start = True

    def _fail(self) -> None:
        """Drop everything buffered for the current stream."""
        self._partial = []
        self._partial_len = 0
        self._data = []
        self._event = None
        self._cr_pending = False
        self._at_start = False

    def _lines(self, lines: list[bytes], *, end_of_stream: bool) -> list[SSEMessage]:
        """Interpret complete lines (terminators removed) and return the blocks they dispatch."""
        out: list[SSEMessage] = []
        try:
            start = 0
            if lines and (self._data or self._event is not None):
                # Finish the block begun before these lines.
                while start < len(lines) and lines[start]:
                    start += 1
                start += 1
                self._general(lines[:start], out)
            if len(lines) - start >= 2:
                firsts, blanks = lines[start::2], lines[start + 1 :: 2]
                if not any(blanks):
                    # Every block here is one line followed by a blank line: Dify's shape.
                    self._single_line_blocks(firsts, len(blanks), out)
                    start = len(lines)
            if start < len(lines):
                self._general(lines[start:], out)
        except UnicodeDecodeError as exc:
            self._fail()
            raise SSEDecodeError(f"SSE line is not valid UTF-8: {exc}") from exc
        if end_of_stream and (self._data or self._event is not None):
            out.append(SSEMessage(self._event or "message", "\n".join(self._data)))
            self._data.clear()
            self._event = None
        return out

    def _single_line_blocks(self, firsts: list[bytes], terminated: int, out: list[SSEMessage]) -> None:
        """Interpret ``firsts``, lines that each start a block with no pending state.

        The first ``terminated`` of them are each followed by a blank line; a last one, if any,
        is not (yet).
        """
        append = out.append
        prefix = _DATA_PREFIX
        plen = _DATA_PREFIX_LEN
        new, set_event, set_data, cls = _new_instance, _set_event, _set_data, SSEMessage
        last = firsts.pop() if len(firsts) > terminated else None
        for line in firsts:
            if line[:plen] == prefix:
                msg = new(cls)
                set_event(msg, "message")
                set_data(msg, line[plen:].decode())
                append(msg)
            else:
                self._general((line, b""), out)
        if last is not None:
            self._general((last,), out)

    def _general(self, lines: Iterable[bytes], out: list[SSEMessage]) -> None:
        """Interpret complete lines one by one, appending the blocks they dispatch to ``out``."""
        append = out.append
        data = self._data
        event = self._event
        prefix = _DATA_PREFIX
        plen = _DATA_PREFIX_LEN
        for line in lines:
            if not line:
                # Blank line: dispatch the block, if it had a data or an event field.
                if data:
                    append(SSEMessage(event or "message", data[0] if len(data) == 1 else "\n".join(data)))
                    data.clear()
                    event = None
                elif event is not None:
                    append(SSEMessage(event or "message", ""))
                    event = None
            elif line[:plen] == prefix:
                data.append(line[plen:].decode())
            else:
                text = line.decode()
                if text[0] == ":":
                    continue  # comment
                name, _, value = text.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                # "id", "retry" and unknown fields carry nothing this client uses.
        self._event = event
