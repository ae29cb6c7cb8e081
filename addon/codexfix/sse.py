"""Incremental Server-Sent Events framer that keeps every frame's exact bytes.

Plan: bytes go in with `feed()`, complete frames come out; only the incomplete tail is
held. A frame is everything up to and including the blank line that dispatches it
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
so joining the `raw` of all frames plus the tail gives back the input exactly: passthrough
is byte-identical whatever is parsed.

Speed: most upstreams use LF only. Until the first CR is seen, a frame end is simply
`\\n\\n`, found with `bytearray.find` from where the previous search stopped (as
h11's ReceiveBuffer does), so a 13 KB line arriving in 100-byte pieces costs O(n).
Once a CR is seen, a regular expression over the three line endings takes over; a CR
at the very end of the buffer waits for the next byte, because it may be half a CRLF.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")
# One line end, then a second one right after it: the blank line that ends a frame.
# `\r(?!\n)` keeps a CRLF from being read as two line ends.
_FRAME_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LEADING_LINE_END = re.compile(rb"\r\n|\r(?!\n)|\n")


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
        self._at_stream_start = True

    @property
    def buffered(self) -> int:
        """Bytes held back: the incomplete tail."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return the frames they complete (maybe none).

        Should anything raise, the buffer still holds every byte not returned in a frame
        (frames are cut off the buffer last), so `take_tail()` gives a caller everything it
        has not forwarded yet: the basis of fail-open.
        """
        self._buf += data
        if not self._cr_seen and b"\r" in data:
            self._cr_seen = True
        ends = self._frame_ends_cr() if self._cr_seen else self._frame_ends_lf()
        return self._cut(ends)

    def close(self) -> list[Frame]:
        """End of stream: a CR held back as a possible half CRLF now counts as a line end."""
        if not self._cr_seen:
            return []
        return self._cut(self._frame_ends_cr(final=True))

    def take_tail(self) -> bytes:
        """Remove and return the incomplete tail (at the end of the stream, or to go raw)."""
        tail = bytes(self._buf)
        self._buf.clear()
        self._searched = 0
        return tail

    def parse_tail(self) -> Frame | None:
        """The incomplete tail parsed as if it were terminated (for logging what is dropped)."""
        if not self._buf:
            return None
        return parse_frame(bytes(self._buf))

    def _frame_ends_lf(self) -> list[int]:
        buf, ends = self._buf, []
        start = 0
        pos = max(self._searched - 1, 0)
        while True:
            # A frame that starts with LF is an empty line on its own: a (no-op) frame.
            if pos == start and buf[start : start + 1] == b"\n":
                start = pos = start + 1
                ends.append(start)
                continue
            idx = buf.find(b"\n\n", pos)
            if idx < 0:
                self._searched = len(buf) - start
                return ends
            start = pos = idx + 2
            ends.append(start)

    def _frame_ends_cr(self, final: bool = False) -> list[int]:
        buf, ends = self._buf, []
        start = 0
        pos = max(self._searched - 3, 0)
        size = len(buf)
        while True:
            if pos == start:
                lead = _LEADING_LINE_END.match(buf, start)
                if lead and (final or not _is_pending_cr(buf, lead.end())):
                    start = pos = lead.end()
                    ends.append(start)
                    continue
            match = _FRAME_END.search(buf, pos)
            if match is None or (not final and _is_pending_cr(buf, match.end())):
                # Resume where a frame end could still begin; a pending CR is re-read.
                self._searched = (size if match is None else match.start()) - start
                return ends
            start = pos = match.end()
            ends.append(start)

    def _cut(self, ends: list[int]) -> list[Frame]:
        if not ends:
            return []
        buf, cr = self._buf, self._cr_seen
        frames, start = [], 0
        if self._at_stream_start:  # a BOM may open the stream, and only the stream
            self._at_stream_start = False
            frames.append(parse_lines(bytes(buf[: ends[0]]), strip_bom=True))
            start = ends[0]
            ends = ends[1:]
        for end in ends:
            frames.append(parse_frame(bytes(buf[start:end]), cr))
            start = end
        del buf[:start]
        return frames


def _is_pending_cr(buf: bytearray, end: int) -> bool:
    """A CR that ends the buffer may be the first half of a CRLF: wait for more."""
    return end == len(buf) and buf[end - 1 : end] == b"\r"


def parse_frame(raw: bytes, cr_possible: bool = True) -> Frame:
    """Parse the fields of one frame (WHATWG rules) from its bytes.

    `cr_possible=False` promises the frame holds no CR (the framer knows when).
    """
    return _parse_common(raw, cr_possible) or parse_lines(raw)


def parse_lines(raw: bytes, *, strip_bom: bool = False) -> Frame:
    """The general parser: line by line, every field and line ending."""
    text = raw
    if strip_bom and text.startswith(_BOM):
        text = text[len(_BOM) :]
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
        elif name == b"retry" and value.isdigit():
            retry = int(value)
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
