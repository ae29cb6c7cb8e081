"""The proxy and the read-back agree on Chat Completions and Anthropic Messages streams
(issue 11), as `test_agreement` shows for Responses: for every real transcript (whole,
cut, stalled) and every fault, the state the proxy's dialect built from the upstream's
events equals the state the read-back (content view, replay) builds from the bytes the
client got, and both equal what the client's events say, read here by the SSE spec's
rules and plain JSON: the outcome, the error, the usage, the model and the content.

Both sides are the one accumulator of the protocol (`accumulate.chat`,
`accumulate.anthropic`), fed by different consumers; the plain reading of the client's
events is what keeps the accumulator itself honest.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from codexfix.accumulate.anthropic import AnthropicAccumulator
from codexfix.accumulate.chat import ChatAccumulator
from codexfix.dialects.anthropic import AnthropicDialect
from codexfix.dialects.chat import ChatDialect
from codexfix.failures import (
    EndCause,
    GraceExpired,
    UpstreamBroken,
    UpstreamEnded,
    UpstreamIdle,
    classify,
)
from codexfix.reassembly import reassemble
from codexfix.reassembly.anthropic import AnthropicBuilder
from codexfix.reassembly.chat import ChatBuilder
from codexfix.reassembly.result import Reassembly
from codexfix.report import Ending, Usage

from support.events import data_only, sse
from support.sse_oracle import client_events
from support.transcripts import ANTHROPIC, CHAT, new_fixer

DONE = b"data: [DONE]\n\n"
CUT, STALL = UpstreamBroken("peer closed"), UpstreamIdle(240.0)

# -- the cases ---------------------------------------------------------------------------


def _chunk(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    """A chunk of one choice: its `delta` and `finish_reason`."""
    return {
        "id": "c1",
        "model": "gpt-4o",
        "choices": [dict(index=index, delta=delta, finish_reason=finish)],
    }


RATE_LIMITED = {
    "error": {
        "message": "Rate limit",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
CHAT_USAGE = {
    "id": "chatcmpl-1",
    "choices": [],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}
CALL = {"index": 0, "id": "call_1", "function": {"name": "get", "arguments": '{"a":'}}
MORE = {"index": 0, "function": {"arguments": "1}"}}


def _chat_faults() -> dict[str, tuple[bytes, EndCause]]:
    head = data_only(_chunk(content="hi"), _chunk(content=" there"))
    nameless = _chunk(finish="stop", content="no id")
    del nameless["id"]  # fails its model: read through its lax twin
    calls = data_only(
        _chunk(tool_calls=[CALL], reasoning="thinks"),
        _chunk(tool_calls=[MORE]),
        _chunk(1, "tool_calls", tool_calls=[dict(CALL, id="call_2")], reasoning_content="hm"),
        _chunk(finish="tool_calls", refusal="no"),
        CHAT_USAGE,
    )
    return {
        "error frame": (head + data_only(RATE_LIMITED, _chunk()), UpstreamEnded()),
        "event error": (head + data_only(RATE_LIMITED, event="error") + DONE, UpstreamEnded()),
        "event error without a body": (head + data_only({"message": "m"}, event="error"), CUT),
        "error that is a string": (head + data_only({"error": "overloaded"}), UpstreamEnded()),
        "done before finish_reason": (head + DONE + data_only(_chunk(1)), UpstreamEnded()),
        "unknown finish_reason": (head + data_only(_chunk(finish="eos"), CHAT_USAGE), CUT),
        "chunk that fails its model": (head + data_only(nameless) + DONE, UpstreamEnded()),
        "a choice after the others finished": (data_only(_chunk(finish="stop"), _chunk(1)), CUT),
        "finished and held open": (head + data_only(_chunk(finish="length")), GraceExpired(1.0)),
        "events after done": (head + data_only(_chunk(finish="stop")) + DONE + head, CUT),
        "tool calls": (calls + DONE, UpstreamEnded()),
        "nothing at all": (b"", UpstreamEnded()),
    }


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "model": "claude-sonnet-4",
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 8, "output_tokens": 1},
    },
}
BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
FINAL = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn"},
    "usage": {"output_tokens": 5},
}
STOP = {"type": "message_stop"}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def _anthropic_faults() -> dict[str, tuple[bytes, EndCause]]:
    head = sse(START, BLOCK, DELTA)
    bad = {"type": "content_block_delta", "index": "zero", "delta": {"type": "text_delta"}}
    # A count of 0 is a count (anthropic-sdk-python keeps any count that is not null).
    zeros = dict(
        FINAL, usage={"input_tokens": 0, "cache_read_input_tokens": None, "output_tokens": 0}
    )
    return {
        "overloaded": (head + sse(OVERLOADED, DELTA, STOP), UpstreamEnded()),
        "data-only frames": (sse(START, BLOCK, DELTA, FINAL, STOP, event_lines=False), CUT),
        "data-only error": (head + sse(OVERLOADED, event_lines=False), UpstreamEnded()),
        "error that is a string": (head + sse({"type": "error", "error": "overloaded"}), CUT),
        "done before message_stop": (head + DONE, UpstreamEnded()),
        "event that fails its model": (head + sse(bad, FINAL, STOP), UpstreamEnded()),
        "usage counts of zero": (head + sse(zeros, STOP), UpstreamEnded()),
        "stop then more, held open": (head + sse(FINAL, STOP, DELTA), GraceExpired(1.0)),
        "nothing at all": (b"", STALL),
    }


def _cases() -> dict[str, tuple[str, bytes, EndCause]]:
    cases: dict[str, tuple[str, bytes, EndCause]] = {}
    for protocol, paths, faults in (
        ("chat", CHAT, _chat_faults()),
        ("anthropic", ANTHROPIC, _anthropic_faults()),
    ):
        for path in paths:
            data = path.read_bytes()
            name = f"{protocol} {path.stem}"
            cases[name] = (protocol, data, UpstreamEnded())
            for share in (3, 2):  # cut a third and half way: mid-stream, mid-event
                cases[f"{name} cut 1/{share}"] = (protocol, data[: len(data) // share], CUT)
            cases[f"{name} stall"] = (protocol, data[: len(data) // 2], STALL)
        for fault, (body, cause) in faults.items():
            cases[f"{protocol} fault {fault}"] = (protocol, body, cause)
    return cases


CASES = _cases()


# -- the test ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_proxy_and_the_read_back_read_a_stream_alike(name: str) -> None:
    protocol, upstream, cause = CASES[name]
    fixer = new_fixer(protocol=protocol)
    dialect = fixer.dialect
    assert isinstance(dialect, ChatDialect | AnthropicDialect)
    # The proxy lets go of what streamed (no repair reads it); here it keeps it too, to be
    # compared, and streams exactly as it does without.
    dialect.state = type(dialect.state)(fixer.report, keep_deltas=True)  # type: ignore[assignment]
    client = fixer.feed(upstream, 0.0) + fixer.finish(cause)
    plain = new_fixer(protocol=protocol)
    assert plain.feed(upstream, 0.0) + plain.finish(cause) == client
    assert plain.report == fixer.report
    report, state = fixer.report, dialect.state
    result = reassemble(client, protocol)

    # What the proxy holds, shown as the read-back shows what it read: the same.
    assert _view(_shown(protocol, state)) == _view(result)
    assert report.usage == result.usage and report.model == result.model
    # ...and what the client's events say, read plainly.
    expected = _says(protocol, client)
    del expected["ended"]
    error = expected.pop("error")
    assert {key: _view(result)[key] for key in expected} == expected
    assert state.error == error
    # The proxy's outcome is the terminal the client read: the upstream's own if it sent
    # one, else the one the proxy injected.
    assert report.outcome is not None
    ended = _says(protocol, upstream)["ended"]
    assert (report.outcome.ending is not Ending.INJECTED) == ended
    if report.outcome.ending is Ending.COMPLETED:
        assert error is None and result.outcome is not None and not result.errors
    elif report.outcome.ending is Ending.ERROR:
        assert result.errors == [str(state.error)]
        assert report.outcome.detail == (classify(*_codes(protocol, error)) or "upstream")
    else:
        assert report.outcome.ending is Ending.INJECTED, report.outcome
        assert result.errors == [str(state.error)] and "codex-fix: " in error[-1]


def _codes(protocol: str, error: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """The codes an upstream error is classified by: Chat's code then type, Anthropic's type."""
    return (error[1], error[0]) if protocol == "chat" else (error[0],)


def _shown(protocol: str, state: ChatAccumulator | AnthropicAccumulator) -> Reassembly:
    """The proxy's state as the read-back shows a state."""
    builder: ChatBuilder | AnthropicBuilder = (
        ChatBuilder() if protocol == "chat" else AnthropicBuilder()
    )
    builder.state = state  # type: ignore[assignment]
    shown = Reassembly(protocol)
    builder.finish(shown)
    return shown


