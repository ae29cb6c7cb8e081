"""Read a whole SSE body back: one line per event, then what the client was given.

For people, not for the proxy: the content view, `scripts/replay.py` and the tests use it
to show what an agent actually received (text, reasoning, tool calls with their
arguments, usage, how the stream ended). It works on any body of the three protocols
(Responses, Chat Completions, Anthropic Messages) and never raises: a frame it cannot
read (bad JSON, not an object, unexpected field types) becomes an event line with a note.

Sans-I/O and mitmproxy-free, like the rest of the core.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..protocols import Protocol, protocol_of
from ..sse import Frame, SSEFramer
from .anthropic import AnthropicBuilder
from .builder import Builder, excerpt
from .chat import ChatBuilder
from .responses import ResponsesBuilder
from .result import EventLine, Part, Reassembly, ToolCall

__all__ = ["EventLine", "Part", "Reassembly", "ToolCall", "detect_protocol", "reassemble"]


def reassemble(body: bytes, protocol: str | None = None) -> Reassembly:
    """Parse `body`; `protocol=None` detects it from the events."""
    parsed = _parse(body)
    if protocol is None:
        protocol = _detect(parsed)
    builder = _BUILDERS.get(protocol or "", Builder)()
    result = Reassembly(protocol if protocol in _BUILDERS else None)
    for index, frame, obj, note in parsed.frames:
        result.events.append(_line(builder, index, frame, obj, note, result))
    try:
        builder.finish(result)
    except Exception as exc:  # a bug here must not hide the event lines
        result.errors.append(f"codex-fix could not reassemble the result: {exc!r}")
    result.trailing = parsed.trailing
    return result


def detect_protocol(body: bytes) -> str | None:
    """The protocol of an SSE body, from its first recognizable event."""
    return _detect(_parse(body))


# -- parsing --------------------------------------------------------------------------


@dataclass
class _Parsed:
    frames: list[tuple[int, Frame, object, str | None]]  # index, frame, decoded JSON, note
    trailing: int


def _parse(body: bytes) -> _Parsed:
    framer = SSEFramer()
    frames = framer.feed(body) + framer.close()
    tail = framer.parse_tail()
    out: list[tuple[int, Frame, object, str | None]] = []
    for index, frame in enumerate(frames):
        if frame.data is None and not frame.comments:
            continue  # a stray blank line: nothing to show
        obj: object = None
        note = None
        if frame.data is not None and frame.data != b"[DONE]":
            try:
                obj = json.loads(frame.data)
            except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                note = f"invalid JSON: {exc}"
            except RecursionError:
                note = "JSON nested too deeply to show"
            else:
                if not isinstance(obj, dict):
                    note = f"data is a JSON {type(obj).__name__}, not an object"
        out.append((index, frame, obj, note))
    return _Parsed(out, len(tail.raw) if tail else 0)


def _detect(parsed: _Parsed) -> Protocol | None:
    for _, frame, obj, _ in parsed.frames:
        found = protocol_of(obj if isinstance(obj, dict) else {}, frame.event)
        if found is not None:
            return found
    return None


def _line(
    builder: Builder,
    index: int,
    frame: Frame,
    obj: object,
    note: str | None,
    result: Reassembly,
) -> EventLine:
    if frame.data is None:
        comment = b" ".join(frame.comments).decode("utf-8", "replace")
        return EventLine(index, ":", None, excerpt(comment), "comment, no data")
    if frame.data == b"[DONE]":
        result.done = True
        return EventLine(index, "[DONE]", None, "")
    name = frame.event or "?"
    if not isinstance(obj, dict):
        return EventLine(index, name, None, excerpt(frame.data.decode("utf-8", "replace")), note)
    kind = obj.get("type")
    if isinstance(kind, str):
        if frame.event is not None and frame.event != kind:
            note = f"event name {frame.event!r} but data type {kind!r}"
        name = kind
    elif frame.event is None:
        name = builder.default_name(obj)
    seq = obj.get("sequence_number")
    sequence = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    try:
        summary = builder.event(name, obj, result, frame.data)
    except Exception as exc:  # unexpected shapes: the line says so, the rest goes on
        summary = ""
        note = f"could not read: {exc!r}"
    return EventLine(index, name, sequence, summary, note)


_BUILDERS: dict[str, type[Builder]] = {
    Protocol.RESPONSES: ResponsesBuilder,
    Protocol.CHAT: ChatBuilder,
    Protocol.ANTHROPIC: AnthropicBuilder,
}
