"""One state machine per streaming protocol, behind one small interface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..failures import EndCause
from ..sse import Frame


class Dialect(Protocol):
    """Turns upstream frames into client bytes and ends the stream in protocol terms."""

    requested_model: Callable[[], str | None]  # the model of the client's request, if known

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