def _view(result: Reassembly) -> dict[str, Any]:
    return {
        "outcome": result.outcome,
        "errors": result.errors,
        "usage": result.usage,
        "model": result.model,
        "text": {part.where: part.text for part in result.text},
        "refusals": {part.where: part.text for part in result.refusals},
        "reasoning": {part.where: part.text for part in result.reasoning},
        "tools": [(c.where, c.name, c.call_id, c.arguments) for c in result.tool_calls],
    }


# -- what the client's events say, read plainly --------------------------------------------


def _says(protocol: str, body: bytes) -> dict[str, Any]:
    return _chat_says(body) if protocol == "chat" else _anthropic_says(body)


def _payloads(body: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """Each event's name and JSON object, as a client dispatches them, up to [DONE]."""
    events = itertools.takewhile(lambda event: event.data != b"[DONE]", client_events(body))
    return [(event.name, json.loads(event.data)) for event in events]


def _error_of(body: object, *keys: str) -> tuple[str | None, ...]:
    body = body if isinstance(body, dict) else {}
    return tuple(body.get(key) if isinstance(body.get(key), str) else None for key in keys)


def _chat_says(client: bytes) -> dict[str, Any]:
    text: dict[str, str] = {}
    reasons: dict[int, str] = {}
    seen: set[int] = set()
    says: dict[str, Any] = {"usage": None, "model": None, "error": None}
    for name, obj in _payloads(client):
        if obj.get("error") or name == "error":  # openai-python's test, Groq's event name
            says["error"] = says["error"] or _error_of(obj.get("error"), "type", "code", "message")
            continue
        says["model"] = obj.get("model") or says["model"]
        if isinstance(usage := obj.get("usage"), dict):
            details = (
                usage.get("prompt_tokens_details") or {},
                usage.get("completion_tokens_details") or {},
            )
            says["usage"] = Usage(
                usage["prompt_tokens"],
                details[0].get("cached_tokens") or 0,
                usage["completion_tokens"],
                details[1].get("reasoning_tokens") or 0,
            )
        for choice in obj.get("choices") or []:
            seen.add(choice["index"])
            if choice["delta"].get("content"):
                where = f"choice {choice['index']}"
                text[where] = text.get(where, "") + choice["delta"]["content"]
            if choice.get("finish_reason"):
                reasons[choice["index"]] = choice["finish_reason"]
    outcome = ",".join(dict.fromkeys(reasons.values())) or None
    ended = says["error"] is not None or (bool(reasons) and seen <= reasons.keys())
    return says | {"text": text, "outcome": outcome, "ended": ended}


def _anthropic_says(client: bytes) -> dict[str, Any]:
    blocks: dict[int, tuple[str, str]] = {}  # index -> block type, its content so far
    counts: dict[str, int] | None = None
    says: dict[str, Any] = {"model": None, "error": None}
    stop_reason, terminal = None, None
    for _, obj in _payloads(client):
        kind, index = obj.get("type"), obj.get("index")
        if terminal is not None:
            continue
        if kind in ("message_start", "message_delta"):
            message = obj.get("message") or {}
            says["model"] = message.get("model") or says["model"]
            usage = obj.get("usage") or message.get("usage")
            # Each count given replaces the one before, 0 included (anthropic-sdk-python).
            counts = (counts or {}) | {k: v for k, v in usage.items() if v is not None}
            stop_reason = (obj.get("delta") or {}).get("stop_reason") or stop_reason
        elif kind == "content_block_start":
            block = obj["content_block"]
            blocks[index] = (block["type"], block.get("text") or block.get("thinking") or "")
        elif kind == "content_block_delta" and isinstance(index, int):
            for key in ("text", "thinking", "partial_json"):
                if isinstance(obj["delta"].get(key), str):
                    blocks[index] = (blocks[index][0], blocks[index][1] + obj["delta"][key])
        elif kind in ("message_stop", "error"):
            terminal = kind
            if kind == "error":
                says["error"] = _error_of(obj["error"], "type", "message")
    return says | {
        "usage": None
        if counts is None
        else Usage(
            counts.get("input_tokens", 0),
            counts.get("cache_read_input_tokens", 0),
            counts.get("output_tokens", 0),
        ),
        "outcome": (stop_reason or "message_stop") if terminal == "message_stop" else None,
        "ended": terminal is not None,
        "text": {f"block {i}": text for i, (kind, text) in blocks.items() if kind == "text"},
    }
