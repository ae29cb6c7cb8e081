"""reassembly: every real transcript read back into text, tool calls and usage; garbage too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexfix.reassembly import detect_protocol, reassemble
from codexfix.report import Usage
from codexfix.sse import SSEFramer

from support.transcripts import FIXTURES

ALL = sorted(FIXTURES.glob("*/*.sse"))
RESPONSES = sorted((FIXTURES / "responses").glob("*.sse"))
CHAT = sorted((FIXTURES / "chat").glob("*.sse"))
ANTHROPIC = sorted((FIXTURES / "anthropic").glob("*.sse"))
# vercel trimmed this recording (SOURCES.md): its final output is not what was streamed.
TRIMMED = "openai-gpt53-codex-phase-commentary-final-TRIMMED.sse"


def payloads(path: Path) -> list[dict[str, Any]]:
    framer = SSEFramer()
    out = []
    for frame in framer.feed(path.read_bytes()) + framer.close():
        if frame.data is not None and frame.data != b"[DONE]":
            out.append(json.loads(frame.data))
    return out


def name(path: Path) -> str:
    return path.name


def protocol_and_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", ALL, ids=protocol_and_name)
def test_protocol_is_detected_from_the_events(path: Path) -> None:
    assert detect_protocol(path.read_bytes()) == path.parent.name
    assert reassemble(path.read_bytes()).protocol == path.parent.name


@pytest.mark.parametrize("path", ALL, ids=protocol_and_name)
def test_one_line_per_event_none_with_a_note(path: Path) -> None:
    body = path.read_bytes()
    result = reassemble(body)
    framer = SSEFramer()
    frames = [f for f in framer.feed(body) + framer.close() if f.data is not None]
    data_lines = [e for e in result.events if e.name != ":"]
    assert len(data_lines) == len(frames)
    assert [e.note for e in data_lines] == [None] * len(frames)
    assert result.trailing == 0


# -- text equals the concatenated deltas ---------------------------------------------------


@pytest.mark.parametrize("path", RESPONSES, ids=name)
def test_responses_text_is_the_concatenated_deltas(path: Path) -> None:
    expected: dict[str, str] = {}
    for p in payloads(path):
        if p["type"] == "response.output_text.delta":
            where = f"output {p['output_index']}/{p['content_index']}"
            expected[where] = expected.get(where, "") + p["delta"]
    got = {part.where: part.text for part in reassemble(path.read_bytes()).text}
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize("path", [p for p in RESPONSES if p.name != TRIMMED], ids=name)
def test_responses_result_matches_the_terminal_output(path: Path) -> None:
    """An independent oracle: the upstream's own final output object."""
    terminal = payloads(path)[-1]["response"]
    text, calls = {}, []
    for i, item in enumerate(terminal.get("output") or []):
        if item["type"] == "message":
            for j, part in enumerate(item["content"]):
                text[f"output {i}/{j}"] = part.get("text", part.get("refusal"))
        elif item["type"] == "function_call":
            calls.append((item["name"], item["call_id"], item["arguments"]))
    result = reassemble(path.read_bytes())
    assert {p.where: p.text for p in result.text + result.refusals} == text
    assert [
        (c.name, c.call_id, c.arguments) for c in result.tool_calls if c.kind == "function_call"
    ] == calls


@pytest.mark.parametrize("path", CHAT, ids=name)
def test_chat_text_is_the_concatenated_deltas(path: Path) -> None:
    content, reasoning = "", ""
    for p in payloads(path):
        for choice in p.get("choices") or []:
            content += choice["delta"].get("content") or ""
            reasoning += choice["delta"].get("reasoning") or ""
    result = reassemble(path.read_bytes())
    assert "".join(part.text for part in result.text) == content
    assert "".join(part.text for part in result.reasoning) == reasoning


@pytest.mark.parametrize("path", ANTHROPIC, ids=name)
def test_anthropic_text_is_the_concatenated_deltas(path: Path) -> None:
    text: dict[int, str] = {}
    thinking = ""
    for p in payloads(path):
        if p["type"] == "content_block_delta" and p["delta"]["type"] == "text_delta":
            text[p["index"]] = text.get(p["index"], "") + p["delta"]["text"]
        if p["type"] == "content_block_delta" and p["delta"]["type"] == "thinking_delta":
            thinking += p["delta"]["thinking"]
    result = reassemble(path.read_bytes())
    assert {part.where: part.text for part in result.text} == {
        f"block {i}": t for i, t in text.items()
    }
    assert "".join(p.text for p in result.reasoning if not p.text.startswith("[redacted")) == (
        thinking
    )


