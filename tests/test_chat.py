"""Chat Completions: `finish_reason` is authoritative, failures end with an error frame."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from codexfix import GraceExpired, Limits, UpstreamBroken, UpstreamEnded, UpstreamIdle

from support.events import data_only
from support.transcripts import events, new_fixer

DONE = b"data: [DONE]\n\n"


def chunk(index: int = 0, content: str | None = "hi", finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [choice],
    }


def chat_fixer(limits: Limits | None = None) -> Any:
    return new_fixer(limits, protocol="chat")


def injected_error(tail: bytes) -> dict[str, Any]:
    error, done = events(tail)
    assert done == "[DONE]" and tail.endswith(DONE)
    assert set(error["error"]) == {"message", "type", "param", "code"}
    return dict(error["error"])


def test_finish_reason_without_done_gets_done_appended_as_a_normal_completion() -> None:
    fixer = chat_fixer()
    body = data_only(chunk(), chunk(content=None, finish="stop"))
    assert fixer.feed(body, 0.0) == body
    assert fixer.finish(UpstreamEnded()) == DONE
    assert str(fixer.report.outcome) == "completed"
    assert fixer.report.repairs == ["done"]


@pytest.mark.parametrize(
    "cause", [UpstreamBroken("reset"), UpstreamIdle(5.0), GraceExpired(1.0)], ids=repr
)
def test_after_every_choice_finished_any_end_is_a_normal_completion(cause: Any) -> None:
    fixer = chat_fixer()
    fixer.feed(data_only(chunk(finish="length")), 0.0)
    assert fixer.finish(cause) == DONE


def test_finished_stream_held_open_ends_within_the_grace() -> None:
    fixer = chat_fixer(Limits(idle_timeout=100, terminal_grace=0.5))
    fixer.feed(data_only(chunk()), 1.0)
    assert fixer.deadline() == 101.0
    fixer.feed(data_only(chunk(content=None, finish="stop")), 2.0)
    assert fixer.deadline() == 2.5
    cause = fixer.expiry_cause(2.6)
    assert isinstance(cause, GraceExpired)
    assert fixer.finish(cause) == DONE


def test_a_choice_that_starts_after_the_others_finished_reopens_the_stream() -> None:
    fixer = chat_fixer(Limits(idle_timeout=100, terminal_grace=0.5))
    fixer.feed(data_only(chunk(0, finish="stop")), 1.0)
    assert fixer.deadline() == 1.5
    fixer.feed(data_only(chunk(1, "second")), 1.2)
    assert fixer.deadline() == 101.2
    tail = fixer.finish(UpstreamEnded())
    assert injected_error(tail)["code"] == "server_error"


@pytest.mark.parametrize(
    ("cause", "code", "says"),
    [
        (UpstreamEnded(), "server_error", "clean end of body without a terminal event"),
        (UpstreamBroken("peer closed connection"), "server_error", "(peer closed connection)"),
        (UpstreamIdle(240.0), "timeout", "sent nothing for 240.0s"),
    ],
    ids=["eof", "reset", "stall"],
)
def test_end_before_finish_reason_is_an_error_frame_then_done(
    cause: Any, code: str, says: str
) -> None:
    fixer = chat_fixer()
    body = data_only(chunk(), chunk(content=" there"))
    assert fixer.feed(body, 0.0) == body
    error = injected_error(fixer.finish(cause))
    assert error["type"] == "server_error" and error["code"] == code and error["param"] is None
    assert error["message"].startswith("codex-fix: upstream ") and says in error["message"]
    assert str(fixer.report.outcome).startswith("injected: ")


def test_two_choices_are_complete_only_when_both_finished() -> None:
    fixer = chat_fixer()
    fixer.feed(data_only(chunk(0), chunk(1), chunk(0, None, "stop")), 0.0)
    assert injected_error(fixer.finish(UpstreamEnded()))["code"] == "server_error"
    fixer = chat_fixer()
    fixer.feed(data_only(chunk(0), chunk(1), chunk(0, None, "stop"), chunk(1, None, "stop")), 0.0)
    assert fixer.finish(UpstreamEnded()) == DONE


def test_done_before_finish_reason_gets_an_error_frame_before_it() -> None:
    fixer = chat_fixer()
    out = fixer.feed(data_only(chunk()) + DONE, 0.0) + fixer.finish(UpstreamEnded())
    assert out.endswith(DONE) and events(out).count("[DONE]") == 1
    error = injected_error(out[len(data_only(chunk())) :])
    assert error["message"] == "codex-fix: upstream sent [DONE] before finish_reason"


@pytest.mark.parametrize("event", [None, "error"], ids=["data-only", "groq-event-error"])
def test_upstream_error_passes_unchanged_and_only_done_follows(event: str | None) -> None:
    error = {
        "error": {
            "message": "Rate limit reached",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    fixer = chat_fixer()
    body = data_only(chunk()) + data_only(error, event=event)
    assert fixer.feed(body, 0.0) == body
    assert fixer.finish(UpstreamEnded()) == DONE  # never a second error frame
    assert str(fixer.report.outcome) == "error: rate_limited"


def test_events_after_done_are_dropped() -> None:
    fixer = chat_fixer()
    body = data_only(chunk(finish="stop")) + DONE
    assert fixer.feed(body + data_only(chunk(1)), 0.0) + fixer.finish(UpstreamEnded()) == body


def test_unknown_finish_reason_is_a_warning_and_still_finishes_the_choice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fixer = chat_fixer()
    body = data_only(chunk(finish="eos"))
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        assert fixer.feed(body, 0.0) == body
    assert fixer.finish(UpstreamEnded()) == DONE
    (warning,) = [r.getMessage() for r in caplog.records if "coercion failed" in r.getMessage()]
    assert "choices.0.finish_reason" in warning
    assert fixer.report.warnings == 1


def test_usage_chunk_is_recorded() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    fixer = chat_fixer()
    fixer.feed(
        data_only(chunk(finish="stop"), {"id": "c", "choices": [], "usage": usage}) + DONE, 0.0
    )
    usage_seen = fixer.report.usage
    assert usage_seen is not None
    assert (usage_seen.input_tokens, usage_seen.cached_tokens) == (10, 4)
    assert (usage_seen.output_tokens, usage_seen.reasoning_tokens) == (5, 2)
