"""Reading an event's JSON the way clients do, whatever the upstream put in it.

The fast paths validate events with pydantic. An event that fails its model is read
here, and whatever it holds must not make codex-fix fail: invalid UTF-8 is replaced
(clients decode the stream with replacement characters), lone surrogate escapes load as
they are, the last of duplicate keys wins (as in Python and JavaScript). What Python's
`json` cannot load at all, nesting deeper than its recursion limit or an integer over
its digit limit, is still valid JSON that other clients read: its top-level `type` is
found by `top_level_type()`, an iterative scan that builds nothing, so that a terminal
is recognised as one even then.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

Json = dict[str, Any]


class Reading(NamedTuple):
    """What can be read of one event's data."""

    obj: Json | None  # the event, when it is a JSON object Python can load
    type: str | None  # its top-level `type` (a string), even when `obj` could not be loaded
    is_object: bool  # the data is a JSON object (loaded or only scanned)


NOT_AN_OBJECT = Reading(None, None, False)


def read_event(data: bytes) -> Reading:
    """Read `data` as a JSON object, as far as it can be read."""
    text = data.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than Python's limit; ValueError: invalid JSON,
        # or an integer of more digits than int() converts.
        return _scanned(text)
    if not isinstance(obj, dict):
        return NOT_AN_OBJECT
    event_type = obj.get("type")
    return Reading(obj, event_type if isinstance(event_type, str) else None, True)


def _scanned(text: str) -> Reading:
    found = top_level_type(text)
    if found is None:
        return NOT_AN_OBJECT
    return Reading(None, found or None, True)


# One JSON token, after optional whitespace: a string, a structural character, or a
# scalar. The scalar pattern is loose (json.loads already failed; only structure counts).
_TOKEN = re.compile(
    r'[ \t\n\r]*(?:("(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")'
    r"|([{}\[\]:,])"
    r"|(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null))"
)
_TRAILING_SPACE = re.compile(r"[ \t\n\r]*")

# Parser states: what may come next.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _COMMA_OR_CLOSE = range(6)
_CLOSER = {"{": "}", "[": "]"}


def top_level_type(text: str) -> str | None:
    """For a JSON object: its top-level `type` if that is a string, else ""; for anything
    that is not one well-formed JSON object: None.

    Iterative (an explicit stack), so any depth is fine; nothing but the `type` string is
    decoded, so no integer is ever converted.
    """
    stack: list[str] = []  # the open containers, "{" or "["
    state = _VALUE
    pos = 0
    key_is_type = False
    found = ""
    while True:
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        pos = match.end()
        string, punct = match.groups()
        if state == _COLON:
            if punct != ":":
                return None
            state = _VALUE
        elif state in (_KEY, _KEY_OR_CLOSE) and string is not None:
            key_is_type = len(stack) == 1 and string == '"type"'
            state = _COLON
        elif state in (_VALUE_OR_CLOSE, _KEY_OR_CLOSE, _COMMA_OR_CLOSE) and punct in ("}", "]"):
            if _CLOSER[stack.pop()] != punct:
                return None
            if not stack:  # the top-level object ended: nothing may follow
                end = _TRAILING_SPACE.match(text, pos)
                return found if end is not None and end.end() == len(text) else None
            state = _COMMA_OR_CLOSE
        elif state == _COMMA_OR_CLOSE and punct == ",":
            state = _KEY if stack[-1] == "{" else _VALUE
        elif state in (_VALUE, _VALUE_OR_CLOSE) and punct in ("{", "["):
            if not stack and punct != "{":
                return None  # the top level must be an object
            stack.append(punct)
            state = _KEY_OR_CLOSE if punct == "{" else _VALUE_OR_CLOSE
        elif state in (_VALUE, _VALUE_OR_CLOSE) and stack and punct is None:
            if key_is_type and len(stack) == 1 and string is not None:
                found = json.loads(string)
            key_is_type = False
            state = _COMMA_OR_CLOSE
        else:
            return None