def test_reasoning_summaries_are_reassembled_per_part() -> None:
    path = FIXTURES / "responses" / "openai-o3mini-reasoning-summary-4-parts-long.sse"
    done = [p for p in payloads(path) if p["type"] == "response.reasoning_summary_text.done"]
    result = reassemble(path.read_bytes())
    assert [part.text for part in result.reasoning] == [p["text"] for p in done]
    assert [part.where for part in result.reasoning] == [f"output 0 summary {i}" for i in range(4)]


# -- tool calls --------------------------------------------------------------------------


def test_chat_parallel_tool_calls_with_their_arguments() -> None:
    result = reassemble((FIXTURES / "chat" / "openai-gpt4o-parallel-tool-calls.sse").read_bytes())
    calls = [(c.name, c.call_id, json.loads(c.arguments)) for c in result.tool_calls]
    assert calls == [
        (
            "GetWeatherArgs",
            "call_JMW1whyEaYG438VE1OIflxA2",
            {"city": "Edinburgh", "country": "GB", "units": "c"},
        ),
        (
            "get_stock_price",
            "call_DNYTawLBoN8fj3KN6qU9N1Ou",
            {"ticker": "AAPL", "exchange": "NASDAQ"},
        ),
    ]
    assert result.outcome == "tool_calls"


def test_anthropic_tool_use_blocks_with_their_input() -> None:
    body = (FIXTURES / "anthropic" / "claude-sonnet4-text-then-2-tool-use.sse").read_bytes()
    result = reassemble(body)
    calls = [(c.kind, c.name, c.call_id, json.loads(c.arguments)) for c in result.tool_calls]
    assert calls == [
        ("tool_use", "add", "toolu_01UYxUYC2zRPY8wiutnF48eP", {"a": 2, "b": 3}),
        ("tool_use", "multiply", "toolu_01VaRx1jpWCvPhi7L4kywAcd", {"a": 2, "b": 3}),
    ]
    assert [p.text for p in result.text] == ["I'll add and multiply the numbers 2 and 3 for you."]
    assert result.outcome == "tool_use"


def test_responses_hosted_tool_items_show_their_input() -> None:
    shell = reassemble(
        (FIXTURES / "responses" / "openai-gpt5-codex-local-shell-call.sse").read_bytes()
    ).tool_calls
    assert [(c.kind, json.loads(c.arguments)["command"]) for c in shell] == [
        ("local_shell_call", ["ls", "-a", "~"])
    ]
    custom = reassemble(
        (FIXTURES / "responses" / "openai-custom-tool-call-HANDWRITTEN.sse").read_bytes()
    ).tool_calls
    assert [(c.name, c.arguments) for c in custom] == [
        ("write_sql", "SELECT * FROM users WHERE age > 25")
    ]


# -- usage, outcome, errors ------------------------------------------------------------------


@pytest.mark.parametrize("path", RESPONSES, ids=name)
def test_responses_usage_equals_the_transcript(path: Path) -> None:
    usage = payloads(path)[-1]["response"].get("usage")
    expected = None
    if usage:
        expected = Usage(
            usage["input_tokens"],
            usage["input_tokens_details"]["cached_tokens"],
            usage["output_tokens"],
            usage["output_tokens_details"]["reasoning_tokens"],
        )
    assert reassemble(path.read_bytes()).usage == expected


