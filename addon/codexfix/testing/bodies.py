"""Bodies for the mock backend to play: a transcript split into parts or into its events,
and bodies with a ``content-encoding`` (decompression bombs too)."""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from importlib import resources

# A real Codex backend stream (gpt-5: a reasoning item, then a message), shipped with the
# package: what the faults and the standalone backend play by default.
CODEX_TRANSCRIPT = resources.files("codexfix.testing") / "data" / "codex-backend-gpt5-text.sse"


def split_bytes(data: bytes, chunk_size: int) -> tuple[bytes, ...]:
    """Split ``data`` into pieces of at most ``chunk_size`` bytes."""
    return tuple(data[i : i + chunk_size] for i in range(0, len(data), chunk_size))


def sse_events(transcript: bytes) -> list[bytes]:
    """Split an SSE transcript into whole events (each with its blank line), to play it
    event by event or to cut it between events. For a transcript (LF or CRLF lines), not
    for reading what a client received."""
    normalized = transcript.replace(b"\r\n", b"\n")
    return [e + b"\n\n" for e in normalized.split(b"\n\n") if e.strip()]


def compressed(
    block: bytes, encoding: str, copies: int = 1, *, head: bytes = b"", tail: bytes = b""
) -> bytes:
    """``head``, ``block`` repeated ``copies`` times and ``tail``, compressed with a
    ``content-encoding`` (gzip, deflate, zstd, br) in the memory of one block: a body that
    decodes to a gigabyte (a decompression bomb) takes well under a second to make."""
    if encoding in ("gzip", "deflate"):
        return _deflated(head, block, copies, tail, gzip=encoding == "gzip")
    compress, finish = _streaming_compressor(encoding)
    # Streamed, as the Codex CLI sends its zstd bodies: no content size in the frame.
    pieces = [compress(head), *(compress(block) for _ in range(copies)), compress(tail)]
    return b"".join([*pieces, finish()])


def _streaming_compressor(
    encoding: str,
) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    """A zstd or brotli compressor's `compress(data)` and `finish()`."""
    if encoding == "zstd":
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
        zstd_compressor = zstd.ZstdCompressor()
        return zstd_compressor.compress, zstd_compressor.flush
    if encoding == "br":
        import brotli  # type: ignore[import-untyped,unused-ignore]

        br_compressor = brotli.Compressor(quality=5)
        compress: Callable[[bytes], bytes] = br_compressor.process
        finish: Callable[[], bytes] = br_compressor.finish
        return compress, finish
    raise ValueError(f"no compressor for {encoding!r}")


def _deflated(head: bytes, block: bytes, copies: int, tail: bytes, gzip: bool) -> bytes:
    """zlib (``deflate``) or gzip data: after a full flush a compressor starts afresh, so
    each copy of the block compresses to the same bytes; only the checksum in the trailer
    needs all the data."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the header
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush()
    end = end[: -8 if gzip else -4]  # the trailer, for one copy: made again below
    checksum = zlib.crc32 if gzip else zlib.adler32
    value = checksum(head, 0 if gzip else 1)
    for _ in range(copies):
        value = checksum(block, value)
    value = checksum(tail, value)
    size = len(head) + len(block) * copies + len(tail)
    trailer = struct.pack("<II", value, size & 0xFFFFFFFF) if gzip else struct.pack(">I", value)
    return start + again * copies + end + trailer
