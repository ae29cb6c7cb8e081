"""The Responses fault matrix: mock-backend scenarios made from one real Codex transcript.

Shared by the end-to-end tests (what codex-fix must make of each fault) and by
`scripts/fault_matrix.py` and `scripts/demo.py` (what clients get with and without
codex-fix).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .backend import MockBackend
from .bodies import CODEX_TRANSCRIPT, sse_events
from .scenario import Headers, Scenario

CUT = 10  # events delivered before a fault
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Fault:
    """A scenario and what codex-fix must make of it."""

    scenario: Scenario
    description: str
    # Text the injected response.failed message must contain; None: no injection.
    injected: str | None


def payload(frame: bytes) -> dict[str, Any]:
    """The JSON of a frame that `frame()` made."""
    event: dict[str, Any] = json.loads(frame.split(b"data: ", 1)[1])
    return event


def frame(event: dict[str, Any], event_lines: bool = True) -> bytes:
    """One Responses SSE frame, compact JSON, as the OpenAI API writes them."""
    data = b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
    return b"event: " + event["type"].encode() + b"\n" + data if event_lines else data


def rewrite_completed(frames: list[bytes], **changes: Any) -> list[bytes]:
    """The frames with `response.completed`'s response object updated (None deletes)."""
    last = payload(frames[-1])
    assert last["type"] == "response.completed"
    for key, value in changes.items():
        if value is None:
            last["response"].pop(key, None)
        else:
            last["response"][key] = value
    return [*frames[:-1], frame(last)]


def streamed_text(frames: list[bytes]) -> str:
    """The text of the `response.output_text.delta` events among `frames`."""
    return "".join(
        p["delta"] for p in map(payload, frames) if p["type"] == "response.output_text.delta"
    )


def chat_text(frames: list[bytes]) -> str:
    """The text of the Chat Completions chunks among `frames` (`data:` frames)."""
    chunks = [json.loads(f.removeprefix(b"data: ")) for f in frames if b"[DONE]" not in f]
    return "".join(c["delta"].get("content") or "" for p in chunks for c in p["choices"])


def responses_faults(transcript: bytes | None = None) -> dict[str, Fault]:
    """Every fault of the matrix, made from `transcript` (default: the shipped one)."""
    frames = sse_events(transcript or CODEX_TRANSCRIPT.read_bytes())
    head = tuple(frames[:CUT])
    half_event = frames[CUT][: len(frames[CUT]) // 2]
    error = frame(
        {
            "type": "error",
            "sequence_number": CUT,
            "code": "rate_limit_exceeded",
            "message": "Rate limit reached for gpt-5. Please try again in 1.5s.",
        }
    )
    no_done = [f for f in frames if b'"type":"response.output_item.done"' not in f]
    usage = {"input_tokens": 2239}
    return {
        "healthy": Fault(Scenario(parts=tuple(frames)), "healthy stream", None),
        "empty-output": Fault(
            Scenario(parts=tuple(rewrite_completed(frames, output=[]))),
            "completed with `output: []`",
            None,
        ),
        "deltas-only": Fault(
            Scenario(parts=tuple(no_done)),
            "no `output_item.done`, full output in completed",
            None,
        ),
        "no-id-partial-usage": Fault(
            Scenario(parts=tuple(rewrite_completed(frames, id=None, usage=usage))),
            "completed without `response.id`, `usage` without output/total tokens",
            None,
        ),
        "error-then-eof": Fault(
            Scenario(parts=(*head, error)),
            "`error` event (rate limit), then clean EOF",
            "try again in 1.5s",
        ),
        "eof-early": Fault(
            Scenario(parts=head), "clean EOF before `response.completed`", "clean end of body"
        ),
        "done-early": Fault(
            Scenario(parts=(*head, DONE)), "`data: [DONE]` before a terminal", "sent [DONE]"
        ),
        "close-delimited": Fault(
            Scenario(parts=head, framing="close"),
            "close-delimited HTTP/1 body cut short",
            "clean end of body",
        ),
        "cut": Fault(
            Scenario(parts=(*head, half_event), end="cut"),
            "body cut mid-event (h1: incomplete chunked body; h2: RST_STREAM)",
            "upstream closed the stream before response.completed (",
        ),
        "short-content-length": Fault(
            Scenario(
                parts=head,
                framing="content-length",
                content_length=len(b"".join(frames)),
                end="cut",
            ),
            "short content-length",
            "upstream closed the stream before response.completed (",
        ),
        "reset": Fault(
            Scenario(parts=head, end="drop"),
            "TCP reset (h2: connection lost, no GOAWAY)",
            "upstream closed the stream before response.completed (",
        ),
        "stall": Fault(
            Scenario(parts=head, end="stall"), "upstream silent after some deltas", "sent nothing"
        ),
        "hold-open": Fault(
            Scenario(parts=tuple(frames), end="stall"),
            "`response.completed`, then the connection held open",
            None,
        ),
        "no-headers": Fault(
            Scenario(parts=tuple(frames), headers_delay=None),
            "no response headers ever",
            "no response headers within",
        ),
    }


# -- The Codex CLI ------------------------------------------------------------------------
# Faults that matter to the Codex CLI (0.169) in particular, for the tests that run it and
# for scripts/demo.py. A fault may be a sequence: the n-th request gets the n-th scenario
# (the last one repeats), so a retry or the request after a tool call can succeed.

TOOL_CALL_ID = "call_codexfix_get_goal"
OVERLOADED_MESSAGE = "Our servers are currently overloaded. Please try again later."
RATE_LIMIT_MESSAGE = "Rate limit reached for gpt-5. Please try again in 1.5s."
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True)
class CodexFault:
    """What the mock plays, request after request, and what the user must see."""

    scenarios: tuple[Scenario, ...]
    description: str