@pytest.mark.parametrize("path", CHAT, ids=name)
def test_chat_usage_equals_the_transcript(path: Path) -> None:
    usages = [p["usage"] for p in payloads(path) if p.get("usage")]
    expected = None
    if usages:
        u = usages[-1]
        expected = Usage(
            u["prompt_tokens"],
            (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            u["completion_tokens"],
            (u.get("completion_tokens_details") or {}).get("reasoning_tokens", 0),
        )
    assert reassemble(path.read_bytes()).usage == expected


@pytest.mark.parametrize("path", ANTHROPIC, ids=name)
def test_anthropic_usage_equals_the_transcript(path: Path) -> None:
    events = payloads(path)
    start = next(p for p in events if p["type"] == "message_start")["message"]["usage"]
    final = [p for p in events if p["type"] == "message_delta"][-1]["usage"]
    expected = Usage(
        final.get("input_tokens", start["input_tokens"]),
        final.get("cache_read_input_tokens", start.get("cache_read_input_tokens", 0)),
        final["output_tokens"],
        0,
    )
    assert reassemble(path.read_bytes()).usage == expected


def test_failed_response_outcome_and_error() -> None:
    body = (FIXTURES / "responses" / "openai-error-then-response-failed.sse").read_bytes()
    result = reassemble(body)
    assert result.outcome == "failed"
    assert len(result.errors) == 2  # the `error` event, then response.failed's error
    assert all(e.startswith("insufficient_quota: You exceeded") for e in result.errors)


def test_chat_midstream_error_is_an_error_not_an_outcome() -> None:
    body = (FIXTURES / "chat" / "groq-gpt-oss-midstream-event-error.sse").read_bytes()
    result = reassemble(body)
    assert result.outcome is None
    assert result.errors[0].startswith("tool_use_failed: Tool call validation failed")
    assert result.events[-1].name == "error"


def test_stream_end_markers() -> None:
    chat = reassemble((FIXTURES / "chat" / "openai-gpt4o-text-usage-DONE.sse").read_bytes())
    assert chat.done and chat.outcome == "stop" and chat.events[-1].name == "[DONE]"
    codex = reassemble((FIXTURES / "responses" / "codex-backend-gpt5-text.sse").read_bytes())
    assert not codex.done and codex.outcome == "completed"
    assert [e.sequence for e in codex.events] == list(range(19))


def test_a_truncated_body_reports_its_incomplete_last_event() -> None:
    body = (FIXTURES / "responses" / "codex-backend-gpt5-text.sse").read_bytes()
    result = reassemble(body[:-100])
    assert result.outcome is None
    assert result.trailing == len(body.split(b"\n\n")[-2]) + 2 - 100
    assert [p.text for p in result.text] == ["Hey! How can I help you today?"]


# -- garbage --------------------------------------------------------------------------------

GARBAGE = (
    b": keepalive\n\n"
    b"data: {not json\n\n"
    b"data: [1, 2]\n\n"
    b"data: \xff\xfe\n\n"
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"output_index":"x","delta":5}\n\n'
    b'data: {"type":"response.output_item.added","item":[]}\n\n'
    b'event: response.created\ndata: {"type":"response.completed","response":7}\n\n'
    b"data: [DONE]\n\n"
    b'data: {"type":"response.compl'
)


def test_malformed_frames_become_lines_with_a_note() -> None:
    result = reassemble(GARBAGE, "responses")
    notes = {e.index: e.note for e in result.events if e.note}
    assert notes[0] == "comment, no data"
    assert notes[1].startswith("invalid JSON")
    assert notes[2] == "data is a JSON list, not an object"
    assert notes[3].startswith("invalid JSON")
    assert "not a string" in notes[4]
    assert "no item object" in notes[5]
    assert notes[6] == "event name 'response.created' but data type 'response.completed'"
    assert result.events[-1].name == "[DONE]" and result.done
    assert result.trailing == len(b'data: {"type":"response.compl')


@pytest.mark.parametrize("protocol", [None, "responses", "chat", "anthropic"])
def test_wrong_field_types_never_raise(protocol: str | None) -> None:
    shapes: list[object] = [
        {"type": "response.output_item.done", "output_index": 0, "item": {"type": 3}},
        {"type": "response.completed", "response": {"usage": [], "output": {"a": 1}}},
        {"choices": "x", "usage": {"prompt_tokens": "many"}},
        {"choices": [None, {"delta": {"tool_calls": [None, {"function": 3}]}}]},
        {"choices": [{"delta": {"tool_calls": {"index": 0}}, "finish_reason": 1}]},
        {"type": "content_block_start", "index": "1", "content_block": None},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 1}},
        {"type": "message_delta", "delta": [], "usage": {"output_tokens": True}},
        {"type": "message_start", "message": "hi"},
        {"type": "error", "error": "overloaded"},
        {"error": {"message": 5}},
    ]
    body = b"".join(b"data: " + json.dumps(s).encode() + b"\n\n" for s in shapes)
    result = reassemble(body, protocol)
    assert len(result.events) == len(shapes)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([None, "responses", "chat", "anthropic"]))
def test_random_bytes_never_raise(body: bytes, protocol: str | None) -> None:
    reassemble(body, protocol)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "type",
                            "delta",
                            "item",
                            "output_index",
                            "choices",
                            "usage",
                            "index",
                            "content_block",
                            "response",
                            "error",
                            "function",
                            "tool_calls",
                        ]
                    ),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ),
        max_size=6,
    ),
    st.sampled_from([None, "responses", "chat", "anthropic"]),
)
def test_random_json_shapes_never_raise(shapes: list[Any], protocol: str | None) -> None:
    body = b"".join(b"data: " + json.dumps(s).encode() + b"\n\n" for s in shapes)
    result = reassemble(body, protocol)
    assert len(result.events) == len(shapes)
