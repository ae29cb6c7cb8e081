"""One state machine per streaming protocol, behind one small interface.

`sniff()` tells the protocol from a stream's first event, to confirm the one the request
path suggested (or to find it when the path does not tell).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from ..failures import EndCause
from ..models.base import Model
from ..reading import read_event
from ..sse import Frame

ANTHROPIC_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)


class Dialect(Protocol):
    """Turns upstream frames into client bytes and ends the stream in protocol terms."""

    @property
    def terminal_seen(self) -> bool:
        """The stream's terminal event has been forwarded (or injected)."""
        ...

    @property
    def error_pending(self) -> bool:
        """An in-band upstream error arrived and no terminal yet: the stream is over."""
        ...

    def on_frame(self, frame: Frame) -> bytes:
        """Bytes to forward for one complete upstream frame (its raw bytes when healthy)."""
        ...

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """The fast path for a run of simple frames (`sse.simple_fields`): handle them in
        order while each one leaves unchanged; return how many it handled.

        The caller forwards those frames as they are and gives the rest to `on_frame`,
        which must do the same for a frame as this would have done.
        """
        ...

    def finish(self, cause: EndCause) -> bytes:
        """Bytes that end the client stream properly, given why the upstream stream ended."""
        ...


class _Telling(Model):
    """The keys that tell a protocol, whatever their values.

    Only these are read: the rest of a first event (a `response.created` may carry long
    instructions) is skipped by the JSON parser, never built into Python objects.
    """

    type: Any = None
    object: Any = None
    choices: Any = None


# What sniff() says of a JSON object no protocol claims: an `error` event (every protocol
# has one), or an event of a type none of them names. It fits the request path's protocol.
ANY_PROTOCOL = "any"


def sniff(data: bytes) -> str | None:
    """The protocol an event's JSON belongs to; ANY_PROTOCOL for an object that could be
    any; None for data that is not a JSON object, so not an event of any known protocol."""
    try:
        telling = _Telling.model_validate_json(data)
        obj = {"type": telling.type, "object": telling.object, "choices": telling.choices}
    except ValidationError:  # not a JSON object, or one pydantic cannot read
        reading = read_event(data)
        if not reading.is_object:
            return None
        obj = reading.obj or {"type": reading.type}
    return protocol_of(obj) or ANY_PROTOCOL


def protocol_of(obj: dict[str, Any], event: str | None = None) -> str | None:
    """The protocol of a decoded event (and its `event:` name), or None if it could be any."""
    for name in (obj.get("type"), event):
        if isinstance(name, str):
            if name.startswith("response."):
                return "responses"
            if name in ANTHROPIC_TYPES:
                return "anthropic"
    if obj.get("object") == "chat.completion.chunk" or isinstance(obj.get("choices"), list):
        return "chat"
    return None
