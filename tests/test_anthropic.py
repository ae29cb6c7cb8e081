"""Anthropic Messages: an `error` event for every failure, never `[DONE]` or `message_stop`."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from codexfix import GraceExpired, Limits, UpstreamBroken, UpstreamEnded, UpstreamIdle

from support.events import sse
from support.transcripts import events, new_fixer

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "model": "claude-sonnet-4",
        "usage": {"input_tokens": 12, "output_tokens": 1},
    },
}
BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
STOP = {"type": "message_stop"}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def anthropic_fixer(limits: Limits | None = None) -> Any:
    return new_fixer(limits, protocol="anthropic")


@pytest.mark.parametrize(
    ("cause", "error_type", "says"),
    [
        (UpstreamEnded(), "api_error", "before message_stop (clean end of body"),
        (UpstreamBroken("connection reset"), "api_error", "(connection reset)"),
        (UpstreamIdle(240.0), "timeout_error", "sent nothing for 240.0s"),
    ],
    ids=["eof", "reset", "stall"],
)
def test_end_before_message_stop_is_one_error_event(cause: Any, error_type: str, says: str) -> None:
    fixer = anthropic_fixer()
    body = sse(START, BLOCK, DELTA)
    assert fixer.feed(body, 0.0) == body
    tail = fixer.finish(cause)
    assert tail.startswith(b"event: error\ndata: ")
    (error,) = events(tail)  # no [DONE], no message_stop
    assert error["type"] == "error" and error["error"]["type"] == error_type
    assert says in error["error"]["message"]
    assert str(fixer.report.outcome).startswith("injected: ")


def test_nothing_at_all_is_an_error_event_without_message_stop() -> None:
    fixer = anthropic_fixer()
    tail = fixer.finish(UpstreamEnded())
    assert [e["type"] for e in events(tail)] == ["error"]


def test_data_only_error_frame_gets_its_event_line() -> None:
    fixer = anthropic_fixer()
    head = sse(START, BLOCK)
    error = sse(OVERLOADED, event_lines=False)
    out = fixer.feed(head + error, 0.0) + fixer.finish(UpstreamEnded())
    assert out == head + b"event: error\n" + error
    assert fixer.report.repairs == ["event_line"]
    assert str(fixer.report.outcome) == "error: overloaded"


def test_upstream_error_event_is_the_terminal_as_it_is() -> None:
    fixer = anthropic_fixer()
    body = sse(START, OVERLOADED)
    assert fixer.feed(body + sse(DELTA), 0.0) + fixer.finish(UpstreamEnded()) == body


def test_message_stop_then_held_open_ends_within_the_grace_adding_nothing() -> None:
    fixer = anthropic_fixer(Limits(idle_timeout=100, terminal_grace=0.5))
    body = sse(START, BLOCK, DELTA, STOP)
    assert fixer.feed(body, 3.0) == body
    assert fixer.deadline() == 3.5
    cause = fixer.expiry_cause(3.6)
    assert isinstance(cause, GraceExpired)
    assert fixer.finish(cause) == b""
    assert str(fixer.report.outcome) == "completed"


def test_done_before_message_stop_gets_an_error_event_and_no_done_of_ours() -> None:
    fixer = anthropic_fixer()
    body = sse(START, DELTA)
    done = b"data: [DONE]\n\n"
    out = fixer.feed(body + done, 0.0) + fixer.finish(UpstreamEnded())
    assert out.startswith(body) and out.endswith(done) and out.count(b"data: [DONE]") == 1
    assert [e if e == "[DONE]" else e["type"] for e in events(out[len(body) :])] == [
        "error",
        "[DONE]",
    ]


def test_usage_and_model_are_recorded() -> None:
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 42},
    }
    fixer = anthropic_fixer()
    fixer.feed(sse(START, BLOCK, DELTA, delta, STOP), 0.0)
    assert fixer.report.model == "claude-sonnet-4"
    usage = fixer.report.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (12, 42)


def test_a_malformed_event_is_a_warning_and_passes_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = {"type": "content_block_delta", "index": "zero", "delta": {"type": "text_delta"}}
    fixer = anthropic_fixer()
    body = sse(START, bad, STOP)
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        assert fixer.feed(body, 0.0) + fixer.finish(UpstreamEnded()) == body
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "coercion failed: event content_block_delta" in warning and "index" in warning
    assert fixer.report.warnings == 1 and str(fixer.report.outcome) == "completed"
