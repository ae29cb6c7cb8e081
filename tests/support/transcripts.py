"""Real SSE transcripts (tests/fixtures/real, copied unchanged from ../shared), a fixer to
feed them to, and the readings of a body that tests compare."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from codexfix import Limits, StreamFixer
from codexfix.sse import SSEFramer

from .sse_oracle import client_events

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real"
RESPONSES = sorted((FIXTURES / "responses").glob("*.sse"))
CODEX_BACKEND = [p for p in RESPONSES if p.name.startswith("codex-backend-")]
CHAT = sorted((FIXTURES / "chat").glob("*.sse"))
ANTHROPIC = sorted((FIXTURES / "anthropic").glob("*.sse"))
# Every transcript with its protocol (the folder it is in).
ALL = [(path.parent.name, path) for path in RESPONSES + CHAT + ANTHROPIC]

LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})


def read(name: str, protocol: str = "responses") -> bytes:
    return (FIXTURES / protocol / name).read_bytes()


def new_fixer(
    limits: Limits | None = None,
    log: logging.LoggerAdapter[Any] = LOG,
    protocol: str | None = "responses",
) -> StreamFixer:
    return StreamFixer(protocol, limits or Limits(), log, now=0.0)


def frames(data: bytes) -> list[bytes]:
    """The raw bytes of every complete frame in `data` (as codex-fix's framer cuts them)."""
    framer = SSEFramer()
    return [frame.raw for frame in framer.feed(data) + framer.close()]


def events(data: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of the events a client dispatches from `data` ([DONE] as the
    string), read by the SSE spec's rules (`sse_oracle`), not by the code under test."""
    out: list[Any] = []
    for event in client_events(data):
        out.append("[DONE]" if event.data == b"[DONE]" else json.loads(event.data))
    return out


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """Split `data` into pieces of the given sizes (cycled)."""
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)])
        pieces.append(data[pos : pos + size])
        pos += size
        i += 1
    return pieces
