"""The Chat Completions stream (`…/chat/completions`): `data:`-only chunks, `[DONE]` last.

`finish_reason` is authoritative: once every choice has one the answer is complete, and
a missing `[DONE]` (the upstream ends, stalls or holds the connection) is appended, not
reported as an error. Before that, a truncation or stall becomes the error frame
openai-python raises `APIError` for, then `[DONE]`. An upstream in-band error passes
unchanged (a data frame with `error`, or Groq's `event: error`): it is the stream's
terminal, and only `[DONE]` is ensured after it.

The stream's state is the one reading of the protocol, `accumulate.chat`; what is the
dialect's own: the injected error frame and the appended `[DONE]`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from ..accumulate.chat import ChatAccumulator
from ..coercion import Coercer
from ..failures import EndCause, Failure, classify, describe, done_without_terminal
from ..models import chat as m
from ..reading import read_event
from ..report import COMPLETED, Ending, Outcome, StreamReport
from ..sse import Frame
from .base import DONE, DialectBase, render


class ChatDialect(DialectBase):
    terminal_name = "finish_reason"

    def __init__(
        self,
        report: StreamReport,
        coercer: Coercer[m.ChatEvent],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        super().__init__(report, log)
        self.coercer = coercer
        self.state = ChatAccumulator(report)
        # The frame the fast path stopped at, and why (the error frame it validated, or
        # the reason it fails its model), so that on_frame does not validate it again.
        self._stopped_at: tuple[bytes, m.ErrorFrame | ValidationError] | None = None

    @property
    def terminal_seen(self) -> bool:
        return self._done_sent or self.state.terminal is not None

    @property
    def error_pending(self) -> bool:
        return False  # an upstream error is this protocol's terminal

    def on_frame(self, frame: Frame) -> bytes:
        if self._done_sent:
            return self._after_terminal(frame)
        data = frame.data
        if data is None:
            return frame.raw
        if data == b"[DONE]":
            out = (
                b""
                if self.terminal_seen
                else self._error_frame(done_without_terminal(self.terminal_name))
            )
            self._done_sent = True
            return out + frame.raw
        if self.state.error is not None:
            return self._after_terminal(frame)  # the stream is over: [DONE] only
        stopped = self._stopped_at
        if stopped is None or stopped[0] != data:
            if self.on_events((None,), (data,)):
                return frame.raw
            stopped = self._stopped_at
        self._stopped_at = None
        # What the fast path leaves: an error frame, or a chunk that fails its model.
        self.report.events += 1
        assert stopped is not None
        reason = stopped[1]
        if isinstance(reason, ValidationError):
            self.coercer.warn(data, frame.event, reason)
            obj = read_event(data).obj
            if obj is not None:
                self.state.feed_object(obj, frame.event)
        else:
            self.state.on_error(reason)
        self._update_outcome()
        return frame.raw

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """Chunks that pass their model leave unchanged: handle those in a row."""
        if self._done_sent or self.state.error is not None:
            return 0
        # Any: the exact-class check below narrows nothing for mypy.
        validate: Callable[[bytes], Any] = self.coercer.validate
        on_chunk = self.state.on_chunk
        chunk = m.Chunk
        handled = 0
        for data in datas:
            if data == b"[DONE]":
                break  # on_frame's
            try:
                model = validate(data)
            except ValidationError as exc:
                # Without its traceback, whose frame would hold this dialect: no cycle.
                self._stopped_at = (data, exc.with_traceback(None))
                break
            if model.__class__ is not chunk:
                self._stopped_at = (data, model)
                break
            on_chunk(model)
            handled += 1
        if handled:
            self.report.events += handled
            self._update_outcome()
        return handled

    def _update_outcome(self) -> None:
        """The outcome of what the state now holds: an upstream error, or every choice
        finished (for now: a choice may start after the others finished)."""
        state = self.state
        if state.error is not None:
            error = state.error
            self._terminal = "error"
            failure_class = classify(error.code, error.type) or "upstream"
            self.report.outcome = Outcome(Ending.ERROR, failure_class)
        elif state.finish_reasons and not state.open:  # (`state.finished`, inlined)
            self._terminal = "finish_reason"
            self.report.outcome = COMPLETED

    def finish(self, cause: EndCause) -> bytes:
        if self._done_sent:
            return b""
        out = b""
        if not self.terminal_seen:
            out = self._error_frame(describe(cause, self.terminal_name))
        elif self.state.error is None:
            self._repaired("done", "every choice finished; appended the missing [DONE]")
        self._done_sent = True
        return out + DONE

    def _error_frame(self, failure: Failure) -> bytes:
        """The error frame openai-python raises `APIError` for."""
        error_type, code = failure.frame.chat
        self._terminal = "error"
        self.report.outcome = Outcome(Ending.INJECTED, failure.failure_class)
        self.log.warning("injected error frame (%s): %s", code, failure.message)
        body = m.ErrorBody(message=failure.message, type=error_type, code=code)
        self.state.on_error(m.ErrorFrame(error=body))
        error = {"message": failure.message, "type": error_type, "param": None, "code": code}
        return render({"error": error})
