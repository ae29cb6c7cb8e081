"""Bounded decoding of `content-encoding`: gzip, deflate, zstd, br, and stacks of them.

codex-fix asks every matched upstream for `accept-encoding: identity`, yet some servers
compress anyway, and the Codex CLI sends zstd request bodies. A few kilobytes of such data
can decode to gigabytes, so nothing here decodes all it is given at once: a decoder
yields its output in pieces of at most `SLICE` bytes (the next piece is decoded only when
the caller asks for it), and `Bounded` stops with `TooLarge` once the total passes a
limit. An upstream body is decoded chunk by chunk as it arrives (never buffered whole);
`decode_body` decodes a whole request body, up to a limit. An encoding without a decoder
here leaves a stream untouched; a body that does not decode is a broken upstream.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

SLICE = 256 * 1024  # the most one piece of decoded output holds
# Input is fed in pieces of this size: zlib copies the input it could not use yet
# (`unconsumed_tail`) on every call, which on a whole body would be quadratic.
_IN_PIECE = 64 * 1024


class DecodeError(Exception):
    """The body is not valid data of its declared encoding."""


class TooLarge(DecodeError):
    """The body decodes to more than the limit; decoding stopped there."""


class Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes that `data` adds to the body so far, in pieces of at most
        `SLICE` bytes, each decoded when asked for; DecodeError if it does not decode."""
        ...


def _pieces(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), _IN_PIECE):
        yield view[start : start + _IN_PIECE]


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._inflate = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        inflate = self._inflate
        try:
            for piece in _pieces(data):
                rest: Any = piece
                while True:
                    out = inflate.decompress(rest, SLICE)
                    rest = inflate.unconsumed_tail
                    if out:
                        yield out
                    # A full slice may leave output inside zlib with no input left: ask
                    # again with b"" until a call comes back short.
                    if not rest and len(out) < SLICE:
                        break
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None


class _Deflate:
    """RFC 9110's deflate is zlib-wrapped, but some servers send it raw: the first two
    bytes tell (a zlib header is CM=8 with a valid check)."""

    def __init__(self) -> None:
        self._inner: _Zlib | None = None
        self._head = b""

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._inner is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return iter(())
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inner = _Zlib(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return self._inner.decode(data)


class _Zstd:
    """zstd through the standard library's `compression.zstd` (Python 3.14) or its
    backport (a dependency of codex-fix, and of mitmproxy 12.3): unlike `zstandard`'s
    decompressobj, its `decompress` takes a `max_length`."""

    def __init__(self) -> None:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd

        self._new = zstd.ZstdDecompressor
        self._zstd = self._new()
        self._error = zstd.ZstdError

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            for piece in _pieces(data):
                rest: Any = piece
                while True:
                    out = self._zstd.decompress(rest, SLICE)
                    if out:
                        yield out
                    if self._zstd.eof:  # a frame ended: the body may hold another
                        rest = self._zstd.unused_data
                        self._zstd = self._new()
                        if not rest:
                            break
                    elif self._zstd.needs_input:
                        break
                    else:  # output held back by max_length
                        rest = b""
        except self._error as exc:
            raise DecodeError(str(exc)) from None


class _Brotli:
    def __init__(self) -> None:
        import brotli  # type: ignore[import-untyped,unused-ignore]  # a mitmproxy dependency

        self._brotli = brotli.Decompressor()
        self._error = brotli.error
        # brotli 1.2 bounds the output of a call; 1.1 (mitmproxy 11's pin) does not.
        self._bounded = hasattr(self._brotli, "can_accept_more_data")

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            if self._bounded:
                yield from self._decode_bounded(data)
            else:
                yield from self._decode_bytewise(data)
        except self._error as exc:
            raise DecodeError(str(exc)) from None

    def _decode_bounded(self, data: bytes) -> Iterator[bytes]:
        # The output buffer stops growing once it reaches the limit, so a call may return
        # up to about twice the limit (measured with brotli 1.2.1): ask for half a slice.
        # Output may remain after can_accept_more_data() turns true: drain until empty.
        for piece in _pieces(data):
            out = self._brotli.process(piece, output_buffer_limit=SLICE // 2)
            while out:
                yield out
                out = self._brotli.process(b"", output_buffer_limit=SLICE // 2)

    def _decode_bytewise(self, data: bytes) -> Iterator[bytes]:
        # Without an output limit, one byte of input can still complete no more than a
        # meta-block or two (16 MiB each at most, RFC 7932 9.2): feed a byte at a time.
        view = memoryview(data)
        for start in range(len(view)):
            out = self._brotli.process(view[start : start + 1])
            for begin in range(0, len(out), SLICE):
                yield out[begin : begin + SLICE]


class _Stacked:
    """Codings applied one over another: each one's pieces feed the next decoder."""

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders  # in decoding order: the last coding listed first

    def decode(self, data: bytes) -> Iterator[bytes]:
        pieces: Iterable[bytes] = (data,)
        for decoder in self._decoders:
            pieces = _through(decoder, pieces)
        return iter(pieces)


def _through(decoder: Decoder, pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from decoder.decode(piece)


class Bounded:
    """A decoder whose total output may not pass `limit` bytes: the piece that would pass
    it raises TooLarge instead of being returned, and nothing more is decoded."""

    def __init__(self, decoder: Decoder, limit: int) -> None:
        self._decoder = decoder
        self.limit = limit
        self.total = 0

    def decode(self, data: bytes) -> Iterator[bytes]:
        for piece in self._decoder.decode(data):
            self.total += len(piece)
            if self.total > self.limit:
                raise TooLarge(f"decodes to more than {self.limit} bytes")
            yield piece


_DECODERS: dict[str, Callable[[], Decoder]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": _Deflate,
    "zstd": _Zstd,
    "br": _Brotli,
}


def decoder_for(content_encoding: str) -> Decoder | None:
    """A fresh decoder for a `content-encoding` value (one coding, or a list in the order
    they were applied; `identity` does nothing), or None if one of them has no decoder."""
    decoders = []
    for coding in reversed(content_encoding.lower().split(",")):  # the last applied first
        coding = coding.strip()
        if coding in ("", "identity"):
            continue
        factory = _DECODERS.get(coding)
        if factory is None:
            return None
        try:
            decoders.append(factory())
        except ImportError:
            return None
    return decoders[0] if len(decoders) == 1 else _Stacked(decoders)


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """A whole body with its `content-encoding` undone, decoding at most `limit` bytes.

    DecodeError if it does not decode or no decoder exists for it; TooLarge (a DecodeError)
    as soon as it passes `limit`, having decoded no more than that and a piece.
    """
    decoder = decoder_for(content_encoding or "")
    if decoder is None:
        raise DecodeError(f"no decoder for content-encoding {content_encoding!r}")
    return b"".join(Bounded(decoder, limit).decode(body))
