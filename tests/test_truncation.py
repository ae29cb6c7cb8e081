"""Truncation at every byte offset of every Codex-backend, chat and Anthropic transcript.

The fixer is fed one byte at a time (the worst chunking); at every offset a copy of it
is ended as if the upstream stopped there. Each copy must deliver every complete
upstream event in order, byte-identical, then exactly one terminal, then [DONE].
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexfix import StreamFixer, UpstreamBroken, UpstreamEnded
from codexfix.failures import EndCause

from support.transcripts import ANTHROPIC, CHAT, CODEX_BACKEND, events, frames, new_fixer

TERMINALS = {"response.completed", "response.failed", "response.incomplete"}
REBUILT = {"message", "function_call"}  # items the deltas give whole
DONE = b"data: [DONE]\n\n"


def fork(fixer: StreamFixer) -> StreamFixer:
    """A copy of the fixer's state; logger and models are shared, not copied."""
    shared = [fixer.log, fixer.dialect.coercer, fixer.budget]  # type: ignore[attr-defined]
    return copy.deepcopy(fixer, {id(obj): obj for obj in shared})


@pytest.mark.parametrize("path", CODEX_BACKEND, ids=lambda p: p.name)
def test_truncation_at_any_offset_yields_one_terminal(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="codexfix")  # one warning per offset otherwise
    created_id = events(path.read_bytes())[0]["response"]["id"]
    for offset, upstream, cause, tail in endings(path):
        added = events(tail)
        if [p for p in upstream if p["type"] in TERMINALS]:
            # The upstream's own terminal is the only one; [DONE] only if we ended it.
            assert tail == (b"" if isinstance(cause, UpstreamEnded) else DONE)
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
            output = injected["response"]["output"]
            assert output[: len(done_items)] == done_items
            assert_in_progress(output[len(done_items) :], upstream)


def assert_in_progress(items: list[dict[str, Any]], upstream: list[Any]) -> None:
    """Items after the finished ones are those in progress that deltas give whole, marked
    `incomplete`, holding the text that streamed (issue 13: clients keep it)."""
    added = {p["output_index"]: p["item"] for p in upstream if p["type"].endswith("item.added")}
    done = {p["output_index"] for p in upstream if p["type"] == "response.output_item.done"}
    expected = [i for i in sorted(added) if i not in done and added[i]["type"] in REBUILT]
    assert [item["id"] for item in items] == [added[i]["id"] for i in expected]
    for index, item in zip(expected, items, strict=True):
        assert item["status"] == "incomplete" and item["type"] == added[index]["type"]
        deltas = "".join(
            p["delta"]
            for p in upstream
            if p["type"].endswith("output_text.delta") and p["output_index"] == index
        )
        texts = "".join(part["text"] for part in item.get("content", []))
        assert texts == deltas


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
    assert str(fixer.report.outcome) == "injected: truncated"
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


def endings(path: Path) -> Iterator[tuple[int, list[Any], EndCause, bytes]]:
    """For every offset: the payloads of the complete upstream frames, the way the upstream
    ended there (clean or broken, alternately) and what a fork of the fixer added for it.

    The fixer is fed byte by byte and must have forwarded exactly the complete frames,
    byte-identical.
    """
    data = path.read_bytes()
    upstream_frames = frames(data)
    payloads = [next(iter(events(raw)), None) for raw in upstream_frames]  # None: a comment
    boundaries = [0]
    for raw in upstream_frames:
        boundaries.append(boundaries[-1] + len(raw))
    fixer = new_fixer(protocol=path.parent.name)
    forwarded = 0
    complete = 0
    for offset in range(len(data) + 1):
        if offset:
            out = fixer.feed(data[offset - 1 : offset], 0.0)
            assert out == data[forwarded : forwarded + len(out)]
            forwarded += len(out)
        while complete < len(upstream_frames) and boundaries[complete + 1] <= offset:
            complete += 1
        assert forwarded == boundaries[complete], offset
        cause = UpstreamEnded() if offset % 2 else UpstreamBroken("connection reset")
        upstream = [p for p in payloads[:complete] if p is not None]
        yield offset, upstream, cause, fork(fixer).finish(cause)


def all_choices_finished(payloads: list[Any]) -> bool:
    seen: set[int] = set()
    finished: set[int] = set()
    for payload in payloads:
        for choice in payload.get("choices", []) if isinstance(payload, dict) else []:
            seen.add(choice["index"])
            if choice.get("finish_reason"):
                finished.add(choice["index"])
    return bool(finished) and seen == finished


@pytest.mark.parametrize("path", CHAT, ids=lambda p: p.name)
def test_chat_truncation_at_any_offset_yields_one_terminal(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="codexfix")
    for offset, upstream, _, tail in endings(path):
        if "[DONE]" in upstream:
            assert tail == b"", offset
        elif any(isinstance(p, dict) and "error" in p for p in upstream):
            assert tail == DONE, offset  # the upstream's error is the terminal
        elif all_choices_finished(upstream):
            assert tail == DONE, offset  # a normal completion
        else:
            error, done = events(tail)
            assert done == "[DONE]" and tail.endswith(DONE), offset
            assert error["error"]["type"] == "server_error"
            assert error["error"]["code"] == "server_error"
            assert error["error"]["param"] is None
            assert error["error"]["message"].startswith("codex-fix: upstream closed")


@pytest.mark.parametrize("path", ANTHROPIC, ids=lambda p: p.name)
def test_anthropic_truncation_at_any_offset_yields_one_terminal(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="codexfix")
    for offset, upstream, _, tail in endings(path):
        if any(p != "[DONE]" and p["type"] == "message_stop" for p in upstream):
            assert tail == b"", offset
            continue
        assert tail.startswith(b"event: error\ndata: "), offset
        (error,) = events(tail)
        assert error["type"] == "error" and error["error"]["type"] == "api_error"
        assert error["error"]["message"].startswith("codex-fix: upstream closed")
