"""Failures end the stream with exactly one terminal, then [DONE] (behaviour 5)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from codexfix import GraceExpired, Limits, UpstreamBroken, UpstreamEnded, UpstreamIdle

from support.events import CREATED, USAGE, completed, delta, item_done, message, msg_added, sse
from support.transcripts import events, new_fixer, read

DONE = b"data: [DONE]\n\n"


def error_event(**fields: Any) -> dict[str, Any]:
    return {"type": "error", "sequence_number": 5, **fields}


def failed_of(out: bytes) -> dict[str, Any]:
    payloads = events(out)
    assert payloads[-1] == "[DONE]" and out.endswith(DONE)
    assert (
        sum(
            1
            for p in payloads
            if p != "[DONE]"
            and p["type"].startswith("response.")
            and p["type"] in {"response.completed", "response.failed", "response.incomplete"}
        )
        == 1
    )
    assert payloads[-2]["type"] == "response.failed"
    return payloads[-2]


@pytest.mark.parametrize(
    "error",
    [
        error_event(
            code="rate_limit_exceeded", message="Rate limit reached. Please try again in 1.5s."
        ),
        error_event(
            error={
                "type": "rate_limit_exceeded",
                "code": "rate_limit_exceeded",
                "message": "Rate limit reached. Please try again in 1.5s.",
            }
        ),
    ],
    ids=["top-level", "nested"],
)
def test_upstream_error_then_eof_becomes_response_failed_with_its_code(
    error: dict[str, Any],
) -> None:
    body = sse(CREATED, error)
    fixer = new_fixer()
    out = fixer.feed(body, 0.0) + fixer.finish(UpstreamEnded())
    assert out.startswith(body)
    failed = failed_of(out)
    assert failed["response"]["error"] == {
        "code": "rate_limit_exceeded",
        "message": "Rate limit reached. Please try again in 1.5s.",
    }
    assert failed["response"]["id"] == "resp_1"
    assert failed["sequence_number"] == 6
    assert str(fixer.report.outcome) == "injected: upstream rate_limited"


def test_upstream_error_followed_by_its_own_failed_is_left_alone() -> None:
    data = read("openai-error-then-response-failed.sse")
    fixer = new_fixer()
    assert fixer.feed(data, 0.0) + fixer.finish(UpstreamEnded()) == data


def test_upstream_error_with_the_connection_held_open_ends_after_the_grace() -> None:
    fixer = new_fixer(Limits(idle_timeout=100, terminal_grace=0.5))
    fixer.feed(sse(CREATED, error_event(code="server_is_overloaded", message="busy")), 10.0)
    assert fixer.deadline() == 10.5
    cause = fixer.expiry_cause(10.6)
    assert isinstance(cause, GraceExpired)
    assert failed_of(fixer.finish(cause))["response"]["error"]["code"] == "server_is_overloaded"


def test_done_without_terminal_gets_a_failure_before_it() -> None:
    body = sse(CREATED, delta(0, "x", 1), event_lines=False) + DONE
    fixer = new_fixer()
    out = fixer.feed(body, 0.0) + fixer.finish(UpstreamEnded())
    assert out.count(DONE) == 1 and b"event:" not in out
    failed = failed_of(out)
    assert (
        failed["response"]["error"]["message"]
        == "codex-fix: upstream sent [DONE] before response.completed"
    )


def test_idle_stream_ends_with_server_error_and_the_items_so_far() -> None:
    item = message("msg_1", "partial answer")
    fixer = new_fixer(Limits(idle_timeout=30, terminal_grace=1))
    fixer.feed(sse(CREATED, msg_added(0, "msg_1"), item_done(0, item, 2)), 100.0)
    assert fixer.deadline() == 130.0
    cause = fixer.expiry_cause(131.0)
    assert cause == UpstreamIdle(31.0)
    failed = failed_of(fixer.finish(cause))
    assert failed["response"]["error"]["code"] == "server_error"
    assert "sent nothing for 31.0s" in failed["response"]["error"]["message"]
    assert failed["response"]["output"] == [item]
    assert failed["response"]["status"] == "failed"
    assert str(fixer.report.outcome) == "injected: idle"


def test_idle_timeout_zero_means_no_deadline() -> None:
    fixer = new_fixer(Limits(idle_timeout=0))
    fixer.feed(sse(CREATED), 0.0)
    assert fixer.deadline() is None


def test_terminal_then_held_open_ends_within_grace_with_done_only() -> None:
    fixer = new_fixer(Limits(idle_timeout=100, terminal_grace=0.25))
    body = sse(CREATED, completed(1, id="resp_1", output=[], usage=USAGE))
    assert fixer.feed(body, 5.0) == body
    assert fixer.deadline() == 5.25
    assert fixer.feed(b": keepalive\n\n", 5.1) == b""  # nothing after the terminal
    assert fixer.deadline() == 5.25  # keepalives do not extend the grace
    cause = fixer.expiry_cause(5.3)
    assert isinstance(cause, GraceExpired)
    assert fixer.finish(cause) == DONE
    assert str(fixer.report.outcome) == "completed"


def test_events_after_the_terminal_are_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fixer = new_fixer()
    body = sse(CREATED, completed(1, id="resp_1", output=[], usage=USAGE))
    extra = sse(delta(0, "late", 2), delta(0, "later", 3))
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        out = fixer.feed(body + extra, 0.0) + fixer.finish(UpstreamEnded())
    assert out == body
    assert sum("after response.completed" in r.getMessage() for r in caplog.records) == 1


def test_transport_error_after_the_terminal_adds_only_done() -> None:
    fixer = new_fixer()
    body = sse(CREATED, completed(1, id="resp_1", output=[], usage=USAGE))
    assert fixer.feed(body, 0.0) + fixer.finish(UpstreamBroken("reset")) == body + DONE


def test_failure_without_created_synthesizes_one_with_a_generated_id() -> None:
    fixer = new_fixer()
    out = fixer.finish(UpstreamEnded())
    created, failed, done = events(out)
    assert created["type"] == "response.created" and done == "[DONE]"
    assert created["response"]["status"] == "in_progress"
    assert failed["response"]["id"] == created["response"]["id"]
    assert failed["response"]["id"].startswith("resp_codexfix_")
    # Numbered and with a model, as the AI SDK's schemas require (issue 13): nothing was
    # numbered, so from 0; no request told the model.
    assert (created["sequence_number"], failed["sequence_number"]) == (0, 1)
    assert created["response"]["model"] == ""
