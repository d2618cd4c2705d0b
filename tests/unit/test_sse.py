"""Unit tests for core.dify.sse."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Iterable

import pytest

from core.dify.sse import SSEDecodeError, SSEDecoder, SSEMessage

M = SSEMessage
PING = M("ping", "")
BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes], **kwargs: int) -> list[SSEMessage]:
    decoder = SSEDecoder(**kwargs)
    out: list[SSEMessage] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def pieces(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def reference(stream: bytes) -> list[SSEMessage]:
    """Straightforward whole-stream implementation of the same rules, to compare against."""
    text = stream.decode()
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split("\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()  # nothing after the last line end; otherwise EOF completes the last line
    out: list[SSEMessage] = []
    data: list[str] = []
    event: str | None = None
    for line in [*lines, ""]:
        if line == "":
            if data or event is not None:
                out.append(M(event or "message", "\n".join(data)))
            data, event = [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    return out


# --- Dify's own framing ----------------------------------------------------------------------


def test_dify_stream_with_ping() -> None:
    stream = (
        b"event: ping\n\n"
        b'data: {"event":"workflow_started","task_id":"K"}\n\n'
        b'data: {"event":"message","answer":"Ticket 42"}\n\n'
        b"event: ping\n\n"
        b'data: {"event":"message","answer":" is a refund request."}\n\n'
        b'data: {"event":"message_end","id":"M"}\n\n'
    )
    assert decode([stream]) == [
        PING,
        M("message", '{"event":"workflow_started","task_id":"K"}'),
        M("message", '{"event":"message","answer":"Ticket 42"}'),
        PING,
        M("message", '{"event":"message","answer":" is a refund request."}'),
        M("message", '{"event":"message_end","id":"M"}'),
    ]


def test_ping_block_is_dispatched_with_empty_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\n") == []
    assert decoder.feed(b"\n") == [M("ping", "")]
    assert decoder.flush() == []


def test_block_is_returned_by_the_chunk_that_completes_it() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [M("message", "a")]
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\ndata: c\n\ndata: d\n\n") == [
        M("message", "b"),
        M("message", "c"),
        M("message", "d"),
    ]
    assert decoder.feed(b"") == []
    assert decoder.flush() == []


def test_payload_is_text_ready_for_json() -> None:
    payload = {"event": "message", "answer": "退款已批准 ✅ 🇨🇳 done", "n": 1}
    body = b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
    [msg] = decode([body])
    assert msg.event == "message"
    assert json.loads(msg.data) == payload


# --- line endings ----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol: bytes) -> None:
    stream = eol.join([b"event: ping", b"", b"data: a", b"data: b", b"", b"event: x", b"data: c", b"", b""])
    assert decode([stream]) == [PING, M("message", "a\nb"), M("x", "c")]
    assert decode(bytewise(stream)) == [PING, M("message", "a\nb"), M("x", "c")]


def test_mixed_line_endings() -> None:
    stream = b"data: a\r\ndata: b\rdata: c\n\r\nevent: ping\r\r: note\n\ndata: d\r\n\n"
    expected = [M("message", "a\nb\nc"), PING, M("message", "d")]
    assert decode([stream]) == expected
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == expected, i


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # Read as two line ends, the LF would be a blank line and dispatch "a" on its own.
    assert decode([b"data: a\r", b"\ndata: b\r\n\r\n"]) == [M("message", "a\nb")]
    assert decode([b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n"]) == [M("message", "a\nb")]


def test_cr_at_chunk_end_followed_by_cr_is_a_blank_line() -> None:
    assert decode([b"data: a\r", b"\rdata: b\r\r"]) == [M("message", "a"), M("message", "b")]


def test_cr_at_chunk_end_then_empty_chunk_then_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [M("message", "a")]


# --- fields ----------------------------------------------------------------------------------


def test_comments_are_ignored() -> None:
    stream = b": hello\n:\ndata: a\n: between\ndata: b\n\n: ping\n\n:only a comment\n\n"
    assert decode([stream]) == [M("message", "a\nb")]


def test_id_retry_and_unknown_fields_are_ignored() -> None:
    stream = (
        b"id: 7\nretry: 3000\nfoo: bar\nData: upper\ndata: a\nid\n\n"
        b"id: 8\n\n"  # a block of ignored fields only: nothing dispatched
        b"retry: 10\nx\n\n"
        b"data: b\n\n"
    )
    assert decode([stream]) == [M("message", "a"), M("message", "b")]


def test_field_without_colon_has_empty_value() -> None:
    assert decode([b"data\ndata\n\n"]) == [M("message", "\n")]
    assert decode([b"data\n\n"]) == [M("message", "")]
    # An empty event type means the default one.
    assert decode([b"event\ndata: x\n\n"]) == [M("message", "x")]
    assert decode([b"event\n\n"]) == [M("message", "")]


def test_only_one_space_after_colon_is_dropped() -> None:
    stream = b"data:a\n\ndata:  b\n\ndata:\n\ndata: \n\nevent:ping\n\ndata: c:d: e\n\ndata:\tf\n\n"
    assert decode([stream]) == [
        M("message", "a"),
        M("message", " b"),
        M("message", ""),
        M("message", ""),
        PING,
        M("message", "c:d: e"),
        M("message", "\tf"),
    ]


def test_multiple_data_lines_are_joined_with_lf() -> None:
    stream = b"data: first\ndata:\ndata: third\n\n"
    assert decode([stream]) == [M("message", "first\n\nthird")]
    assert decode(bytewise(stream)) == [M("message", "first\n\nthird")]


def test_last_event_field_wins_and_resets_after_dispatch() -> None:
    stream = b"event: a\nevent: b\ndata: 1\n\ndata: 2\n\nevent: c\ndata: 3\nevent: d\n\n"
    assert decode([stream]) == [M("b", "1"), M("message", "2"), M("d", "3")]


def test_repeated_blank_lines_dispatch_nothing_extra() -> None:
    stream = b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n\n"
    assert decode([stream]) == [M("message", "a"), M("message", "b")]
    assert decode([b"\n" * 100]) == []
    assert decode([b"\r\n" * 50]) == []


def test_data_field_names_are_case_sensitive_and_exact() -> None:
    assert decode([b"DATA: a\ndata : b\ndatax: c\n data: d\n\n"]) == []


# --- BOM -------------------------------------------------------------------------------------


def test_bom_at_stream_start_is_dropped() -> None:
    stream = BOM + b"data: a\n\n"
    assert decode([stream]) == [M("message", "a")]
    assert decode(bytewise(stream)) == [M("message", "a")]
    assert decode([BOM[:2], BOM[2:] + b"event: ping\n", b"\n"]) == [PING]


def test_bom_before_a_blank_first_line() -> None:
    assert decode([BOM + b"\ndata: a\n\n"]) == [M("message", "a")]


def test_bom_later_in_the_stream_is_not_dropped() -> None:
    # After the start, "\ufeffdata" is just an unknown field name.
    assert decode([b"data: a\n\n" + BOM + b"data: b\n\n"]) == [M("message", "a")]
    assert decode([b"data: " + BOM + b"x\n\n"]) == [M("message", "\ufeffx")]


def test_only_one_bom_is_dropped() -> None:
    assert decode([BOM + BOM + b"data: a\n\n"]) == []


# --- huge lines ------------------------------------------------------------------------------


def _huge_payload(size: int) -> str:
    unit = '{"k":"文档内容 document 😀 \\n"},'
    return "[" + unit * (size // len(unit.encode())) + '{"end":true}]'


@pytest.fixture(scope="module")
def five_mb_stream() -> tuple[bytes, list[SSEMessage]]:
    payload = _huge_payload(5 * 1024 * 1024)
    stream = (
        b"data: before\n\n"
        + b'data: {"event":"node_finished","data":'
        + payload.encode()
        + b"}\n\nevent: ping\n\ndata: after\n\n"
    )
    assert len(stream) > 5 * 1024 * 1024
    expected = [
        M("message", "before"),
        M("message", '{"event":"node_finished","data":' + payload + "}"),
        PING,
        M("message", "after"),
    ]
    return stream, expected


def test_five_mb_line_in_one_piece(five_mb_stream: tuple[bytes, list[SSEMessage]]) -> None:
    stream, expected = five_mb_stream
    out = decode([stream])
    assert out == expected
    assert len(json.loads(out[1].data)["data"]) == len(json.loads(expected[1].data)["data"])


def test_five_mb_line_in_64k_pieces(five_mb_stream: tuple[bytes, list[SSEMessage]]) -> None:
    stream, expected = five_mb_stream
    decoder = SSEDecoder()
    chunks = pieces(stream, 64 * 1024)
    assert len(chunks) > 80
    assert len(chunks[-1]) > 40  # the big line ends in the last chunk, with the two small blocks
    per_chunk = [decoder.feed(chunk) for chunk in chunks]
    assert per_chunk[0] == expected[:1]
    assert all(batch == [] for batch in per_chunk[1:-1])  # nothing while the big line arrives
    assert per_chunk[-1] == expected[1:]
    assert decoder.flush() == []


def test_five_mb_line_in_odd_pieces(five_mb_stream: tuple[bytes, list[SSEMessage]]) -> None:
    stream, expected = five_mb_stream
    assert decode(pieces(stream, 65_537)) == expected
    assert decode(pieces(stream, 4093)) == expected


def test_huge_line_with_crlf_in_pieces() -> None:
    payload = "x" * (3 * 1024 * 1024)
    stream = b"data: " + payload.encode() + b"\r\n\r\n"
    assert decode(pieces(stream, 64 * 1024)) == [M("message", payload)]
    # CRLF of the big line split over two chunks.
    cut = len(stream) - 3
    assert decode([stream[:cut], stream[cut:]]) == [M("message", payload)]


def test_long_line_trickling_in_tiny_pieces() -> None:
    payload = "".join(chr(0x4E00 + i % 500) for i in range(100_000))  # 300 KB of Chinese
    stream = b"event: doc\ndata: " + payload.encode() + b"\n\n"
    assert decode(pieces(stream, 7)) == [M("doc", payload)]
    assert decode(pieces(stream, 16 * 1024 - 1)) == [M("doc", payload)]


def test_fed_buffer_may_be_reused_by_the_caller() -> None:
    decoder = SSEDecoder()
    buf = bytearray(b"data: " + b"a" * 20_000)  # big enough to be kept as one piece
    assert decoder.feed(buf) == []  # type: ignore[arg-type]
    buf[6:9] = b"XYZ"
    assert decoder.feed(b"\n\n") == [M("message", "a" * 20_000)]


# --- UTF-8 split across reads ------------------------------------------------------------------

UNICODE_STREAM = (
    "\ufeff"
    "event: ping\r\n\r\n"
    'data: {"answer":"你好，世界"}\n\n'
    ": 注释 😀\n"
    "event: 消息\n"
    "data: 第一行 👍🏽\n"
    "data: 👨‍👩‍👧‍👦 family 🇨🇳 flag\r\r"
    'data: {"answer":"é ß ж ℃ € 𝄞 🚀"}\n\n'
    "data: 末尾没有空行 ✅"
).encode()
UNICODE_EXPECTED = [
    PING,
    M("message", '{"answer":"你好，世界"}'),
    M("消息", "第一行 👍🏽\n👨‍👩‍👧‍👦 family 🇨🇳 flag"),
    M("message", '{"answer":"é ß ж ℃ € 𝄞 🚀"}'),
    M("message", "末尾没有空行 ✅"),
]


def test_unicode_stream_in_one_piece() -> None:
    assert decode([UNICODE_STREAM]) == UNICODE_EXPECTED
    assert reference(UNICODE_STREAM) == UNICODE_EXPECTED


def test_unicode_stream_split_at_every_byte() -> None:
    for split in range(len(UNICODE_STREAM) + 1):
        assert decode([UNICODE_STREAM[:split], UNICODE_STREAM[split:]]) == UNICODE_EXPECTED, split


def test_unicode_stream_byte_by_byte() -> None:
    decoder = SSEDecoder()
    out: list[SSEMessage] = []
    for byte in bytewise(UNICODE_STREAM):
        out.extend(decoder.feed(byte))
    assert out == UNICODE_EXPECTED[:-1]
    assert decoder.flush() == UNICODE_EXPECTED[-1:]


def test_unicode_stream_split_at_every_pair_of_points() -> None:
    stream = UNICODE_STREAM
    for i in range(0, len(stream) + 1, 3):
        for j in range(i, len(stream) + 1, 5):
            assert decode([stream[:i], stream[i:j], stream[j:]]) == UNICODE_EXPECTED, (i, j)


# --- flush at EOF ----------------------------------------------------------------------------


def test_flush_after_trailing_blank_line_returns_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [M("message", "a")]
    assert decoder.flush() == []


def test_flush_dispatches_block_without_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\ndata: b\n") == []
    assert decoder.flush() == [M("message", "a\nb")]


def test_flush_completes_an_unterminated_last_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [M("message", "a")]
    assert decoder.flush() == [M("message", "b")]
    assert decode([b"event: ping"]) == [PING]
    assert decode([b"event: done\ndata: x\r"]) == [M("done", "x")]


def test_flush_without_data_or_event_returns_nothing() -> None:
    assert decode([]) == []
    assert decode([b""]) == []
    assert decode([b": comment"]) == []
    assert decode([b"id: 1\nretry: 5"]) == []
    assert decode([b"\n\n\n"]) == []


def test_flush_resets_the_decoder() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\ndata: a") == []
    assert decoder.flush() == [M("x", "a")]
    assert decoder.flush() == []
    assert decoder.feed(BOM + b"data: b\n\n") == [M("message", "b")]


# --- errors ----------------------------------------------------------------------------------


def test_error_type() -> None:
    assert issubclass(SSEDecodeError, ValueError)


def test_line_at_the_limit_is_accepted() -> None:
    line = b"data: " + b"x" * 94  # 100 bytes
    assert decode([line + b"\r\n\r\n"], max_line_bytes=100) == [M("message", "x" * 94)]
    assert decode(bytewise(line + b"\n\n"), max_line_bytes=100) == [M("message", "x" * 94)]
    assert decode(pieces(line + b"\n\n", 7), max_line_bytes=100) == [M("message", "x" * 94)]


def test_line_over_the_limit_in_one_chunk() -> None:
    decoder = SSEDecoder(max_line_bytes=100)
    with pytest.raises(SSEDecodeError, match="longer than 100 bytes"):
        decoder.feed(b"data: ok\n\ndata: " + b"x" * 95 + b"\n\n")


def test_line_over_the_limit_inside_a_large_chunk() -> None:
    decoder = SSEDecoder(max_line_bytes=100)
    chunk = b"data: a\n\n" * 20 + b"data: " + b"y" * 200 + b"\n\n" + b"data: b\n\n" * 20
    with pytest.raises(SSEDecodeError):
        decoder.feed(chunk)


def test_line_over_the_limit_raises_before_its_end_arrives() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    assert decoder.feed(b"data: " + b"x" * 500) == []
    assert decoder.feed(b"x" * 494) == []  # exactly 1000 bytes buffered
    with pytest.raises(SSEDecodeError, match="longer than 1000 bytes"):
        decoder.feed(b"x")


def test_line_over_the_limit_when_completed() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    assert decoder.feed(b"data: " + b"x" * 990) == []
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"x" * 10 + b"\n\n")


def test_unterminated_tail_over_the_limit() -> None:
    decoder = SSEDecoder(max_line_bytes=100)
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: a\n\n" + b"z" * 101)


def test_decoder_drops_buffered_line_after_limit_error() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: 0123456789")
    assert decoder.flush() == []


def test_max_line_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEDecoder(max_line_bytes=0)


@pytest.mark.parametrize(
    "line",
    [
        b"data: \xff\xfe",
        b"data: abc\xe4\xb8",  # truncated character followed by the line end
        b"data:\xc3\x28",
        b"event: \x80",
        b": comment \xff",
        b"id: \xed\xa0\x80",  # an encoded surrogate is not valid UTF-8
        b"\xf0\x9f\x98data: x",
    ],
)
def test_invalid_utf8_in_a_complete_line(line: bytes) -> None:
    decoder = SSEDecoder()
    with pytest.raises(SSEDecodeError, match="UTF-8"):
        decoder.feed(line + b"\n\n")


def test_invalid_utf8_in_a_single_line_block_of_a_large_chunk() -> None:
    chunk = b"data: ok\n\n" * 10 + b"data: \xff\n\n" + b"data: ok\n\n" * 10
    with pytest.raises(SSEDecodeError):
        SSEDecoder().feed(chunk)


def test_decoder_drops_pending_block_after_utf8_error() -> None:
    decoder = SSEDecoder()
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"data: ok\ndata: \xff\n\n")
    assert decoder.flush() == []


def test_invalid_utf8_is_reported_when_the_line_completes() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: \xe4\xb8") == []  # may still be the start of a character
    with pytest.raises(SSEDecodeError):
        decoder.feed(b"\n\n")


def test_invalid_utf8_in_last_line_at_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: ok\n\ndata: \xe4\xb8") == [M("message", "ok")]
    with pytest.raises(SSEDecodeError):
        decoder.flush()


# --- the message type --------------------------------------------------------------------------


def test_message_is_frozen_and_compares_by_value() -> None:
    [fast] = decode([b"data: x\n\n" * 3])[:1]
    assert fast == M("message", "x")
    assert hash(fast) == hash(M("message", "x"))
    assert repr(fast) == "SSEMessage(event='message', data='x')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.data = "y"  # type: ignore[misc]
    assert not hasattr(fast, "__dict__")


# --- against a reference implementation --------------------------------------------------------

_LINE_CHOICES = [
    'data: {"answer":"hello"}',
    "data: 你好 😀",
    "data:no-space",
    "data:",
    "data",
    "event: ping",
    "event: node_finished",
    "event:",
    ": comment",
    "id: 12",
    "retry: 100",
    "unknown: field",
    "",
    "",
    "",
]


def _random_stream(rng: random.Random) -> bytes:
    lines = [rng.choice(_LINE_CHOICES) for _ in range(rng.randint(0, 40))]
    parts: list[str] = []
    for line in lines:
        parts.append(line)
        parts.append(rng.choice(["\n", "\n", "\n", "\r\n", "\r"]))
    if parts and rng.random() < 0.3:
        parts.pop()  # end without a line terminator
    prefix = "\ufeff" if rng.random() < 0.2 else ""
    return (prefix + "".join(parts)).encode()


def test_random_streams_and_chunkings_match_reference() -> None:
    rng = random.Random(20240601)
    for _ in range(400):
        stream = _random_stream(rng)
        expected = reference(stream)
        assert decode([stream]) == expected, stream
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(1, 8))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode(chunks) == expected, (stream, cuts)
        assert decode(bytewise(stream)) == expected, stream


def test_reference_sanity() -> None:
    # The reference must itself be right for the comparison to mean anything.
    assert reference(b"event: ping\n\ndata: a\r\ndata: b\r\r") == [PING, M("message", "a\nb")]
    assert reference(b"data: a") == [M("message", "a")]
    assert reference(b"") == []
