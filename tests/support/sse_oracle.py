"""An independent reading of what a client receives: the SSE spec's event stream
interpretation, written plainly for tests (slow, obvious), and what each protocol counts
as its terminal.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

LINE_END = re.compile(rb"\r\n|\r|\n")
TERMINALS = {
    "responses": {"response.completed", "response.failed", "response.incomplete"},
    "anthropic": {"message_stop", "error"},
}


class Event(NamedTuple):
    name: str | None
    data: bytes


def client_events(body: bytes) -> list[Event]:
    """The events a spec-following client dispatches from `body` (a trailing event
    without its blank line is not dispatched)."""
    body = body.removeprefix(b"\xef\xbb\xbf")
    lines = LINE_END.split(body)
    lines.pop()  # the text after the last line end: an incomplete line
    events: list[Event] = []
    name: str | None = None
    data: list[bytes] | None = None
    for line in lines:
        if not line:
            if data is not None and data != [b""]:  # an empty data buffer dispatches nothing
                events.append(Event(name, b"\n".join(data)))
            name, data = None, None
            continue
        if line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"data":
            data = [*(data or []), value]
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return events


def loads(data: bytes) -> Any:
    """The event's JSON as a client decodes it (UTF-8 with replacement), or None."""
    try:
        return json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None


def terminal_count(protocol: str, events: list[Event], known: dict[bytes, str]) -> int:
    """How many terminals a client of `protocol` reads. `known`: the type of events whose
    JSON Python cannot load (the test built them, so it knows)."""
    count = 0
    for event in events:
        if protocol == "chat":
            count += event.data == b"[DONE]"
            continue
        obj = loads(event.data)
        event_type = obj.get("type") if isinstance(obj, dict) else known.get(event.data)
        count += event_type in TERMINALS[protocol]
    return count
