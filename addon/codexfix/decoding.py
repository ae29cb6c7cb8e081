"""Incremental decoding of a compressed response body, so the fixer still sees SSE.

codex-fix asks every matched upstream for `accept-encoding: identity`, yet some
servers compress anyway. Such a body is decoded chunk by chunk as it arrives (never
buffered whole) and the client gets it unencoded. An encoding without a decoder here
leaves the stream untouched; a body that does not decode is a broken upstream.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol


class DecodeError(Exception):
    """The body is not valid data of its declared encoding."""


class Decoder(Protocol):
    def decode(self, data: bytes) -> bytes: ...


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._inflate = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data)
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None


class _Zstd:
    def __init__(self) -> None:
        import zstandard  # a mitmproxy dependency

        self._zstd = zstandard.ZstdDecompressor().decompressobj()
        self._error = zstandard.ZstdError

    def decode(self, data: bytes) -> bytes:
        try:
            return bytes(self._zstd.decompress(data))
        except self._error as exc:
            raise DecodeError(str(exc)) from None


class _Brotli:
    def __init__(self) -> None:
        import brotli  # type: ignore[import-untyped]  # a mitmproxy dependency

        self._brotli = brotli.Decompressor()
        self._error = brotli.error

    def decode(self, data: bytes) -> bytes:
        try:
            return bytes(self._brotli.process(data))
        except self._error as exc:
            raise DecodeError(str(exc)) from None


class _Deflate:
    """RFC 9110's deflate is zlib-wrapped, but some servers send it raw: the first two
    bytes tell (a zlib header is CM=8 with a valid check)."""

    def __init__(self) -> None:
        self._inner: _Zlib | None = None
        self._head = b""

    def decode(self, data: bytes) -> bytes:
        if self._inner is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inner = _Zlib(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return self._inner.decode(data)


_DECODERS: dict[str, Callable[[], Decoder]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": _Deflate,
    "zstd": _Zstd,
    "br": _Brotli,
}


def decoder_for(content_encoding: str) -> Decoder | None:
    """A fresh decoder for a single `content-encoding`, or None if there is none for it."""
    factory = _DECODERS.get(content_encoding.strip().lower())
    if factory is None:
        return None
    try:
        return factory()
    except ImportError:
        return None