def error_event(code: str, message: str) -> bytes:
    """An in-stream `error` event, as the Responses API sends one mid-stream."""
    return frame({"type": "error", "sequence_number": CUT, "code": code, "message": message})


def tool_call_turn(frames: list[bytes]) -> list[bytes]:
    """The real transcript's start, then a call of `get_goal`: a Codex tool that takes no
    arguments and touches nothing, so the CLI answers it and asks again."""
    item = {
        "id": "fc_codexfix_get_goal",
        "type": "function_call",
        "status": "completed",
        "arguments": "{}",
        "call_id": TOOL_CALL_ID,
        "name": "get_goal",
    }
    start = frames[:4]  # created, in_progress, the reasoning item added and done
    seq = len(start)
    added = {**item, "status": "in_progress", "arguments": ""}
    events = [
        {"type": "response.output_item.added", "output_index": 1, "item": added},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": item["id"],
            "output_index": 1,
            "delta": "{}",
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": item["id"],
            "output_index": 1,
            "arguments": "{}",
        },
        {"type": "response.output_item.done", "output_index": 1, "item": item},
    ]
    body = [frame({**event, "sequence_number": seq + i}) for i, event in enumerate(events)]
    reasoning = payload(frames[3])["item"]
    completed = rewrite_completed(frames, output=[reasoning, item])[-1]
    last = payload(completed)
    last["sequence_number"] = seq + len(events)
    return [*start, *body, frame(last)]


def codex_faults(transcript: bytes | None = None) -> dict[str, CodexFault]:
    """The faults that matter to the Codex CLI, made from `transcript` (default: the
    shipped one)."""
    frames = sse_events(transcript or CODEX_TRANSCRIPT.read_bytes())
    head = tuple(frames[:CUT])
    healthy = Scenario(parts=tuple(frames))
    faults = responses_faults(transcript)
    shared = {
        name: CodexFault((fault.scenario,), fault.description) for name, fault in faults.items()
    }
    no_id = rewrite_completed(frames, id=None)
    partial_usage = rewrite_completed(frames, usage={"input_tokens": 2239})
    return {
        "healthy": shared["healthy"],
        "deltas-only": shared["deltas-only"],
        "no-id": CodexFault((Scenario(parts=tuple(no_id)),), "completed without `response.id`"),
        "partial-usage": CodexFault(
            (Scenario(parts=tuple(partial_usage)),),
            "completed with `usage` without output/total tokens",
        ),
        "no-id-partial-usage": shared["no-id-partial-usage"],
        "eof-early": shared["eof-early"],
        "cut": shared["cut"],
        "stall": shared["stall"],
        "no-headers": shared["no-headers"],
        "server-error": CodexFault(
            (Scenario(parts=(*head, error_event("server_error", SERVER_ERROR_MESSAGE))),),
            "`error` event (`server_error`), then clean EOF",
        ),
        "overloaded": CodexFault(
            (Scenario(parts=(*head, error_event("server_is_overloaded", OVERLOADED_MESSAGE))),),
            "`error` event (`server_is_overloaded`), then clean EOF",
        ),
        "rate-limit-then-ok": CodexFault(
            (
                Scenario(parts=(*head, error_event("rate_limit_exceeded", RATE_LIMIT_MESSAGE))),
                healthy,
            ),
            '`error` event (`rate_limit_exceeded`, "try again in 1.5s"), then a healthy retry',
        ),
        "tool-call": CodexFault(
            (Scenario(parts=tuple(tool_call_turn(frames))), healthy),
            "a tool call (`get_goal`), then the final answer",
        ),
    }


class SequenceBackend(MockBackend):
    """The mock backend playing `CodexFault`s: the n-th request of a scenario name gets
    the fault's n-th scenario, the last one repeating. `routes` answer fixed paths (by
    suffix, before any scenario name is looked at)."""

    def __init__(
        self,
        faults: Mapping[str, CodexFault],
        routes: Mapping[str, Scenario] | None = None,
        **ports: int,
    ) -> None:
        super().__init__({name: fault.scenarios[0] for name, fault in faults.items()}, **ports)
        self.sequences = {name: fault.scenarios for name, fault in faults.items()}
        self.routes = dict(routes or {})

    def resolve(self, path: str, headers: Headers) -> tuple[str, Scenario]:
        bare = path.split("?", 1)[0]
        route = next((suffix for suffix in self.routes if bare.endswith(suffix)), None)
        if route is not None:
            return route, self.routes[route]
        name, scenario = super().resolve(path, headers)
        sequence = self.sequences.get(name)
        if sequence is not None:  # resolve runs before this request is recorded
            scenario = sequence[min(len(self.requests_for(name)), len(sequence) - 1)]
        return name, scenario
