"""What the mock backend plays (a `Scenario`) and what it records (a `RecordedRequest`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Framing = Literal["chunked", "content-length", "close"]
End = Literal["eof", "cut", "drop", "stall"]
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Scenario:
    """One canned response and the way it is delivered and terminated.

    ``parts`` are written one write each (one h1 chunk / one h2 DATA frame),
    ``delay`` seconds apart.  ``end`` decides how the response finishes:
    ``eof`` properly, ``cut`` truncated (h1: close without terminator; h2:
    RST_STREAM), ``drop`` by resetting the TCP connection (RST, no GOAWAY),
    ``stall`` by going silent.  ``headers_delay=None`` means no response is ever sent.

    ``websocket=True``: a WebSocket upgrade request is accepted (101) and the parts
    become text messages, sent in answer to each client message; ``end`` then means
    ``eof`` (keep answering until the client closes), ``cut`` (TCP close without a
    close frame after the first answer), ``drop`` (reset) or ``stall`` (silent).  A
    request without ``Upgrade: websocket`` still gets the plain HTTP response.
    ``websocket_script``: the upgrade is played by that script instead (it may refuse
    it), whatever ``websocket`` says.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/event-stream"),)
    parts: tuple[bytes, ...] = ()
    delay: float = 0.0
    framing: Framing = "chunked"
    content_length: int | None = None
    end: End = "eof"
    headers_delay: float | None = 0.0
    websocket: bool = False
    websocket_script: WebSocketScript | None = None

    def declared_length(self) -> int:
        """Content-length to announce: the override or the real body size."""
        if self.content_length is not None:
            return self.content_length
        return sum(len(p) for p in self.parts)


@dataclass
class RecordedRequest:
    """A request as the backend received it (header names lower-cased).

    For HTTP/2, pseudo-headers are not in ``headers``; ``:authority`` is
    recorded as a ``host`` header so both protocols look alike.
    """

    method: str
    path: str
    headers: Headers
    body: bytes
    http_version: str
    scenario: str
    tls: bool
    # The proxy gave up on the request while the backend held it (a stall, or no headers
    # yet): h1 closed the connection, h2 reset the stream. Shows an upstream cancel.
    abandoned: bool = False
    # WebSocket only: the client's messages (text as UTF-8), in order.
    messages: list[bytes] = field(default_factory=list)
    # WebSocket upgrades played by a script: the status the mock answered (None: it reset
    # the connection or never answered), the extensions it accepted (the
    # `sec-websocket-extensions` it answered, "" for none), and how the socket ended.
    handshake_status: int | None = None
    extensions: str = ""
    close: WebSocketClose | None = None

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def is_websocket_upgrade(self) -> bool:
        """A GET asking to switch to the WebSocket protocol."""
        return self.method == "GET" and "websocket" in (self.header("upgrade") or "").lower()

    def response_creates(self) -> list[dict[str, Any]]:
        """The client's `response.create` messages on this WebSocket, as JSON objects."""
        return [m for m in map(json_object, self.messages) if m.get("type") == "response.create"]

    def incremental(self) -> list[bool]:
        """For each `response.create` of :meth:`response_creates`: whether it builds on a
        previous response of the socket (`previous_response_id`), as the Codex CLI's
        requests after its warm-up do."""
        return [bool(m.get("previous_response_id")) for m in self.response_creates()]


def json_object(message: bytes) -> dict[str, Any]:
    """A WebSocket message's JSON object, or ``{}`` when it is none."""
    try:
        value = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def is_warmup(message: bytes) -> bool:
    """A Codex CLI warm-up: a `response.create` with `generate: false`, which the Codex
    backend answers with an empty `response.completed`."""
    obj = json_object(message)
    return obj.get("type") == "response.create" and obj.get("generate") is False


# -- WebSocket scripts ------------------------------------------------------------------


