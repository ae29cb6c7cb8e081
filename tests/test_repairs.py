"""Repairs of terminal events (issue: behaviour 4) on synthetic and real streams."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from codexfix import UpstreamEnded

from support.events import CREATED, USAGE, completed, delta, item_done, message, msg_added, sse
from support.transcripts import events, new_fixer, read


def run(body: bytes) -> tuple[bytes, Any]:
    fixer = new_fixer()
    out = fixer.feed(body, 0.0) + fixer.finish(UpstreamEnded())
    return out, fixer.report


@pytest.mark.parametrize("output", ["missing", None, "oops", []])
def test_completed_output_is_rebuilt_from_done_items_in_index_order(
    output: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = message("msg_a", "Hello"), message("msg_b", "World")
    response: dict[str, Any] = {"id": "resp_1", "status": "completed", "usage": USAGE}
    if output != "missing":
        response["output"] = output
    body = sse(
        CREATED,
        item_done(1, second, 1),  # done events may come out of index order
        item_done(0, first, 2),
        completed(3, **response),
    )
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        out, report = run(body)
    final = events(out)[-1]
    assert final["response"]["output"] == [first, second]
    assert final["sequence_number"] == 3
    assert report.repairs == ["output"]
    assert sum("repaired output" in r.getMessage() for r in caplog.records) == 1


def test_message_without_done_is_rebuilt_from_its_deltas_and_gets_a_done_event() -> None:
    body = sse(
        CREATED,
        msg_added(0, "msg_1"),
        delta(0, "Hel", 2),
        delta(0, "lo", 3),
        completed(4, id="resp_1", status="completed", output=[], usage=USAGE),
    )
    out, report = run(body)
    payloads = events(out)
    synthesized, final = payloads[-2], payloads[-1]
    expected = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
    }
    assert final["response"]["output"] == [expected]
    assert synthesized == item_done(0, expected, 4)
    assert final["sequence_number"] == 5
    assert report.repairs == ["output", "output_item.done"]
    assert out.startswith(body[: body.index(b"event: response.completed")])


def test_deltas_only_upstream_gets_done_events_before_completed() -> None:
    final_items = [
        message("msg_1", "Hi"),
        {"id": "fc_1", "type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"},
    ]
    body = sse(
        CREATED, delta(0, "Hi", 1), completed(2, id="resp_1", output=final_items, usage=USAGE)
    )
    out, report = run(body)
    payloads = events(out)
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.output_text.delta",
        "response.output_item.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [p["sequence_number"] for p in payloads] == [0, 1, 2, 3, 4]
    assert [p["item"] for p in payloads[2:4]] == final_items
    assert [p["output_index"] for p in payloads[2:4]] == [0, 1]
    assert report.repairs == ["output_item.done"]


def test_completed_without_id_gets_the_created_id() -> None:
    body = sse(CREATED, completed(1, status="completed", output=[], usage=USAGE))
    out, report = run(body)
    assert events(out)[-1]["response"]["id"] == "resp_1"
    assert report.repairs == ["id"]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 7}, {"input_tokens": 7, "output_tokens": 0, "total_tokens": 7}),
        (
            {"input_tokens": 7, "output_tokens": 2},
            {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
        ),
        ({"total_tokens": "x"}, {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0}),
        # Not JSON integers (the Codex CLI rejects them), but they say which integer.
        (
            {"input_tokens": "7", "output_tokens": 2.0, "total_tokens": 9},
            {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9},
        ),
        (
            {"input_tokens": True, "output_tokens": 2, "total_tokens": 2.5},
            {"input_tokens": 0, "output_tokens": 2, "total_tokens": 2},
        ),
    ],
)
def test_partial_usage_is_completed(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    body = sse(CREATED, completed(1, id="resp_1", output=[], usage=usage))
    out, report = run(body)
    assert events(out)[-1]["response"]["usage"] == expected
    assert report.repairs == ["usage"]
    assert report.usage is not None and report.usage.input_tokens == expected["input_tokens"]


def test_repairs_keep_data_only_framing() -> None:
    body = sse(CREATED, completed(1, output=[], usage=USAGE), event_lines=False)
    out, _ = run(body)
    assert b"event:" not in out
    assert events(out)[-1]["response"]["id"] == "resp_1"


def test_real_codex_transcript_with_output_emptied_is_rebuilt_identically() -> None:
    """The April-2026 Codex backend shape: `output: []` in completed."""
    data = read("codex-backend-gpt5-reasoning-parallel-function-calls.sse")
    payloads = events(data)
    original = payloads[-1]["response"]["output"]
    emptied = data.replace(
        b'"output":' + __import__("json").dumps(original, separators=(",", ":")).encode(),
        b'"output":[]',
    )
    assert emptied != data
    out, report = run(emptied)
    assert events(out)[-1]["response"]["output"] == original
    assert report.repairs == ["output"]
