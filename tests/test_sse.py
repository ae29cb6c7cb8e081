"""The SSE framer: WHATWG line rules, exact bytes, any chunking."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexfix.sse import Frame, SSEFramer, parse_frame, parse_lines

from support.transcripts import FIXTURES, chunked


def feed_all(pieces: list[bytes]) -> tuple[list[Frame], bytes]:
    framer = SSEFramer()
    out: list[Frame] = []
    for piece in pieces:
        out += framer.feed(piece)
    out += framer.close()
    return out, framer.take_tail()


def test_fields_are_parsed_per_spec() -> None:
    data = (
        b": keepalive\n"
        b"event: response.created\n"
        b"id: 7\n"
        b"retry: 1500\n"
        b"data: line one\n"
        b"data:line two\n"
        b"data\n"
        b"ignored-field: x\n\n"
    )
    [frame], tail = feed_all([data])
    assert frame.raw == data and tail == b""
    assert frame.event == "response.created"
    assert frame.data == b"line one\nline two\n"
    assert frame.id == b"7" and frame.retry == 1500
    assert frame.comments == (b": keepalive",)


def test_only_one_leading_space_is_stripped_and_bad_retry_is_ignored() -> None:
    [frame], _ = feed_all([b"data:  two spaces\nretry: 12a\nid: a\0b\n\n"])
    assert frame.data == b" two spaces"
    assert frame.retry is None and frame.id is None


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_frames_alike(eol: bytes) -> None:
    data = eol.join([b"event: a", b"data: 1", b"", b"data: 2", b"", b""])
    got, tail = feed_all([data])
    assert [(f.event, f.data) for f in got] == [("a", b"1"), (None, b"2")]
    assert b"".join(f.raw for f in got) + tail == data


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    got, _ = feed_all([b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"])
    assert [f.raw for f in got] == [b"data: x\r\n\r\n", b"data: y\r\n\r\n"]


def test_trailing_cr_waits_for_the_next_byte() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: x\r\r") == []  # the second CR may be half a CRLF
    [frame] = framer.feed(b"\n")
    assert frame.raw == b"data: x\r\r\n"


def test_cr_at_the_very_end_of_the_stream_ends_the_frame() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: x\r\r") == []
    [frame] = framer.close()
    assert frame.data == b"x"


def test_utf8_split_inside_a_character() -> None:
    text = "data: héllo — ✓\n\n".encode()
    cut = text.index("✓".encode()) + 1
    got, _ = feed_all([text[:cut], text[cut:]])
    assert got[0].data == "héllo — ✓".encode()


def test_bom_is_ignored_for_parsing_but_kept_in_bytes() -> None:
    data = b"\xef\xbb\xbfevent: a\ndata: 1\n\n"
    [frame], _ = feed_all([data])
    assert frame.event == "a" and frame.raw == data


def test_blank_lines_between_frames_are_empty_frames() -> None:
    got, _ = feed_all([b"\n\ndata: 1\n\n\n"])
    assert [f.data for f in got] == [None, None, b"1", None]
    assert b"".join(f.raw for f in got) == b"\n\ndata: 1\n\n\n"


def test_incomplete_event_stays_in_the_tail() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: 1\n\ndata: 2\n") != []
    assert framer.buffered == len(b"data: 2\n")
    tail = framer.parse_tail()
    assert tail is not None and tail.data == b"2"
    assert framer.take_tail() == b"data: 2\n"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/*.sse")), ids=lambda p: p.name)
@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_real_transcripts_frame_the_same_in_any_chunking(path, eol: bytes) -> None:  # type: ignore[no-untyped-def]
    data = path.read_bytes().replace(b"\n", eol)
    whole, tail = feed_all([data])
    assert b"".join(f.raw for f in whole) + tail == data
    for sizes in ([1], [3, 1, 7], [100, 13], [4096]):
        got, tail2 = feed_all(chunked(data, sizes))
        assert got == whole and tail2 == tail


_SSE_BYTES = st.lists(
    st.sampled_from(
        [
            b"\n",
            b"\r",
            b"\r\n",
            b"data: x",
            b"event: e",
            b":c",
            b"id: 1",
            b"\xe2\x9c",
            b"\x93",
            b"a",
        ]
    ),
    max_size=60,
).map(b"".join)


@given(data=_SSE_BYTES, cuts=st.lists(st.integers(min_value=1, max_value=9), min_size=1))
def test_chunking_never_changes_frames(data: bytes, cuts: list[int]) -> None:
    whole, tail = feed_all([data])
    got, tail2 = feed_all(chunked(data, cuts))
    assert got == whole and tail2 == tail
    assert b"".join(f.raw for f in got) + tail2 == data


@given(data=_SSE_BYTES)
def test_fast_path_parses_like_the_general_parser(data: bytes) -> None:
    frame = data + b"\n\n"
    assert parse_frame(frame) == parse_lines(frame)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/*.sse")), ids=lambda p: p.name)
def test_fast_path_parses_real_frames_like_the_general_parser(path: Path) -> None:
    framer = SSEFramer()
    for frame in framer.feed(path.read_bytes()):
        assert parse_frame(frame.raw) == parse_lines(frame.raw)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_a_long_line_in_small_pieces_is_searched_once(eol: bytes) -> None:
    """O(n): each feed searches only the new bytes (plus the few a line end may span)."""
    framer = SSEFramer()
    framer.feed(b"event: x" + eol + b"data: ")  # also sets the line-ending mode
    for _ in range(130):  # a 13 KB data line in 100-byte pieces
        framer.feed(b"d" * 100)
        assert framer._searched == framer.buffered  # where the next search starts
    [frame] = framer.feed(eol + eol)
    assert frame.data == b"d" * 13000
