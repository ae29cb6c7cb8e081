"""The fast path (blocks of simple frames through `Dialect.on_events`) is only faster.

With it switched off, every frame goes through `on_frame` one by one. Both must give
the client the same bytes and the stream the same report, for every real transcript of
the three protocols and every Responses fault, cut anywhere, in any chunking, with LF
or CRLF line ends (CRLF never takes the fast path: it checks the checker).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from codexfix import UpstreamEnded
from codexfix.sse import simple_fields
from codexfix.testing import faults

from support.transcripts import ALL, chunked, new_fixer

BODIES = [(protocol, path.read_bytes()) for protocol, path in ALL] + [
    ("responses", b"".join(fault.scenario.parts)) for fault in faults.responses_faults().values()
]
SIMPLE_FIELDS = "codexfix.fixer.simple_fields"
# What differs between two runs by design: a generated id, and the synthesized
# response.created's clock.
_GENERATED = re.compile(rb'resp_codexfix_[0-9a-f]{24}|"created_at":\d+')


def run(protocol: str, pieces: list[bytes], fast: bool) -> tuple[bytes, dict[str, Any]]:
    fixer = new_fixer(protocol=protocol)
    switch = contextlib.nullcontext() if fast else mock.patch(SIMPLE_FIELDS, return_value=None)
    with switch:
        out = b"".join(fixer.feed(piece, 0.0) for piece in pieces)
        out += fixer.finish(UpstreamEnded())
    return _GENERATED.sub(b"<generated>", out), asdict(fixer.report)


def uses_fast_path(protocol: str, body: bytes) -> bool:
    """Some block of `body` was read as simple frames."""
    fixer = new_fixer(protocol=protocol)
    found: list[object] = []

    def spy(block: bytes) -> object:
        found.append(result := simple_fields(block))
        return result

    with mock.patch(SIMPLE_FIELDS, side_effect=spy):
        fixer.feed(body, 0.0)
    return any(result is not None for result in found)


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(BODIES),
    cut=st.floats(min_value=0, max_value=1),
    sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=6),
    crlf=st.booleans(),
)
def test_fast_path_and_frame_by_frame_agree(
    case: tuple[str, bytes], cut: float, sizes: list[int], crlf: bool
) -> None:
    protocol, body = case
    if crlf:
        body = body.replace(b"\n", b"\r\n")
    pieces = chunked(body[: int(len(body) * cut)], sizes)
    assert run(protocol, pieces, fast=True) == run(protocol, pieces, fast=False)


def test_the_fast_path_is_taken_for_every_protocol() -> None:
    """Else the comparison above would compare the slow path with itself."""
    for protocol in ("responses", "chat", "anthropic"):
        bodies = [body for p, body in BODIES if p == protocol]
        assert any(uses_fast_path(protocol, body) for body in bodies), protocol
        assert not any(uses_fast_path(protocol, body.replace(b"\n", b"\r\n")) for body in bodies)
