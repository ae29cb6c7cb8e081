"""The Chat Completions stream (`…/chat/completions`): `data:`-only chunks, `[DONE]` last.

`finish_reason` is authoritative: once every choice has one the answer is complete, and
a missing `[DONE]` (the upstream ends, stalls or holds the connection) is appended, not
reported as an error. Before that, a truncation or stall becomes the error frame
openai-python raises `APIError` for, then `[DONE]`. An upstream in-band error passes
unchanged (a data frame with `error`, or Groq's `event: error`): it is the stream's
terminal, and only `[DONE]` is ensured after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from ..coercion import Coercer
from ..failures import EndCause, Failure, classify, describe, done_without_terminal
from ..models import chat as m
from ..reading import Json, read_event
from ..report import COMPLETED, Ending, Outcome, StreamReport, chat_usage
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
        self._open: set[int] = set()  # choices seen without a finish_reason yet
        self._finished: set[int] = set()
        self._error = False

    @property
    def terminal_seen(self) -> bool:
        return self._done_sent or self._error or (bool(self._finished) and not self._open)

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
        if self._error:
            return self._after_terminal(frame)  # the stream is over: [DONE] only
        if self.on_events((None,), (data,)):
            return frame.raw
        # What the fast path leaves: an error frame, or a chunk that fails its model.
        self.report.events += 1
        model = self.coercer.coerce(data, frame.event)
        # Exact-class checks: isinstance() through pydantic's metaclass costs more.
        if type(model) is m.Chunk:
            self._on_chunk(model)
        elif type(model) is m.ErrorFrame:
            self._on_error(model.error.type, model.error.code)
        else:
            self._on_unmodelled(data, frame.event)
        return frame.raw

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """Chunks that pass their model leave unchanged: handle those in a row."""
        if self._done_sent or self._error:
            return 0
        validate = self.coercer.validate
        chunk = m.Chunk
        handled = 0
        for data in datas:
            try:
                model = validate(data)
            except ValidationError:
                break
            if model.__class__ is not chunk:
                break
            self._on_chunk(model)
            handled += 1
        self.report.events += handled
        return handled

    def _on_chunk(self, chunk: m.Chunk) -> None:
        for choice in chunk.choices:
            self._choice(choice.index, choice.finish_reason)
        if chunk.model:
            self.report.model = chunk.model
        if chunk.usage is not None:
            self.report.usage = chat_usage(chunk.usage.model_dump())

    def _choice(self, index: int, finish_reason: str | None) -> None:
        if index in self._finished:
            return
        if finish_reason is None:
            self._open.add(index)
            return
        self._open.discard(index)
        self._finished.add(index)
        if not self._open:
            self._terminal = "finish_reason"
            self.report.outcome = COMPLETED

    def _on_unmodelled(self, data: bytes, event: str | None) -> None:
        """A chunk that failed its model still says which choices finished."""
        obj = read_event(data).obj
        if obj is None:
            return
        error = obj.get("error")
        if error or event == "error":
            body: Json = error if isinstance(error, dict) else {}
            self._on_error(_str(body.get("type")), _str(body.get("code")))
            return
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            index = choice.get("index") if isinstance(choice, dict) else None
            if type(index) is int:
                reason = choice.get("finish_reason")
                self._choice(index, reason if isinstance(reason, str) else None)

    def _on_error(self, error_type: str | None, code: str | int | None) -> None:
        self._error = True
        self._terminal = "error"
        code_str = code if isinstance(code, str) else None
        self.report.outcome = Outcome(Ending.ERROR, classify(code_str, error_type) or "upstream")

    def finish(self, cause: EndCause) -> bytes:
        if self._done_sent:
            return b""
        out = b""
        if not self.terminal_seen:
            out = self._error_frame(describe(cause, self.terminal_name))
        elif self._terminal == "finish_reason":
            self._repaired("done", "every choice finished; appended the missing [DONE]")
        self._done_sent = True
        return out + DONE

    def _error_frame(self, failure: Failure) -> bytes:
        """The error frame openai-python raises `APIError` for."""
        error_type, code = failure.frame.chat
        self._terminal = "error"
        self.report.outcome = Outcome(Ending.INJECTED, failure.failure_class)
        self.log.warning("injected error frame (%s): %s", code, failure.message)
        error = {"message": failure.message, "type": error_type, "param": None, "code": code}
        return render({"error": error})


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
