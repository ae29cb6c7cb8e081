"""Hostile events (issue 10): JSON values that Python or pydantic choke on, or of the
wrong type, put into real Codex events; the event classes and the bodies of no known
protocol that the unit fuzz (test_hostile) and the end-to-end sample (test_e2e_hostile)
send; and the check that a client reads exactly one terminal, by `sse_oracle`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from .sse_oracle import TERMINALS, Event, client_events, loads, terminal_count
from .transcripts import CODEX_BACKEND, frames

# -- building hostile events ------------------------------------------------------------


class Raw(bytes):
    """JSON text written as it is (what json.dumps cannot produce)."""


def to_json(value: Any) -> bytes:
    """JSON text of `value`; a list of pairs is an object that may repeat a key."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        value = pairs(value) or Raw(b"{}")
        if isinstance(value, Raw):
            return bytes(value)
    if isinstance(value, list) and value and all(isinstance(p, Pair) for p in value):
        return b"{" + b",".join(to_json(k) + b":" + to_json(v) for k, v in value) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(to_json(v) for v in value) + b"]"
    return json.dumps(value, ensure_ascii=False).encode()


class Pair(tuple[str, Any]):
    """A key and its value, in an object that may repeat keys."""


def pairs(obj: dict[str, Any]) -> list[Pair]:
    return [Pair((k, v)) for k, v in obj.items()]


def deep(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> Raw:
    return Raw(opener * depth + closer * depth)


# Valid JSON (a client that reads JSON as the spec says reads each of them), and each a
# thing Python or pydantic chokes on, or a value of the wrong JSON type.
HOSTILE_VALUES: dict[str, Raw] = {
    "lone surrogate": Raw(b'"\\ud83d x"'),
    "surrogate pair halves reversed": Raw(b'"\\ude00\\ud83d"'),
    "NUL escape": Raw(b'"a\\u0000b"'),
    "invalid UTF-8": Raw(b'"\xff\xfe\xc3"'),
    "nesting 1000": deep(1000),
    "nesting 3000 objects": Raw(b'{"a":' * 3000 + b"1" + b"}" * 3000),
    "integer of 5000 digits": Raw(b"9" * 5000),
    "negative integer of 4400 digits": Raw(b"-" + b"8" * 4400),
    "float overflow": Raw(b"1e400"),
    "list": Raw(b'["a",["b"]]'),
    "object": Raw(b'{"id":["x"]}'),
    "bool": Raw(b"true"),
    "null": Raw(b"null"),
    "negative": Raw(b"-1"),
    "string": Raw(b'"7"'),
}

BASE = frames(CODEX_BACKEND[-1].read_bytes())  # codex-backend-gpt5-text.sse
BASE_EVENTS = [json.loads(f.split(b"data: ", 1)[1]) for f in BASE]
TERMINAL = next(e for e in BASE_EVENTS if e["type"] == "response.completed")
CREATED = BASE_EVENTS[0]
MIDDLE = [e for e in BASE_EVENTS[1:] if e["type"] not in TERMINALS["responses"]]


def sse_frame(event_type: str, data: bytes) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"


def paths(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path into nested objects (not into lists), `type` at the top excepted."""
    out = []
    for key, value in obj.items():
        path = (*prefix, key)
        if path != ("type",):
            out.append(path)
        if isinstance(value, dict) and len(path) < 3:
            out += paths(value, path)
    return out


def replaced(obj: dict[str, Any], path: tuple[str, ...], value: Raw, duplicate: bool) -> Any:
    """`obj` as pairs with the value at `path` replaced (or, `duplicate`, repeated after
    it with the hostile value: the last one counts)."""
    out = []
    for key, item in obj.items():
        if key != path[0]:
            out.append(Pair((key, item)))
        elif len(path) > 1:
            out.append(Pair((key, replaced(item, path[1:], value, duplicate))))
        elif duplicate:
            out += [Pair((key, item)), Pair((key, value))]
        else:
            out.append(Pair((key, value)))
    return out


@st.composite
def hostile_events(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """One frame: `base` with a hostile value at one of its key paths."""
    path = draw(st.sampled_from(paths(base)))
    value = HOSTILE_VALUES[draw(st.sampled_from(sorted(HOSTILE_VALUES)))]
    data = to_json(replaced(base, path, value, draw(st.booleans())))
    return sse_frame(base["type"], data)


def healthy(event: dict[str, Any]) -> bytes:
    return sse_frame(event["type"], to_json(event))


def maybe_hostile(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.just(healthy(base)), hostile_events(base))


ERROR = {"type": "error", "code": "server_error", "message": "upstream fell over"}


def assert_one_terminal_last(protocol: str, events: list[Event]) -> None:
    """Exactly one terminal, and after it nothing but `[DONE]`."""
    assert terminal_count(protocol, events, KNOWN) == 1, [e.data[:80] for e in events]
    after = events[terminal_index(protocol, events) + 1 :]
    assert all(e.data == b"[DONE]" for e in after), after


def terminal_index(protocol: str, events: list[Event]) -> int:
    for index, event in enumerate(events):
        if protocol == "chat":
            if event.data == b"[DONE]":
                return index
            continue
        obj = loads(event.data)
        event_type = obj.get("type") if isinstance(obj, dict) else KNOWN.get(event.data)
        if event_type in TERMINALS[protocol]:
            return index
    raise AssertionError("no terminal")


# The type of each event whose JSON Python cannot load, filled as tests build them.
KNOWN: dict[bytes, str] = {}


def remember(frame: bytes, event_type: str | None = None) -> bytes:
    """Note the type of a frame the oracle cannot read by json.loads (the `event:` line's,
    unless given: the test built it, so it knows)."""
    [event] = client_events(frame)
    if loads(event.data) is None:
        KNOWN[event.data] = event_type or event.name or "?"
    return frame


def _created_with(path: tuple[str, ...], value: Raw) -> bytes:
    return sse_frame("response.created", to_json(replaced(CREATED, path, value, False)))


CLASSES: dict[str, Callable[[], bytes]] = {
    "surrogate in created": lambda: _created_with(
        ("response", "model"), HOSTILE_VALUES["lone surrogate"]
    ),
    "nesting 100000 in created": lambda: _created_with(("response", "tools"), deep(100_000)),
    "nesting 100000 objects in created": lambda: _created_with(
        ("response", "tools"), Raw(b'{"a":' * 100_000 + b"0" + b"}" * 100_000)
    ),
    "integer over the digit limit in created": lambda: _created_with(
        ("response", "created_at"), HOSTILE_VALUES["integer of 5000 digits"]
    ),
}


NOT_EVENTS = {
    "random bytes": bytes(range(256)) * 4,
    "garbage lines": b"hello\nworld\n\nthis is not sse\n\n",
    "a JSON document": b'{"id":"resp_1","object":"response","output":[]}\n',
    "JSON that is not an object": b'data: [1,2,3]\n\ndata: "x"\n\n',
    "invalid JSON data": b"data: {not json\n\n",
    "a gzip body without content-encoding": gzip.compress(healthy(CREATED) * 5),
    "HTML": b"<html><body>502 Bad Gateway</body></html>",
}
