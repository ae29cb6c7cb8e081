"""The Responses fault matrix: mock-backend scenarios made from one real Codex transcript.

Shared by the end-to-end tests (what codex-fix must make of each fault) and by
`fault_matrix.py` (what clients get with and without codex-fix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mock_backend import Scenario, sse_events

TRANSCRIPT_PATH = (
    Path(__file__).resolve().parent.parent
    / "tests/fixtures/real/responses/codex-backend-gpt5-text.sse"
)
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
    return json.loads(frame.split(b"data: ", 1)[1])


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
    return "".join(
        p["delta"] for p in map(payload, frames) if p["type"] == "response.output_text.delta"
    )


def responses_faults(transcript: bytes | None = None) -> dict[str, Fault]:
    frames = sse_events(transcript or TRANSCRIPT_PATH.read_bytes())
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
