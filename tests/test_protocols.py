"""Protocol detection and the one error-class table."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from codexfix import UpstreamEnded
from codexfix.failures import ERROR_TABLE, FailureClass, classify, responses_code

from support.events import sse
from support.transcripts import ALL, events, new_fixer, read


@pytest.mark.parametrize(("protocol", "path"), ALL, ids=[p.name for _, p in ALL])
def test_the_first_event_tells_the_protocol(protocol: str, path: Path) -> None:
    fixer = new_fixer(protocol=None)
    fixer.feed(path.read_bytes(), 0.0)
    assert fixer.report.protocol == protocol


def test_a_stream_of_another_protocol_passes_untouched(caplog: pytest.LogCaptureFixture) -> None:
    data = read("openai-gpt4o-text-usage-DONE.sse", "chat")
    fixer = new_fixer(protocol="responses")  # the path said Responses
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        out = fixer.feed(data[:100], 0.0) + fixer.feed(data[100:], 0.0)
        out += fixer.finish(UpstreamEnded())
    assert out == data
    assert str(fixer.report.outcome) == "passthrough"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "does not look like responses" in warning


def test_a_truncated_stream_of_another_protocol_gets_nothing_injected() -> None:
    data = read("claude3opus-text-whitespace-padding.sse", "anthropic")
    fixer = new_fixer(protocol="chat")
    cut = data[: len(data) // 2]
    assert fixer.feed(cut, 0.0) + fixer.finish(UpstreamEnded()) == cut


def test_a_stream_no_event_tells_passes_untouched(caplog: pytest.LogCaptureFixture) -> None:
    data = b': hello\n\ndata: {"status": "ok"}\n\ndata: {"status": "more"}\n\n'
    fixer = new_fixer(protocol=None)
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        assert fixer.feed(data, 0.0) + fixer.finish(UpstreamEnded()) == data
    assert len(caplog.records) == 1 and str(fixer.report.outcome) == "passthrough"


@pytest.mark.parametrize(
    ("codes", "cls"),
    [
        (("rate_limit_exceeded",), FailureClass.RATE_LIMITED),
        (("rate_limit_error",), FailureClass.RATE_LIMITED),
        (("overloaded_error",), FailureClass.OVERLOADED),
        (("server_is_overloaded",), FailureClass.OVERLOADED),
        (("context_length_exceeded",), FailureClass.CONTEXT_LENGTH),
        (("billing_error",), FailureClass.QUOTA),
        (("insufficient_quota",), FailureClass.QUOTA),
        (("authentication_error",), FailureClass.AUTH),
        (("invalid_api_key",), FailureClass.AUTH),
        (("invalid_request_error",), FailureClass.INVALID_REQUEST),
        (("api_error",), FailureClass.SERVER_ERROR),
        ((None, "something_new", "server_error"), FailureClass.SERVER_ERROR),
        (("something_new",), None),
    ],
)
def test_upstream_codes_of_every_protocol_have_a_class(
    codes: tuple[str | None, ...], cls: FailureClass | None
) -> None:
    assert classify(*codes) == cls


def test_every_class_has_a_frame_in_every_protocol() -> None:
    assert set(ERROR_TABLE) == set(FailureClass)
    for row in ERROR_TABLE.values():
        assert row.responses and all(row.chat) and row.anthropic


def test_responses_codes_are_kept_and_foreign_ones_translated() -> None:
    assert responses_code("slow_down") == "slow_down"
    assert responses_code("usage_not_included") == "usage_not_included"
    assert responses_code("overloaded_error") == "server_is_overloaded"  # Codex stops at once
    assert responses_code("rate_limit_error") == "rate_limit_exceeded"
    assert responses_code("weird_new_code") == "weird_new_code"


def test_a_gateway_relaying_an_anthropic_error_on_responses_gets_the_codex_code() -> None:
    created = {"type": "response.created", "response": {"id": "resp_9", "output": []}}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fixer = new_fixer()
    out = fixer.feed(sse(created, error), 0.0) + fixer.finish(UpstreamEnded())
    failed = events(out)[-2]
    assert failed["response"]["error"] == {"code": "server_is_overloaded", "message": "Overloaded"}
    assert str(fixer.report.outcome) == "injected: upstream overloaded"
