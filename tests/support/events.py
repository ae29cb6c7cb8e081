"""Event builders: SSE bodies from payloads, and the Responses events the unit tests
compose streams of."""

from __future__ import annotations

import json
from typing import Any

from codexfix.testing.faults import frame


def sse(*payloads: dict[str, Any], event_lines: bool = True) -> bytes:
    """A body of Responses or Anthropic events, as their APIs frame them: `event: <type>`
    (unless `event_lines` is false), then the payload as compact JSON."""
    return b"".join(frame(payload, event_lines) for payload in payloads)


def data_only(*payloads: dict[str, Any], event: str | None = None) -> bytes:
    """A body of Chat Completions chunks: `data:` lines only, unless `event` names one
    for every frame."""
    named = f"event: {event}\n".encode() if event else b""
    return b"".join(named + b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)


# -- Responses events ----------------------------------------------------------------------

CREATED = {
    "type": "response.created",
    "sequence_number": 0,
    "response": {"id": "resp_1", "model": "gpt-5", "output": []},
}
USAGE = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}


def msg_added(index: int, item_id: str) -> dict[str, Any]:
    return {
        "type": "response.output_item.added",
        "sequence_number": 1 + 10 * index,
        "output_index": index,
        "item": {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        },
    }


def delta(index: int, text: str, seq: int, item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "sequence_number": seq,
        "item_id": item_id,
        "output_index": index,
        "content_index": 0,
        "delta": text,
    }


def message(item_id: str, text: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def item_done(index: int, item: dict[str, Any], seq: int) -> dict[str, Any]:
    return {
        "type": "response.output_item.done",
        "sequence_number": seq,
        "output_index": index,
        "item": item,
    }


def completed(seq: int, **response: Any) -> dict[str, Any]:
    return {"type": "response.completed", "sequence_number": seq, "response": response}
