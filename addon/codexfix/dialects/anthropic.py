"""The Anthropic Messages stream (`…/v1/messages`): named events, `message_stop` last.

anthropic-sdk-python reads only frames that name their event: a data-only frame is
ignored, so a gateway's data-only `{"type":"error",…}` would be swallowed silently.
Such frames get their `event:` line. A truncation or stall before `message_stop`
becomes an `error` event (the SDK raises `APIStatusError`); an upstream `error` event
is the stream's terminal as it is. There is no `[DONE]` in this protocol: codex-fix
never adds one, and never a `message_stop` the upstream did not send.

The stream's state is the one reading of the protocol, `accumulate.anthropic`; what is
the dialect's own: the `event:` lines it adds and the injected `error` event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from ..accumulate.anthropic import AnthropicAccumulator
from ..coercion import Coercer
from ..failures import EndCause, Failure, classify, describe, done_without_terminal
from ..models import anthropic as m
from ..models.anthropic import EVENT_TYPES
from ..reading import read_event
from ..report import COMPLETED, Ending, Outcome, StreamReport
from ..sse import Frame
from .base import DialectBase, render


class AnthropicDialect(DialectBase):
    terminal_name = "message_stop"

    def __init__(
        self,
        report: StreamReport,
        coercer: Coercer[m.AnthropicEvent],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        super().__init__(report, log)
        self.coercer = coercer
        self.state = AnthropicAccumulator(report)
        # The event the fast path stopped at and why it fails its model, so that
        # on_frame, which takes over from there, does not validate it again.
        self._stopped_at: tuple[bytes, ValidationError] | None = None

    @property
    def error_pending(self) -> bool:
        return False  # an upstream error is this protocol's terminal

    def on_frame(self, frame: Frame) -> bytes:
        if self._terminal is not None:
            return self._after_terminal(frame)
        data = frame.data
        if data is None:
            return frame.raw
        if data == b"[DONE]":  # not this protocol's: some gateways add it
            self._done_sent = True
            return self._error_frame(done_without_terminal(self.terminal_name)) + frame.raw
        stopped = self._stopped_at
        if stopped is not None and stopped[0] != data:
            stopped = None
        if frame.event is not None and stopped is None:
            if self.on_events((b"",), (data,)):
                return frame.raw
            stopped = self._stopped_at
        self._stopped_at = None
        # What the fast path leaves: a data-only frame, or an event that fails its model.
        self.report.events += 1
        event_type = self._read(frame, data, None if stopped is None else stopped[1])
        if frame.event is None and event_type in EVENT_TYPES:
            if "event_line" not in self.report.repairs:
                self._repaired("event_line", f"added `event: {event_type}` to data-only frames")
            return b"event: " + event_type.encode() + b"\n" + frame.raw
        return frame.raw

    def _read(self, frame: Frame, data: bytes, failed: ValidationError | None) -> str | None:
        """Feed an event the fast path left to the state (validated once); its type."""
        if failed is None:
            try:
                event = self.coercer.validate(data)
            except ValidationError as exc:
                failed = exc
            else:
                self.state.feed(event, data)
                self._update_outcome()
                return event.type
        self.coercer.warn(data, frame.event, failed)
        # Malformed, perhaps unreadable beyond its type: what can be read of it still
        # counts, and a terminal that cannot be read at all is the end all the same.
        obj, event_type, _ = read_event(data)
        if obj is None and event_type is not None:
            obj = {"type": event_type}
        if obj is not None:
            self.state.feed_object(obj, data)
            self._update_outcome()
        return event_type

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """Named events that pass their model leave unchanged: handle those in a row."""
        if self._terminal is not None:
            return 0
        validate = self.coercer.validate
        state = self.state
        handlers = state.handlers
        handled = 0
        for name, data in zip(names, datas, strict=True):
            if name is None:
                break  # a data-only frame gets its `event:` line
            try:
                model = validate(data)
            except ValidationError as exc:
                # Without its traceback, whose frame would hold this dialect: no cycle.
                self._stopped_at = (data, exc.with_traceback(None))
                break
            handler = handlers.get(model.__class__)
            if handler is not None:
                handler(state, model, data)
            handled += 1
            if state.terminal is not None:
                self._update_outcome()
                break  # what follows message_stop or error is on_frame's to drop
        self.report.events += handled
        return handled

    def _update_outcome(self) -> None:
        """The outcome, once the state holds the stream's terminal."""
        state = self.state
        if state.terminal is None or self._terminal is not None:
            return
        self._terminal = state.terminal
        if state.error is None:
            self.report.outcome = COMPLETED
        else:
            self.report.outcome = Outcome(Ending.ERROR, classify(state.error.type) or "upstream")

    def finish(self, cause: EndCause) -> bytes:
        if self._terminal is not None:
            return b""
        return self._error_frame(describe(cause, self.terminal_name))

    def _error_frame(self, failure: Failure) -> bytes:
        """The `error` event anthropic-sdk raises `APIStatusError` for."""
        error_type = failure.frame.anthropic
        self._terminal = "error"
        self.report.outcome = Outcome(Ending.INJECTED, failure.failure_class)
        self.log.warning("injected error event (%s): %s", error_type, failure.message)
        error = {"type": error_type, "message": failure.message}
        event = m.Error(type="error", error=m.ErrorBody(type=error_type, message=failure.message))
        rendered = render({"type": "error", "error": error}, "error")
        self.state.feed(event, rendered)
        return rendered
