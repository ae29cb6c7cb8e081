"""Truncation at every byte offset of every Codex-backend transcript.

The fixer is fed one byte at a time (the worst chunking); at every offset a copy of it
is ended as if the upstream stopped there. Each copy must deliver every complete
upstream event in order, byte-identical, then exactly one terminal, then [DONE].
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

from codexfix import StreamFixer, UpstreamBroken, UpstreamEnded

from transcripts import CODEX_BACKEND, events, frames, new_fixer

TERMINALS = {"response.completed", "response.failed", "response.incomplete"}


def fork(fixer: StreamFixer) -> StreamFixer:
    """A copy of the fixer's state; logger and models are shared, not copied."""
    shared = [fixer.log, fixer.dialect.coercer, fixer.budget]  # type: ignore[attr-defined]
    return copy.deepcopy(fixer, {id(obj): obj for obj in shared})


@pytest.mark.parametrize("path", CODEX_BACKEND, ids=lambda p: p.name)
def test_truncation_at_any_offset_yields_one_terminal(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="codexfix")  # one warning per offset otherwise
    data = path.read_bytes()
    upstream_frames = frames(data)
    payloads = events(data)
    assert len(payloads) == len(upstream_frames)
    boundaries = [0]
    for raw in upstream_frames:
        boundaries.append(boundaries[-1] + len(raw))
    created_id = payloads[0]["response"]["id"]

    fixer = new_fixer()
    forwarded = 0  # bytes the client got so far, checked against the upstream's
    complete = 0  # upstream frames complete so far
    for offset in range(len(data) + 1):
        if offset:
            out = fixer.feed(data[offset - 1 : offset], 0.0)
            assert out == data[forwarded : forwarded + len(out)]
            forwarded += len(out)
        while complete < len(upstream_frames) and boundaries[complete + 1] <= offset:
            complete += 1
        assert forwarded == boundaries[complete]  # every complete event, nothing more

        cause = UpstreamEnded() if offset % 2 else UpstreamBroken("connection reset")
        tail = fork(fixer).finish(cause)
        upstream = payloads[:complete]
        upstream_terminals = [p for p in upstream if p["type"] in TERMINALS]
        added = events(tail)
        if upstream_terminals:
            # The upstream's own terminal is the only one; [DONE] only if we ended it.
            assert tail == (b"" if isinstance(cause, UpstreamEnded) else b"data: [DONE]\n\n")
            continue
        if not upstream:  # nothing came: the failure gets a response.created of its own
            created = added.pop(0)
            assert created["type"] == "response.created"
        assert len(added) == 2 and added[1] == "[DONE]", offset
        injected = added[0]
        assert injected["type"] == "response.failed"
        assert injected["response"]["error"]["code"] == "server_error"
        assert injected["response"]["error"]["message"].startswith("codex-fix: upstream closed")
        if upstream:
            assert injected["response"]["id"] == created_id
            assert injected["sequence_number"] == upstream[-1]["sequence_number"] + 1
            done_items = [p["item"] for p in upstream if p["type"] == "response.output_item.done"]
            assert injected["response"]["output"] == done_items


def test_injected_failure_names_the_transport_error() -> None:
    data = CODEX_BACKEND[0].read_bytes()
    fixer = new_fixer()
    out = fixer.feed(data[: len(data) // 2], 0.0)
    out += fixer.finish(
        UpstreamBroken("peer closed connection without sending complete message body")
    )
    failed = events(out)[-2]
    assert failed["response"]["error"]["message"] == (
        "codex-fix: upstream closed the stream before response.completed "
        "(peer closed connection without sending complete message body)"
    )
    assert fixer.report.outcome == "injected: truncated"
    assert "dropped incomplete trailing event" in fixer.report.notes[0]


def test_finish_is_idempotent() -> None:
    fixer = new_fixer()
    fixer.feed(CODEX_BACKEND[0].read_bytes()[:500], 0.0)
    first = fixer.finish(UpstreamEnded())
    assert first and fixer.finish(UpstreamEnded()) == b""
    assert [e if e == "[DONE]" else e["type"] for e in events(first)] == [
        "response.created",  # not yet complete upstream: synthesized
        "response.failed",
        "[DONE]",
    ]
