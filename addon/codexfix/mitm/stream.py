"""The `flow.response.stream` callable: a StreamFixer on mitmproxy's clock and chunks."""

from __future__ import annotations

import logging
import time

from ..failures import EndCause, UpstreamBroken, UpstreamEnded
from ..fixer import StreamFixer
from .shim import ManagedStream


class FlowStream(ManagedStream):
    """Feeds upstream chunks to the fixer; b"" (end of message) finishes it.

    mitmproxy writes whatever this returns to the client. Never return b"" for a data
    chunk: on an HTTP/1.1 client mitmproxy would write it as the chunked terminator,
    ending the body early. `[]` means "nothing yet".
    """

    def __init__(self, fixer: StreamFixer, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.fixer = fixer
        self.log = log
        self.first_byte_at: float | None = None  # wall clock, for the summary
        self._cause: EndCause = UpstreamEnded()
        self._broken = False

    def __call__(self, data: bytes) -> list[bytes]:
        if self._broken:
            return [data] if data else []
        try:
            if data:
                if self.first_byte_at is None:
                    self.first_byte_at = time.time()
                out = self.fixer.feed(data, time.monotonic())
            else:
                out = self.fixer.finish(self._cause)
        except Exception as exc:  # the fixer fails open by itself; this is the last guard
            self._broken = True
            self.fixer.report.outcome = "passthrough"
            self.log.error("internal error, stream switched to raw passthrough: %r", exc)
            return [data] if data else []
        return [out] if out else []

    def deadline(self) -> float | None:
        return None if self._broken else self.fixer.deadline()

    def upstream_broken(self, message: str) -> None:
        self._cause = UpstreamBroken(message)

    def expired(self, now: float) -> None:
        self._cause = self.fixer.expiry_cause(now)
