"""Incremental Server-Sent Events framer that keeps every frame's exact bytes.

Plan: bytes go in with `push()`, and the bytes of the frames they complete come out as
one block; only the incomplete tail is held. A frame is everything up to and including
the blank line that dispatches it
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
so the blocks plus the tail give back the input exactly: passthrough is byte-identical
whatever is parsed. `split()` cuts a block into parsed frames; `simple_fields()` reads
the common case of a whole block at once.

Speed: most upstreams use LF only. Until the first CR is seen, every position right
after `\\n\\n` is a frame boundary (the second LF ends an empty line, which dispatches),
so a block ends at the last `\\n\\n`, found by one `rfind` over the new bytes only: a
13 KB line arriving in 100-byte pieces costs O(n). Once a CR is seen, a regular
expression over the three line endings takes over; a CR at the very end of the buffer
waits for the next byte, because it may be half a CRLF.
"""

from __future__ import annotations

import re
from typing import NamedTuple

BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")
# One line end, then a second one right after it: the blank line that ends a frame.
# `\r(?!\n)` keeps a CRLF from being read as two line ends.
_FRAME_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LEADING_LINE_END = re.compile(rb"\r\n|\r(?!\n)|\n")
# The frame nearly every upstream sends: an optional `event:` line, one `data:` line, LF.
# (`[^\n]`, not `[^\r\n]`: a single negated byte is the regex engine's fast loop; a CR
# is ruled out before.)
_SIMPLE_FRAME = re.compile(rb"(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n")


class Frame(NamedTuple):
    """One SSE frame: its exact bytes and the fields the spec parses out of them.

    A NamedTuple: built once per event on the hot path, it is the cheapest value object.
    """

    raw: bytes
    event: str | None = None
    data: bytes | None = None  # data lines joined with LF; None when the frame has none
    id: bytes | None = None
    retry: int | None = None
    comments: tuple[bytes, ...] = ()


