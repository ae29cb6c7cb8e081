"""SocketFixer: the Codex CLI's Responses WebSocket, repaired in place (sans-I/O).

One WebSocket carries one request after another: a client `response.create` message
starts one (the first is a warm-up with `generate: false`), the server answers with one
Responses event per text message, and the request ends at its terminal event, or at an
`error` message (which the Codex CLI reads like an HTTP error status: it passes as it
is). Each request goes through the Responses dialect that serves SSE, so a message is
validated, read and repaired exactly as an SSE event is; a healthy message leaves as the
same bytes.

What the transport adds: the idle deadline runs only while a request is in flight, and
when the upstream closes, drops or stalls in the middle of one, the dialect's
`response.failed` (a code the Codex CLI retries) is what the client gets before the
socket closes. Nothing is injected between requests.

The caller passes messages and the current monotonic time in, sends what comes out,
and is told of each request's end through `on_end`. Fail-open: an internal error
switches the socket to a plain relay (one ERROR line); the message at hand and every
later one pass unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .coercion import Coercer, UnknownTypes, WarningBudget
from .dialects.responses import ResponsesDialect
from .failures import EndCause, UpstreamBroken, UpstreamIdle, classify
from .fixer import Limits, log_internal_error
from .models.responses import RESPONSES_EVENT
from .protocols import Protocol
from .reading import read_event
from .report import PASSTHROUGH, Ending, Outcome, StreamReport
from .sse import Frame

Messages = list[bytes]  # text messages (UTF-8) to send to the client instead of one


@dataclass
class SocketRequest:
    """One request on the socket, from its `response.create` to its end."""

    index: int  # 1 for the socket's first
    started: float  # monotonic
    report: StreamReport
    dialect: ResponsesDialect
    budget: WarningBudget
    warmup: bool  # `generate: false`: answered by an empty response.completed
    first_message_at: float | None = None
    outcome: Outcome | None = None  # set when it ends
    injected: Messages = field(default_factory=list)  # what codex-fix ended it with


@dataclass
class SocketCounts:
    """What went through the socket, for its summary line."""

    client_messages: int = 0
    server_messages: int = 0
    binary: int = 0
    bytes_in: int = 0  # from the server
    bytes_out: int = 0  # to the client
    requests: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class _RequestLog(logging.LoggerAdapter[logging.Logger]):
    """The socket's log lines, each naming the request it is about."""

    def __init__(self, log: logging.LoggerAdapter[logging.Logger], index: int) -> None:
        super().__init__(log.logger, log.extra)
        self._outer = log
        self._prefix = f"request {index}: "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return self._outer.process(f"{self._prefix}{msg}", kwargs)