@dataclass(frozen=True)
class Fragmented:
    """One message sent as several frames: a text message if the pieces are str, a
    binary one if they are bytes."""

    pieces: tuple[str, ...] | tuple[bytes, ...]

    @classmethod
    def split(cls, text: str, count: int) -> Fragmented:
        """``text`` cut into ``count`` frames of about the same length (fewer if it is
        shorter than ``count`` characters)."""
        size = max(1, -(-len(text) // count))
        return cls(tuple(text[i : i + size] for i in range(0, len(text), size)) or (text,))


# A server message: a text message (str), a binary one (bytes), or either in frames.
Message = str | bytes | Fragmented
ReplyEnd = Literal["open", "close", "cut", "drop", "stall"]


@dataclass(frozen=True)
class Reply:
    """What the server does in answer to one client message: its ``messages``, ``delay``
    seconds apart, then ``end``: ``open`` (wait for the next request), ``close`` (a Close
    frame with ``close_code`` and ``close_reason``; the TCP connection is closed once the
    client answers it), ``cut`` (TCP close without a Close frame), ``drop`` (TCP reset)
    or ``stall`` (silent, the connection left open until the client leaves)."""

    messages: tuple[Message, ...] = ()
    end: ReplyEnd = "open"
    delay: float = 0.0
    close_code: int = 1000
    close_reason: str = ""


@dataclass(frozen=True)
class Handshake:
    """The answer to a WebSocket upgrade: ``status`` 101 accepts it (``headers`` added to
    the 101); any other status is an HTTP response with ``headers`` and ``body``, then a
    closed connection. ``reset``: the TCP connection is reset instead of any answer (a
    connection error for the client); ``delay=None``: no answer ever."""

    status: int = 101
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reset: bool = False
    delay: float | None = 0.0


@dataclass(frozen=True)
class WebSocketScript:
    """How the mock plays a WebSocket endpoint, connection after connection.

    The n-th upgrade of the scenario gets ``handshakes[n]`` (the last one repeating).
    Each complete client message is answered, except a JSON object whose ``type`` is
    not in ``answers`` (recorded only; ``answers=None``: every message is answered): a
    warm-up (`generate: false`) with ``warmup`` when set, any other with the next of
    ``replies`` (the last one repeating), counted over all the scenario's connections, so
    a reconnect's request gets the next reply.
    ``deflate``: accept permessage-deflate when the client offers it.
    """

    replies: tuple[Reply, ...] = (Reply(),)
    handshakes: tuple[Handshake, ...] = (Handshake(),)
    warmup: Reply | None = None
    deflate: bool = True
    answers: frozenset[str] | None = frozenset({"response.create"})

    def answered(self, message: bytes) -> bool:
        """Whether ``message`` gets a reply."""
        if self.answers is None:
            return True
        kind = json_object(message).get("type")
        return not isinstance(kind, str) or kind in self.answers


@dataclass(frozen=True)
class WebSocketClose:
    """How a WebSocket ended: who ended it (``client`` or ``server``), how (``close``: a
    Close frame, with its ``code``; ``eof``: the TCP connection closed without one;
    ``reset``: the TCP connection reset)."""

    by: Literal["client", "server"]
    how: Literal["close", "eof", "reset"]
    code: int | None = None


class Resolver(Protocol):
    """What a protocol handler asks of the backend: the scenario for a request, a place
    to record it, and what was recorded (a WebSocket script counts connections and
    requests by it)."""

    def resolve(self, path: str, headers: Headers) -> tuple[str, Scenario]: ...

    def record(self, request: RecordedRequest) -> None: ...

    def requests_for(self, scenario: str) -> list[RecordedRequest]: ...


def select_scenario_name(path: str, headers: Headers) -> str:
    """Pick the scenario name: ``/s/<name>/`` prefix, header, else ``default``."""
    bare = path.split("?", 1)[0]
    if bare.startswith("/s/"):
        name = bare[3:].split("/", 1)[0]
        if name:
            return name
    for key, value in headers:
        if key.lower() == "x-mock-scenario":
            return value.strip()
    return "default"


def not_found_scenario(name: str) -> Scenario:
    """A plain 404 response carrying an OpenAI-style JSON error for an unknown scenario."""
    error = {
        "message": f"unknown scenario {name}",
        "type": "invalid_request_error",
        "code": None,
        "param": None,
    }
    return Scenario(
        status=404,
        headers=(("content-type", "application/json"),),
        parts=(json.dumps({"error": error}).encode(),),
        framing="content-length",
    )
