"""What the mock backend plays (a `Scenario`) and what it records (a `RecordedRequest`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, Protocol

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

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


class Resolver(Protocol):
    """What a protocol handler asks of the backend: the scenario for a request, and a
    place to record it."""

    def resolve(self, path: str, headers: Headers) -> tuple[str, Scenario]: ...

    def record(self, request: RecordedRequest) -> None: ...


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
