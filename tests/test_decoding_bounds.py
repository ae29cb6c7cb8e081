"""Bounded decoding: decompression bombs decode in slices and stop at a bound, in both
directions (an upstream response, a client's request body)."""

from __future__ import annotations

import gzip
import json
import logging
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from mitmproxy import http

from codexfix import decoding
from codexfix.decoding import SLICE, Bounded, DecodeError, TooLarge, decode_body, decoder_for
from codexfix.mitm import scope
from codexfix.mitm.scope import wants_sse
from codexfix.testing.bodies import compressed

from support.transcripts import chunked, read

MB = 1024 * 1024
ENCODINGS = ["gzip", "deflate", "zstd", "br"]
EVENT = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","item_id":"msg_1","output_index":0,'
    b'"content_index":0,"delta":"bomb "}\n\n'
)
BLOCK = EVENT * (MB // len(EVENT))  # about 1 MiB of SSE
LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})


def fresh(encoding: str, bytewise_brotli: bool) -> decoding.Decoder:
    decoder = decoder_for(encoding)
    assert decoder is not None
    if bytewise_brotli:  # brotli 1.1 (mitmproxy 11) has no output bound: the other path
        assert isinstance(decoder, decoding._Brotli)
        decoder._bounded = False
    return decoder


# Brotli both ways on either mitmproxy: the 1.2 output bound (where installed), bytewise.
CASES = [(e, False) for e in ENCODINGS] + [("br", True)]
IDS = [*ENCODINGS, "br-bytewise"]


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """256 MiB of SSE, each in a few kB to 1 MB of its encoding."""
    return {encoding: compressed(BLOCK, encoding, 256) for encoding in ENCODINGS}


def traced_peak(run: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("encoding", "bytewise"), CASES, ids=IDS)
def test_a_bomb_decodes_in_bounded_slices_and_stops_at_the_bound(
    bombs: dict[str, bytes], encoding: str, bytewise: bool
) -> None:
    bound = Bounded(fresh(encoding, bytewise), 8 * MB)
    sizes: list[int] = []

    def drain() -> None:
        with pytest.raises(TooLarge, match=f"more than {8 * MB} bytes"):
            for chunk in chunked(bombs[encoding], [16 * 1024]):  # as an upstream sends it
                sizes.extend(len(piece) for piece in bound.decode(chunk))

    _, peak = traced_peak(drain)
    assert max(sizes) <= SLICE
    assert 8 * MB - SLICE < sum(sizes) <= 8 * MB  # all that fits, nothing past it
    assert bound.total <= 8 * MB + SLICE  # decoding stopped at the piece that passed
    assert peak < 48 * MB, peak  # of 256 MiB: brotli 1.1 may hold a 16 MiB meta-block


@pytest.mark.parametrize(("encoding", "bytewise"), CASES, ids=IDS)
def test_chunked_input_decodes_to_the_exact_body(encoding: str, bytewise: bool) -> None:
    body = read("codex-backend-gpt5-text.sse") * 40  # several slices
    encoded = compressed(body, encoding)
    for sizes in ([len(encoded)], [1, 7, 300], [4096]):
        decoder = fresh(encoding, bytewise)
        out = b"".join(b"".join(decoder.decode(chunk)) for chunk in chunked(encoded, sizes))
        assert out == body, sizes


def test_a_full_slice_with_output_left_inside_zlib_is_drained() -> None:
    """zlib may hold output after it used all input; a slice that comes back full is
    followed by a call without input."""
    body = bytes(3 * SLICE)  # a whole number of slices, from a few hundred bytes of input
    for encoding, encode in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        decoder = decoder_for(encoding)
        assert decoder is not None
        assert b"".join(decoder.decode(encode(body))) == body


def test_zstd_frames_one_after_another_all_decode() -> None:
    encoded = compressed(b"first ", "zstd") + compressed(b"second", "zstd", 3)
    decoder = decoder_for("zstd")
    assert decoder is not None
    assert b"".join(b"".join(decoder.decode(c)) for c in chunked(encoded, [5])) == (
        b"first secondsecondsecond"
    )


def test_stacked_codings_decode_in_slices_under_one_bound() -> None:
    body = compressed(compressed(BLOCK, "zstd", 64), "gzip")  # zstd, then gzip over it
    bound = Bounded(fresh("zstd, gzip", False), 4 * MB)
    with pytest.raises(TooLarge):
        for piece in bound.decode(body):
            assert len(piece) <= SLICE
    assert bound.total <= 4 * MB + SLICE


