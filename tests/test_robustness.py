"""Coercion warnings, fail-open and the memory bound (behaviours 6, 7; invariants 5, 6)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexfix import Limits, UpstreamEnded
from codexfix.accumulate.responses import ResponsesAccumulator
from codexfix.dialects.responses import ResponsesDialect
from codexfix.sse import SSEFramer

from support.events import CREATED, USAGE, completed, delta, sse
from support.transcripts import CODEX_BACKEND, chunked, frames, new_fixer


def warnings_of(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_malformed_event_passes_unchanged_with_one_precise_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "output_index": "zero",
        "content_index": 0,
        "delta": "x",
    }
    body = sse(CREATED, bad, completed(5, id="resp_1", output=[], usage=USAGE))
    fixer = new_fixer()
    with caplog.at_level(logging.INFO, logger="codexfix"):
        out = fixer.feed(body, 0.0) + fixer.finish(UpstreamEnded())
    assert out == body
    [warning] = warnings_of(caplog)
    assert "event response.output_text.delta seq 4" in warning
    assert "at response.output_text.delta.output_index" in warning
    assert "valid integer" in warning
    assert '"output_index":"zero"' in warning  # the excerpt
    assert fixer.report.warnings == 1


def test_invalid_json_passes_unchanged_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    body = sse(CREATED) + b"event: response.output_text.delta\ndata: {not json\n\n"
    fixer = new_fixer()
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        out = fixer.feed(body, 0.0)
    assert out == body
    assert "Invalid JSON" in warnings_of(caplog)[0]


def test_unknown_event_types_pass_and_are_noted_once_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unknown = {"type": "codex.rate_limits", "primary": {"used_percent": 3}}
    body = sse(CREATED, unknown, unknown)
    with caplog.at_level(logging.INFO, logger="codexfix"):
        fixer = new_fixer()
        assert fixer.feed(body, 0.0) == body
    infos = warnings_of(caplog, logging.INFO)
    assert infos == ["unknown event type 'codex.rate_limits' passed through (no model for it)"]
    assert fixer.report.warnings == 0


def test_warnings_are_rate_limited_per_stream(caplog: pytest.LogCaptureFixture) -> None:
    bad = b"".join(sse({"type": "response.output_text.delta", "delta": i}) for i in range(50))
    fixer = new_fixer(Limits(warning_limit=5))
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        assert fixer.feed(bad, 0.0) == bad
    assert len(warnings_of(caplog)) == 6  # five, then the notice
    assert fixer.report.warnings == 50


# Mid-stream on the fast path (a handler called from on_events for blocks of simple
# frames), and on the frame-by-frame path (every frame, once the line ends are CRLF).
@pytest.mark.parametrize(
    ("owner", "method", "eol"),
    [
        (ResponsesAccumulator, "_on_output_item", b"\n"),
        (ResponsesDialect, "on_frame", b"\r\n"),
    ],
    ids=["fast", "frames"],
)
def test_internal_error_switches_to_raw_passthrough_losing_nothing(
    owner: type,
    method: str,
    eol: bytes,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = CODEX_BACKEND[0].read_bytes().replace(b"\n", eol)
    calls = 0
    original = getattr(owner, method)

    def flaky(self: object, *args):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")
        return original(self, *args)

    monkeypatch.setattr(owner, method, flaky)
    fixer = new_fixer()
    with caplog.at_level(logging.ERROR, logger="codexfix"):
        out = b"".join(fixer.feed(piece, 0.0) for piece in chunked(data, [777]))
        out += fixer.finish(UpstreamEnded())
    assert out == data
    assert fixer.passthrough and str(fixer.report.outcome) == "passthrough"
    [error] = warnings_of(caplog, logging.ERROR)
    assert "RuntimeError('boom')" in error and "raw passthrough" in error
    assert fixer.deadline() is None


def test_truncated_stream_after_fail_open_is_not_repaired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ResponsesDialect, "finish", lambda self, cause: 1 / 0)
    fixer = new_fixer()
    body = sse(CREATED, delta(0, "x", 1))
    out = fixer.feed(body + b"data: partial", 0.0) + fixer.finish(UpstreamEnded())
    assert out == body


def test_oversized_event_switches_the_stream_to_raw(caplog: pytest.LogCaptureFixture) -> None:
    big = sse(CREATED, delta(0, "x" * 5000, 1), completed(2, id="resp_1", output=[], usage=USAGE))
    fixer = new_fixer(Limits(max_event_size=2048))
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        out = b"".join(fixer.feed(p, 0.0) for p in chunked(big, [100]))
        out += fixer.finish(UpstreamEnded())
    assert out == big
    assert fixer.passthrough
    assert "larger than 2048 bytes" in warnings_of(caplog)[0]


@settings(max_examples=300, deadline=None)
@given(
    garbage=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=20),
)
def test_arbitrary_bytes_never_raise_and_stay_bounded(garbage: bytes, cuts: list[int]) -> None:
    limit = 1024
    fixer = new_fixer(Limits(max_event_size=limit, warning_limit=0))
    out = b""
    for piece in chunked(garbage, cuts):
        out += fixer.feed(piece, 0.0)
        assert fixer._framer.buffered <= limit  # the memory bound holds after every chunk
    out += fixer.finish(UpstreamEnded())
    assert fixer.report.outcome is not None


@settings(max_examples=100, deadline=None)
@given(
    data=st.sampled_from(CODEX_BACKEND).map(lambda p: p.read_bytes()),
    cut=st.floats(min_value=0, max_value=1),
    sizes=st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=10),
)
def test_output_depends_only_on_bytes_not_on_chunking(
    data: bytes, cut: float, sizes: list[int]
) -> None:
    prefix = data[: int(len(data) * cut)]
    whole = new_fixer()
    expected = whole.feed(prefix, 0.0) + whole.finish(UpstreamEnded())
    pieces = new_fixer()
    got = b"".join(pieces.feed(p, 0.0) for p in chunked(prefix, sizes))
    got += pieces.finish(UpstreamEnded())
    if b"\n\n" not in prefix:  # no response.created yet: the failure gets a fresh id
        expected, got = (
            json.loads(frames(b)[0].split(b"data: ", 1)[1])["response"]["status"]
            for b in (expected, got)
        )
    assert got == expected


def test_framer_error_at_the_end_still_forwards_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SSEFramer, "push_final", lambda self: 1 / 0)
    fixer = new_fixer()
    body = sse(CREATED) + b"data: partial"
    out = fixer.feed(body, 0.0) + fixer.finish(UpstreamEnded())
    assert out == body  # raw passthrough: nothing lost, nothing added
    assert fixer.report.bytes_in == fixer.report.bytes_out == len(body)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["fast path", "frames"])
def test_every_event_is_validated_once_a_failing_one_and_a_terminal_to_repair_too(
    eol: bytes,
) -> None:
    bad = {"type": "response.output_text.delta", "output_index": "zero", "delta": "x"}
    body = sse(CREATED, delta(0, "a", 1), bad, completed(3, id="resp_1")).replace(b"\n", eol)
    fixer = new_fixer()
    coercer = fixer.dialect.coercer  # type: ignore[attr-defined]
    validated: list[bytes] = []
    validate = coercer.validate

    def counting(data: bytes) -> object:
        validated.append(data)
        return validate(data)

    coercer.validate = counting
    fixer.feed(body, 0.0)
    assert len(validated) == 4, validated  # created, delta, the bad one, the terminal
    assert "output" in fixer.report.repairs  # the terminal was repaired, after one check
