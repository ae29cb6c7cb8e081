"""One state machine per streaming protocol, behind one small interface."""

from __future__ import annotations

from typing import Protocol

from ..failures import EndCause
from ..sse import Frame


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

    def finish(self, cause: EndCause) -> bytes:
        """Bytes that end the client stream properly, given why the upstream stream ended."""
        ...
