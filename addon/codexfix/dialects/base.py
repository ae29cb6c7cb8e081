"""What every dialect shares: the report, coercion, repair logging, frame rendering, and
the rule that nothing follows a terminal."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from ..reading import Json
from ..report import StreamReport
from ..sse import Frame

DONE = b"data: [DONE]\n\n"


def _unknown() -> str | None:
    return None


class DialectBase:
    # The model the client asked for, read from its request only when a dialect needs it
    # (the proxy sets it; reading a request body costs, and it is rarely needed).
    requested_model: Callable[[], str | None] = staticmethod(_unknown)

    def __init__(self, report: StreamReport, log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.report = report
        self.log = log
        self._terminal: str | None = None  # the terminal event forwarded or injected
        self._done_sent = False  # `data: [DONE]` forwarded or appended
        self._dropped_after_terminal = 0

    @property
    def terminal_seen(self) -> bool:
        return self._terminal is not None

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """No fast path: every frame goes to `on_frame`."""
        return 0

    def _after_terminal(self, frame: Frame) -> bytes:
        """Nothing follows a terminal but the upstream's own first [DONE]."""
        if frame.data == b"[DONE]" and not self._done_sent:
            self._done_sent = True
            return frame.raw
        if frame.data is not None:
            self._dropped_after_terminal += 1
            if self._dropped_after_terminal == 1:
                self.log.warning("dropped an event that came after %s", self._terminal)
        return b""

    def _repaired(self, name: str, detail: str) -> None:
        self.report.repairs.append(name)
        self.log.warning("repaired %s: %s", name, detail)


def render(obj: Json, event: str | None = None) -> bytes:
    """One SSE frame of compact JSON, as the APIs write them (`event:` line if named).

    Whatever the upstream sent can be rendered: a lone surrogate read from its JSON
    (`"\\ud83d"`) cannot be encoded as UTF-8, so such a frame is written with ASCII
    escapes, which read back as the same string.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        encoded = json.dumps(obj, separators=(",", ":")).encode()
    data = b"data: " + encoded + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data
