"""What the "Responses event" content view shows for a message of a Codex WebSocket.

On a socket codex-fix handles (`websocket.WebSocketTransport` marks its flow) each server
text message is one Responses event. The view gives it the line the same event gets in
the "SSE" view, read by the same read-back (`reassembly.reassemble`), with the message's
position on the flow as its index; a message codex-fix replaced (marked dropped) or
wrote (marked injected) says so on a second line.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import replace

from mitmproxy import flow, http
from mitmproxy.websocket import WebSocketMessage

from ..protocols import Protocol
from ..reassembly import reassemble
from .contentview_sse import Line, event_line
from .websocket import MODE_KEY as WEBSOCKET_KEY

# The `codexfix.websocket` marks of a socket whose messages codex-fix reads ("downgraded"
# flows never become sockets).
HANDLED = ("repair", "passthrough")

# Each message's position on its flow, by `id()`: mitmweb and the console render every
# message of a socket in turn, and a search per message would make that quadratic. (By
# flow: `WebSocketData`, a dataclass, is not hashable.)
_positions: weakref.WeakKeyDictionary[http.HTTPFlow, dict[int, int]] = weakref.WeakKeyDictionary()
_LINE_END = re.compile(rb"\r\n|\r|\n")


def handled_mode(f: flow.Flow | None) -> str | None:
    """`repair` or `passthrough` for a Codex WebSocket codex-fix handles, else None."""
    if not isinstance(f, http.HTTPFlow) or f.websocket is None:
        return None
    mode = f.metadata.get(WEBSOCKET_KEY)
    return mode if mode in HANDLED else None


def is_event(f: flow.Flow | None, message: WebSocketMessage | None) -> bool:
    """A server text message on a socket codex-fix handles: one Responses event."""
    return (
        message is not None
        and not message.from_client
        and message.is_text
        and handled_mode(f) is not None
    )


def render_message(
    data: bytes, f: flow.Flow | None, message: WebSocketMessage | None
) -> tuple[str, list[Line]]:
    """The description and lines of one message (`data`, its content)."""
    if message is not None and not message.is_text:
        lines: list[Line] = [("text", f"binary message, {len(data)} bytes: not an event")]
        name = "binary"
    else:
        # The message as the SSE frame of the same event: the read-back takes bodies.
        frame = b"data: " + _LINE_END.sub(b"\ndata: ", data) + b"\n\n"
        event = reassemble(frame, Protocol.RESPONSES).events[0]
        where = _position(f, message)
        event = event if where is None else replace(event, index=where)
        lines, name = event_line(event), event.name
    mark = _mark(message, handled_mode(f))
    if mark:
        lines.append(("warn", f"{'':>15} {mark}"))
    return f"Responses event {name}" + (f", {mark}" if mark else ""), lines


def _position(f: flow.Flow | None, message: WebSocketMessage | None) -> int | None:
    """Where `message` is in its flow's `websocket.messages`; None if it is not there."""
    if not isinstance(f, http.HTTPFlow) or f.websocket is None or message is None:
        return None
    messages = f.websocket.messages
    for _ in range(2):  # a stale map (messages trimmed or added) is built again
        where = _positions.get(f, {}).get(id(message))
        if where is not None and where < len(messages) and messages[where] is message:
            return where
        _positions[f] = {id(m): i for i, m in enumerate(messages)}
    return None


def _mark(message: WebSocketMessage | None, mode: str | None) -> str | None:
    """What a dropped or injected message is. codex-fix replaces server messages only, and
    only on a repaired socket (`websocket_shim`): other marks are another addon's."""
    if message is None or not (message.dropped or message.injected):
        return None
    ours = mode == "repair" and not message.from_client
    if message.dropped:
        if ours:
            return "replaced by codex-fix: the client got what codex-fix wrote in its place"
        return f"dropped: not sent to the {'server' if message.from_client else 'client'}"
    if ours:
        return "written by codex-fix: not sent by the upstream"
    return f"injected: not sent by the {'client' if message.from_client else 'server'}"
