"""The Anthropic Messages stream (`…/v1/messages`): named events, `message_stop` last.

anthropic-sdk-python reads only frames that name their event: a data-only frame is
ignored, so a gateway's data-only `{"type":"error",…}` would be swallowed silently.
Such frames get their `event:` line. A truncation or stall before `message_stop`
becomes an `error` event (the SDK raises `APIStatusError`); an upstream `error` event
is the stream's terminal as it is. There is no `[DONE]` in this protocol: codex-fix
never adds one, and never a `message_stop` the upstream did not send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from ..coercion import Coercer
from ..failures import EndCause, Failure, classify, describe, done_without_terminal
from ..models import anthropic as m
from ..models.anthropic import EVENT_TYPES
from ..reading import read_event
from ..report import COMPLETED, Ending, Outcome, StreamReport, Usage
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
        # By exact class: isinstance() through pydantic's metaclass costs more per event.
        self._handlers: dict[type, Callable[[Any], None]] = {
            m.MessageStart: self._on_message_start,
            m.MessageDelta: self._on_message_delta,
            m.MessageStop: self._on_message_stop,
            m.Error: self._on_error_event,
        }

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
        if frame.event is not None and self.on_events((b"",), (data,)):
            return frame.raw
        # What the fast path leaves: a data-only frame, or an event that fails its model.
        self.report.events += 1
        model = self.coercer.coerce(data, frame.event)
        if model is None:
            # Malformed, perhaps unreadable beyond its type, but a client reads it as the
            # end all the same.
            event_type = read_event(data).type
            if event_type == "message_stop":
                self._on_message_stop(None)
            elif event_type == "error":
                self._on_error(None)
        else:
            event_type = model.type
            handler = self._handlers.get(type(model))
            if handler is not None:
                handler(model)
        if frame.event is None and event_type in EVENT_TYPES:
            if "event_line" not in self.report.repairs:
                self._repaired("event_line", f"added `event: {event_type}` to data-only frames")
            return b"event: " + event_type.encode() + b"\n" + frame.raw
        return frame.raw

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """Named events that pass their model leave unchanged: handle those in a row."""
        if self._terminal is not None:
            return 0
        validate = self.coercer.validate
        handlers = self._handlers
        handled = 0
        for name, data in zip(names, datas, strict=True):
            if name is None:
                break  # a data-only frame gets its `event:` line
            try:
                model = validate(data)
            except ValidationError:
                break
            handler = handlers.get(model.__class__)
            if handler is not None:
                handler(model)
            handled += 1
            if self._terminal is not None:
                break  # what follows message_stop or error is on_frame's to drop
        self.report.events += handled
        return handled

    def _on_message_start(self, event: m.MessageStart) -> None:
        self.report.model = event.message.model
        self._usage(event.message.usage)

    def _on_message_delta(self, event: m.MessageDelta) -> None:
        self._usage(event.usage)

    def _on_message_stop(self, event: m.MessageStop | None) -> None:
        self._terminal = "message_stop"
        self.report.outcome = COMPLETED

    def _on_error_event(self, event: m.Error) -> None:
        self._on_error(event.error.type)

    def _on_error(self, error_type: str | None) -> None:
        self._terminal = "error"
        self.report.outcome = Outcome(Ending.ERROR, classify(error_type) or "upstream")

    def _usage(self, usage: m.Usage | None) -> None:
        if usage is None:
            return
        current = self.report.usage or Usage()
        self.report.usage = Usage(
            input_tokens=usage.input_tokens or current.input_tokens,
            cached_tokens=usage.cache_read_input_tokens or current.cached_tokens,
            # Cumulative in message_delta: the last one is the total.
            output_tokens=usage.output_tokens or current.output_tokens,
        )

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
        return render({"type": "error", "error": error}, "error")
