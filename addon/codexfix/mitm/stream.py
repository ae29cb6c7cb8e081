"""The `flow.response.stream` callable: a StreamFixer on mitmproxy's clock and chunks.

Around the fixer: an optional incremental decoder (an upstream that compressed despite
`accept-encoding: identity`) bounded by `codexfix_max_decoded_size`, bounded copies of
both bodies for the UI and flow files, and an optional capture.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from mitmproxy import http

from ..capture import Capture
from ..decoding import Bounded, DecodeError, TooLarge
from ..failures import EndCause, NoResponse, UpstreamBroken, UpstreamEnded
from ..fixer import StreamFixer
from ..report import PASSTHROUGH
from .shim import ManagedStream


class KeptBody:
    """The first `limit` bytes of a body (0 keeps nothing)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, data: bytes) -> None:
        room = self.limit - len(self.data)
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        self.data += data

    def take(self) -> bytes:
        """The kept bytes; the buffer lets go of them (the flow may outlive the stream by a
        second: mitmproxy holds it until the shim's last wake-up)."""
        data = bytes(self.data)
        self.data = bytearray()
        return data


class FlowStream(ManagedStream):
    """Feeds upstream chunks to the fixer; b"" (end of message) finishes it.

    mitmproxy writes whatever this returns to the client. Never return b"" for a data
    chunk: on an HTTP/1.1 client mitmproxy would write it as the chunked terminator,
    ending the body early. `[]` means "nothing yet".
    """

    def __init__(
        self,
        fixer: StreamFixer,
        log: logging.LoggerAdapter[logging.Logger],
        *,
        flow: http.HTTPFlow,
        keep: int = 0,
        decoder: tuple[str, Bounded] | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.fixer = fixer
        self.log = log
        self.first_byte_at: float | None = None  # wall clock, for the summary
        self.upstream = KeptBody(keep)  # as received (decoded, if it was encoded)
        self.client = KeptBody(keep)  # as sent
        self.capture = capture
        self._copying = keep > 0 or capture is not None
        # Not the flow itself: the flow holds this stream (response.stream).
        self._flow = weakref.ref(flow)
        self._recorded = False
        self._encoded = decoder is not None  # every chunk goes through _decoded()
        self._decoder = decoder  # dropped when the body ends: a decoder holds a window
        self._undecodable: str | None = None
        self._cause: EndCause = UpstreamEnded()
        self._broken = False
        self._in_grace = False

    def __call__(self, data: bytes) -> list[bytes]:
        if data and self._encoded:
            return self._decoded(data)
        if not data:
            self._decoder = None
        return self._feed(data)

    def _feed(self, data: bytes) -> list[bytes]:
        """One piece of (decoded) upstream body to the fixer; b"" ends the stream."""
        if data:
            if self.first_byte_at is None:
                self.first_byte_at = time.time()
            if self._copying:
                self._keep_upstream(data)
        if self._broken:
            return self._sent(data)
        try:
            if data:
                out = self.fixer.feed(data, time.monotonic())
            else:
                out = self.fixer.finish(self._end_cause())
        except Exception as exc:  # the fixer fails open by itself; this is the last guard
            self._broken = True
            self.fixer.report.outcome = PASSTHROUGH
            self.log.error("internal error, stream switched to raw passthrough: %r", exc)
            out = data
        # Only events can start (or end) a grace period, and they leave as output.
        if out and self.fixer.in_grace != self._in_grace:
            self._in_grace = not self._in_grace
            if self._in_grace:
                self.sooner = True  # a grace period started: the deadline came closer
        sent = self._sent(out)
        if not data:
            self.record()
        return sent

    def record(self) -> None:
        """Keep what happened on the flow, before the `response` hook (and so before `-w`
        writes the flow): the client body as its content, the rest in its metadata."""
        flow = self._flow()
        if self._recorded or flow is None or flow.response is None:
            return
        self._recorded = True
        report = self.fixer.report
        if self.client.limit:
            flow.response.raw_content = self.client.take()
        info: dict[str, Any] = {
            "protocol": report.protocol or "unknown",
            "outcome": str(report.outcome) if report.outcome else None,
            "repairs": list(report.repairs),
            "notes": list(report.notes),
            "warnings": list(self.fixer.budget.lines),
            "upstream": self.upstream.take() if self.upstream.limit else None,
            "upstream_truncated": self.upstream.truncated,
            "client_truncated": self.client.truncated,
        }
        flow.metadata["codexfix"] = info

    def _decoded(self, data: bytes) -> list[bytes]:
        """Decode a chunk slice by slice, each slice through the fixer: one chunk of a
        bomb never decodes to more than the bound."""
        out: list[bytes] = []
        if self._decoder is None:
            return out  # the stream is ending: the rest cannot be read
        encoding, decoder = self._decoder
        try:
            for piece in decoder.decode(data):
                out += self._feed(piece)
        except TooLarge:
            self._end_undecodable(
                f"the {encoding} body decodes to more than {decoder.limit} bytes "
                "(codexfix_max_decoded_size)"
            )
        except DecodeError as exc:
            self._end_undecodable(f"the {encoding} body does not decode: {exc}")
        return out

    def _end_undecodable(self, why: str) -> None:
        self._decoder = None
        self._undecodable = why
        self.sooner = True  # the deadline is now
        self.log.warning("upstream %s: ending the stream", why)

    def _keep_upstream(self, data: bytes) -> None:
        self.upstream.add(data)
        if self.capture is not None:
            self.capture.append_upstream(data)

    def _sent(self, out: bytes) -> list[bytes]:
        if not out:
            return []
        if self._copying:
            self.client.add(out)
            if self.capture is not None:
                self.capture.append_client(out)
        return [out]

    @property
    def raw(self) -> bool:
        return self._broken or self.fixer.passthrough

    def deadline(self) -> float | None:
        if self._undecodable is not None:
            return 0.0  # now: end the client's stream, cancel the upstream
        return None if self._broken else self.fixer.deadline()

    def no_response(self, seconds: float) -> None:
        """The upstream never answered: the next call with b"" ends the client stream."""
        self._cause = NoResponse(seconds)

    def upstream_broken(self, message: str) -> None:
        self._cause = UpstreamBroken(message)

    def expired(self, now: float) -> None:
        self._cause = self.fixer.expiry_cause(now)

    def _end_cause(self) -> EndCause:
        # An undecodable body wins, whether the shim ended the stream for it or the
        # upstream's own end (or break) came first.
        if self._undecodable is not None:
            return UpstreamBroken(self._undecodable)
        return self._cause