class SocketFixer:
    def __init__(
        self,
        limits: Limits,
        log: logging.LoggerAdapter[logging.Logger],
        now: float,
        unknown_types: UnknownTypes | None = None,
        on_end: Callable[[SocketRequest], None] | None = None,
    ) -> None:
        self.limits = limits
        self.log = log
        self.counts = SocketCounts()
        self.current: SocketRequest | None = None
        self._unknown_types = unknown_types or UnknownTypes()
        self._on_end = on_end
        # Messages outside any request are validated too (schema drift shows there as well).
        self._between = Coercer(
            RESPONSES_EVENT, WarningBudget(log, limits.warning_limit), self._unknown_types
        )
        self._last_activity = now
        self._raw = False

    @property
    def passthrough(self) -> bool:
        """A plain relay from here on (an internal error, or an oversized message)."""
        return self._raw

    # -- messages ---------------------------------------------------------------------

    def client_message(self, content: bytes, is_text: bool, now: float) -> None:
        """A client message passes unchanged; a `response.create` starts a request."""
        self.counts.client_messages += 1
        if self._raw or not is_text:
            return
        try:
            self._on_client_text(content, now)
        except Exception as exc:
            self.go_raw(exc)

    def server_message(self, content: bytes, is_text: bool, now: float) -> Messages | None:
        """The messages to send the client in place of this one; None: this one as it is."""
        counts = self.counts
        counts.server_messages += 1
        counts.bytes_in += len(content)
        self._last_activity = now
        if not is_text:
            counts.binary += 1
        request = self.current  # (the message may end it)
        out = None
        if not self._raw:
            try:
                out = self._on_server_message(content, is_text, now)
            except Exception as exc:
                self.go_raw(exc)
                out = None
        self._count_out(request, len(content) if out is None else sum(map(len, out)))
        if request is not None and request is self.current:
            self._check_end(request)
        return out

    def server_activity(self, now: float) -> None:
        """Bytes from the server that finish no message (a ping, part of a frame)."""
        self._last_activity = now

    # -- the end of a request that never got its terminal ------------------------------

    def deadline(self) -> float | None:
        """When the request in flight has waited too long for the upstream, if ever."""
        if self._raw or self.current is None or self.limits.idle_timeout <= 0:
            return None
        return self._last_activity + self.limits.idle_timeout

    def expire(self, now: float) -> Messages:
        """The deadline passed: the messages that end the request in flight (the caller
        then closes the socket on both sides)."""
        return self._fail(UpstreamIdle(now - self._last_activity))

    def upstream_closed(self, detail: str) -> Messages:
        """The upstream closed or dropped the socket: the messages that end the request
        in flight, if one is (sent before the client's Close)."""
        return self._fail(UpstreamBroken(detail))

    def client_closed(self, detail: str) -> None:
        """The client left (the Codex CLI drops TCP when it is done: no fault)."""
        if self.current is not None:
            self._end(self.current, Outcome(Ending.ABORTED, detail))

    def go_raw(self, exc: BaseException | None, why: str | None = None) -> None:
        """Switch the socket to a plain relay."""
        if self._raw:
            return
        self._raw = True
        if exc is not None:
            log_internal_error(self.log, exc, "websocket switched to a plain relay")
        elif why is not None:
            self.log.warning("%s: the websocket is relayed unchanged from here on", why)
        if self.current is not None:
            self._end(self.current, PASSTHROUGH)

    # -- internals --------------------------------------------------------------------

    def _on_client_text(self, content: bytes, now: float) -> None:
        reading = read_event(content)
        if reading.type != "response.create":
            return  # response.interrupt, anything unknown: the server answers, or not
        if self.current is not None:  # the Codex CLI never does this; a client might
            self._end(self.current, Outcome(Ending.ABORTED, "the client sent the next request"))
        request = reading.obj or {}
        self.counts.requests += 1
        index = self.counts.requests
        report = StreamReport(Protocol.RESPONSES)
        log = _RequestLog(self.log, index)
        budget = WarningBudget(log, self.limits.warning_limit, report)
        dialect = ResponsesDialect(
            report, Coercer(RESPONSES_EVENT, budget, self._unknown_types), log
        )
        model = request.get("model")
        if isinstance(model, str):
            dialect.requested_model = lambda: model
        self.current = SocketRequest(
            index, now, report, dialect, budget, warmup=request.get("generate") is False
        )
        self._last_activity = now  # the idle deadline counts from the request

    def _on_server_message(self, content: bytes, is_text: bool, now: float) -> Messages | None:
        if len(content) > self.limits.max_event_size:
            self.go_raw(None, f"a message of {len(content)} bytes is over codexfix_max_event_size")
            return None
        request = self.current
        if request is None:
            if is_text:
                self._between.coerce(content, None)
            return None
        report = request.report
        report.bytes_in += len(content)
        if request.first_message_at is None:
            request.first_message_at = now
        if not is_text:
            request.budget.warn("a binary message (%d bytes) passed unchanged", len(content))
            return None
        if content == b"[DONE]":
            # SSE's end marker, which the dialect would read as the end of the stream.
            request.budget.warn("a [DONE] message (SSE's end marker) passed unchanged")
            return None
        return self._through_dialect(request.dialect, content)

    def _check_end(self, request: SocketRequest) -> None:
        dialect = request.dialect
        if dialect.terminal_seen:
            self._end(request, request.report.outcome or Outcome(Ending.COMPLETED))
        elif dialect.error_pending:
            # An `error` message ends the request as it is: the Codex CLI reads it like an
            # HTTP error status, and a response.failed in its place would change that.
            assert dialect.state.error is not None
            failure = classify(dialect.state.error[0])
            self._end(request, Outcome(Ending.ERROR, str(failure) if failure else None))

    @staticmethod
    def _through_dialect(dialect: ResponsesDialect, content: bytes) -> Messages | None:
        if dialect.on_events((None,), (content,)):
            return None  # the fast path: a modelled event that leaves unchanged
        frame = Frame(content, None, content)
        out = dialect.on_frame(frame)
        return None if out is content else _messages(out)

    def _fail(self, cause: EndCause) -> Messages:
        request = self.current
        if request is None or self._raw:
            return []
        try:
            out = _messages(request.dialect.fail(cause))
        except Exception as exc:
            self.go_raw(exc)
            return []
        self._count_out(request, sum(map(len, out)))
        request.injected = out
        self._end(request, request.report.outcome or Outcome(Ending.INJECTED))
        return out

    def _end(self, request: SocketRequest, outcome: Outcome) -> None:
        request.outcome = request.report.outcome = outcome
        if self.current is request:
            self.current = None
        kind = outcome.kind
        self.counts.outcomes[kind] = self.counts.outcomes.get(kind, 0) + 1
        if self._on_end is not None:
            self._on_end(request)

    def _count_out(self, request: SocketRequest | None, sent: int) -> None:
        self.counts.bytes_out += sent
        if request is not None:
            request.report.bytes_out += sent


def _messages(rendered: bytes) -> Messages:
    """The dialect's frames as WebSocket messages: the JSON of each `data:` line.

    The dialect writes what it makes as SSE frames of compact JSON, which holds no raw
    line break (JSON escapes them in strings), so each frame's one `data:` line is
    exactly one event.
    """
    return [
        line[6:]
        for frame in rendered.split(b"\n\n")
        for line in frame.split(b"\n")
        if line.startswith(b"data: ")
    ]