def test_decode_body_bounds_identity_and_rejects_what_it_cannot_decode() -> None:
    body = b'{"stream": true}'
    assert decode_body(body, None, 100) is body  # nothing copied
    assert decode_body(body, "identity", 100) is body
    with pytest.raises(TooLarge):
        decode_body(body, None, 10)
    with pytest.raises(DecodeError, match="no decoder for content-encoding 'compress'"):
        decode_body(body, "compress", 100)
    with pytest.raises(DecodeError):
        decode_body(b"not gzip at all", "gzip", 100)
    assert decoder_for("gzip, compress") is None


# -- the request: does it ask for a stream? ---------------------------------------------


def request(body: bytes, encoding: str | None = None, **headers: str) -> http.Request:
    if encoding:
        headers["content-encoding"] = encoding
    req = http.Request.make("POST", "http://127.0.0.1:9/v1/responses")
    req.headers.update(headers)  # (make() drops a content-encoding it cannot encode)
    req.raw_content = body  # as sent: mitmproxy keeps it encoded
    return req


def json_bomb(encoding: str, megabytes: int) -> bytes:
    """A JSON request whose "input" string is `megabytes` MiB long, "stream": true last."""
    return compressed(
        b"x" * MB, encoding, megabytes, head=b'{"model":"gpt-5","input":"', tail=b'","stream":true}'
    )


def test_a_request_bomb_is_read_only_up_to_the_scan_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bomb = request(json_bomb("zstd", 1024), "zstd")  # 1 GiB of JSON in ~32 kB
    assert len(bomb.raw_content or b"") < 64 * 1024
    with caplog.at_level(logging.DEBUG, logger="codexfix"):
        asked, peak = traced_peak(lambda: wants_sse(bomb, 4 * MB, LOG))
    assert asked is False  # not decided by the body: the response's Content-Type decides
    assert peak < 16 * MB, peak
    assert [r.getMessage() for r in caplog.records] == [
        f"request body decodes to more than {4 * MB} bytes (codexfix_max_request_scan): not "
        """read for "stream": true; the response's Content-Type decides"""
    ]


@pytest.mark.parametrize("encoding", [None, *ENCODINGS])
def test_stream_true_anywhere_at_the_top_of_a_body_within_the_bound_asks_for_sse(
    encoding: str | None,
) -> None:
    if encoding is None:
        body = b'{"model":"gpt-5","input":"' + b"x" * (3 * MB) + b'","stream":true}'
    else:
        body = json_bomb(encoding, 3)
    assert wants_sse(request(body, encoding), 4 * MB, LOG)
    assert not wants_sse(request(body, encoding), 2 * MB, LOG)


def nested(depth: int) -> bytes:
    return b'{"stream":true,"input":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("body", "asked"),
    [
        (b'{"stream": true}', True),
        (b'{"stream": false}', False),
        (b'{"stream": "true"}', False),
        (b'{"input": {"stream": true}}', False),  # not at the top
        (b'[{"stream": true}]', False),
        (b'{"stream": true', False),  # not JSON
        (b'"stream"', False),
        (b'{"stream": 1' + b"0" * 5000 + b', "x": 1}', False),  # an int past CPython's limit
        (nested(100_000), False),  # too deep for the parser: not decided, no RecursionError
        (b'{"stream": true, "x": "\\ud83d"}', True),  # a lone surrogate: valid JSON
        (b'{"x": "\\\\ud83d\\uDE00", "stream": true}', True),
        (b'{"x": "\\ud83d, "stream": true}', False),  # still not JSON
    ],
    ids=lambda v: v[:30] if isinstance(v, bytes) else str(v),
)
def test_bodies_that_do_not_ask_plainly_do_not_decide(body: bytes, asked: bool) -> None:
    assert wants_sse(request(body), 64 * MB, LOG) is asked


def test_accept_decides_without_touching_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    def untouchable(*_: object) -> bytes:
        raise AssertionError("the body was read")

    monkeypatch.setattr(scope, "decode_body", untouchable)
    assert wants_sse(request(json_bomb("zstd", 1024), "zstd", accept="text/event-stream"), 1, LOG)


def test_an_undecodable_request_body_does_not_decide(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="codexfix"):
        assert not wants_sse(request(b'{"stream": true}', "zstd"), 64 * MB, LOG)
        assert not wants_sse(request(json.dumps({"stream": True}).encode(), "compress"), 9, LOG)
    assert len(caplog.records) == 2 and all(r.levelno == logging.DEBUG for r in caplog.records)