class SSEFramer:
    """Split a byte stream into SSE frames as the bytes arrive."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._searched = 0  # bytes of _buf already known to hold no frame end
        self._cr_seen = False
        self._at_stream_start = True  # for feed(): the next frame may open with a BOM

    @property
    def buffered(self) -> int:
        """Bytes held back: the incomplete tail."""
        return len(self._buf)

    def push(self, data: bytes) -> bytes:
        """Add bytes; return the bytes of the frames they complete (b"" if none).

        Every byte not returned stays in the buffer, so `take_tail()` gives a caller
        everything it has not forwarded yet: the basis of fail-open.
        """
        buf = self._buf
        buf += data
        if self._cr_seen or b"\r" in data:
            self._cr_seen = True
            return self._cut(self._cr_block_end(final=False))
        # LF only (the hot path, once per upstream chunk: inlined). Right after `\n\n`
        # is always a boundary; so is a lone LF opening the buffer (the buffer starts at
        # a boundary, and an empty line dispatches). `buf[:_searched - 1]` holds no
        # `\n\n`: search the new bytes only.
        searched = self._searched
        end = buf.rfind(b"\n\n", searched - 1 if searched else 0) + 2
        if end == 1:
            end = 1 if buf[:1] == b"\n" else 0
        if end:
            block = bytes(buf[:end])
            del buf[:end]
        else:
            block = b""
        self._searched = len(buf)
        return block

    def push_final(self) -> bytes:
        """End of stream: a CR held back as a possible half CRLF now counts as a line end."""
        if not self._cr_seen:
            return b""
        return self._cut(self._cr_block_end(final=True))

    def split(self, block: bytes, *, stream_start: bool = False) -> list[Frame]:
        """The frames of a block `push()` returned; a BOM may open the stream's first one."""
        if not block:
            return []
        frames, start = [], 0
        cr = b"\r" in block
        for end in _cr_frame_ends(block) if cr else _lf_frame_ends(block):
            raw = block[start:end]
            if stream_start and start == 0:
                frames.append(parse_lines(raw, strip_bom=True))
            else:
                frames.append(parse_frame(raw, cr))
            start = end
        return frames

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the frames they complete (maybe none)."""
        return self._split_next(self.push(data))

    def close(self) -> list[Frame]:
        """End of stream: the frames a pending CR held back."""
        return self._split_next(self.push_final())

    def take_tail(self) -> bytes:
        """Remove and return the incomplete tail (at the end of the stream, or to go raw)."""
        tail = bytes(self._buf)
        self._buf.clear()
        self._searched = 0
        return tail

    def peek(self, size: int) -> bytes:
        """The first `size` bytes of the incomplete tail, left in place."""
        return bytes(self._buf[:size])

    def parse_tail(self) -> Frame | None:
        """The incomplete tail parsed as if it were terminated (for logging what is dropped)."""
        if not self._buf:
            return None
        return parse_frame(bytes(self._buf))

    def _split_next(self, block: bytes) -> list[Frame]:
        frames = self.split(block, stream_start=self._at_stream_start)
        if block:
            self._at_stream_start = False
        return frames

    def _cut(self, end: int) -> bytes:
        if end <= 0:
            return b""
        buf = self._buf
        block = bytes(buf[:end])
        del buf[:end]
        self._searched = max(self._searched - end, 0)
        return block

    def _cr_block_end(self, final: bool) -> int:
        """Where the last complete frame ends (0: none), with any line ending."""
        buf = self._buf
        end = 0
        pos = max(self._searched - 3, 0)
        size = len(buf)
        while True:
            if pos == end:
                lead = _LEADING_LINE_END.match(buf, end)
                if lead and (final or not _is_pending_cr(buf, lead.end())):
                    end = pos = lead.end()
                    continue
            match = _FRAME_END.search(buf, pos)
            if match is None or (not final and _is_pending_cr(buf, match.end())):
                # Resume where a frame end could still begin; a pending CR is re-read.
                self._searched = size if match is None else match.start()
                return end
            end = pos = match.end()


def _lf_frame_ends(block: bytes) -> list[int]:
    ends: list[int] = []
    pos = 0
    size = len(block)
    while pos < size:
        # A frame that starts with LF is an empty line on its own: a (no-op) frame.
        if block[pos] == 0x0A:
            pos += 1
        else:
            pos = block.index(b"\n\n", pos) + 2
        ends.append(pos)
    return ends


def _cr_frame_ends(block: bytes) -> list[int]:
    ends: list[int] = []
    pos = 0
    size = len(block)
    while pos < size:
        lead = _LEADING_LINE_END.match(block, pos)
        if lead:
            pos = lead.end()
        else:
            match = _FRAME_END.search(block, pos)
            assert match is not None, "a block ends at a frame boundary"
            pos = match.end()
        ends.append(pos)
    return ends


def _is_pending_cr(buf: bytearray, end: int) -> bool:
    """A CR that ends the buffer may be the first half of a CRLF: wait for more."""
    return end == len(buf) and buf[end - 1 : end] == b"\r"


def simple_fields(block: bytes) -> tuple[list[bytes | None], list[bytes]] | None:
    """Event names and data of a block made only of simple frames, or None.

    Simple: `event: NAME` LF (optional), `data: DATA` LF, LF; no CR. What the general
    parser would read from them, in two C-level passes instead of a loop per frame.
    """
    if b"\r" in block:
        return None
    parts = _SIMPLE_FRAME.split(block)
    # split() gives [gap, event, data, gap, event, data, ..., gap]: every gap must be
    # empty, or something else (a comment, an id, a second data line) is in the block.
    if any(parts[0::3]):
        return None
    return parts[1::3], parts[2::3]


_FIELD_NAMES = (b"data", b"event", b"id", b"retry")
_LONGEST_FIELD = max(len(name) for name in _FIELD_NAMES) + 1  # with its colon


def foreign_lines(block: bytes) -> bool:
    """Whether a block holds a line that is no SSE field: not empty, not a comment, not
    `data`, `event`, `id` or `retry`.

    The spec ignores such lines; at the start of a stream they tell a body that is not an
    event stream at all (JSON, HTML, binary data), to be left alone.
    """
    lines = _LINE_END.split(block) if b"\r" in block else block.split(b"\n")
    return any(
        line and line[0] != 0x3A and line.partition(b":")[0] not in _FIELD_NAMES for line in lines
    )


def foreign_start(tail: bytes) -> bool:
    """Whether the first line of an incomplete frame already cannot be an SSE field.

    Only its first bytes are read: the field name decides, so a check per chunk is O(1).
    """
    head = tail[:_LONGEST_FIELD]
    line = _LINE_END.split(head, 1)[0]
    if not line or line[0] == 0x3A:
        return False
    name, colon, _ = line.partition(b":")
    if colon or len(line) < len(head):  # the name is complete
        return name not in _FIELD_NAMES
    return not any(field.startswith(name) for field in _FIELD_NAMES)


def parse_frame(raw: bytes, cr_possible: bool = True) -> Frame:
    """Parse the fields of one frame (WHATWG rules) from its bytes.

    `cr_possible=False` promises the frame holds no CR (the framer knows when).
    """
    return _parse_common(raw, cr_possible) or parse_lines(raw)


def parse_lines(raw: bytes, *, strip_bom: bool = False) -> Frame:
    """The general parser: line by line, every field and line ending."""
    text = raw
    if strip_bom and text.startswith(BOM):
        text = text[len(BOM) :]
    lines = _LINE_END.split(text) if b"\r" in text else text.split(b"\n")
    event: str | None = None
    data_lines: list[bytes] = []
    event_id: bytes | None = None
    retry: int | None = None
    comments: list[bytes] = []
    for line in lines:
        if not line:
            continue
        if line[0] == 0x3A:  # ":" starts a comment
            comments.append(line)
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data_lines.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                event_id = value
        elif name == b"retry" and value.isdigit() and len(value) < 20:
            retry = int(value)  # (longer: a number no client keeps; int() may refuse it)
    data = b"\n".join(data_lines) if data_lines else None
    return Frame(raw, event, data, event_id, retry, tuple(comments))


def _parse_common(raw: bytes, cr_possible: bool) -> Frame | None:
    """`event: X` LF `data: Y` LF LF, or `data: Y` LF LF: nearly every real frame.

    The general loop below gives the same result; this only skips its per-line work.
    """
    end = len(raw) - 2
    if not raw.endswith(b"\n\n") or (cr_possible and b"\r" in raw):
        return None
    event = None
    start = 0
    if raw.startswith(b"event: "):
        start = raw.find(b"\n") + 1
        event = raw[7 : start - 1]
    if not raw.startswith(b"data: ", start):
        return None
    if raw.find(b"\n", start) != end:  # more than one data line, or other fields
        return None
    return Frame(
        raw, event.decode("utf-8", "replace") if event is not None else None, raw[start + 6 : end]
    )
