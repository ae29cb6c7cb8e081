"""The one place codex-fix touches mitmproxy internals: a small patch of `HttpStream`.

mitmproxy offers no public way to (1) append bytes to a streamed response after the
upstream failed, (2) wake a stream up when the upstream goes silent, or (3) answer a
request whose upstream never sends headers, or (4) fails before them, in the flow's
own terms rather than with a 502. The patch does all four through
mitmproxy's own paths, for flows whose `response.stream` is a `ManagedStream`, or that
were registered with `await_headers()`; every other flow runs mitmproxy's code unchanged.

Internals touched (checked on mitmproxy 11.0.2 and 12.3.1; the WebSocket part is in
`websocket_shim`, installed and removed with this one):
* `HttpStream._handle_event`, `handle_protocol_error`, `start_response_stream`: wrapped.
* `HttpStream.state_stream_response_body(ResponseEndOfMessage)`: mitmproxy's normal end
  of a streamed response (calls the stream with b"", runs the `response` hook, ends the
  client body with `0\\r\\n\\r\\n` / END_STREAM); used to end a failed or stalled stream.
* `HttpStream.send_response()`: used to answer after a header timeout, or when a
  `ResponseProtocolError` (refused, TLS error, reset) comes before the headers.
* `HttpStream.server_state` / `client_state` / `stream_id` / `flow` / `context`.
* `commands.RequestWakeup` / `events.Wakeup`: `HttpLayer` routes a stream's wake-up back
  to it (the HTTP/2 client uses this for pings).
* `RequestProtocolError` sent to the server: cancels the upstream request (HTTP/1: the
  connection is closed; HTTP/2: RST_STREAM CANCEL).
"""

from __future__ import annotations

import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import http
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import http as layers_http
from mitmproxy.proxy.layers.http import HttpStream

from . import websocket_shim

try:  # mitmproxy >= 12
    from mitmproxy.proxy.layers.http import ErrorCode  # type: ignore[attr-defined,unused-ignore]

    _CANCEL: Any = ErrorCode.CANCEL
except ImportError:  # mitmproxy 11: integer codes; 499 maps to HTTP/2 CANCEL
    from mitmproxy.net.http import status_codes

    _CANCEL = status_codes.CLIENT_CLOSED_REQUEST

log = logging.getLogger(__name__)

CommandGenerator = Generator[commands.Command, Any, None]
_ORIGINALS = "_codexfix_originals"


class ManagedStream(ABC):
    """A `flow.response.stream` callable whose end the shim may drive.

    The shim asks for `deadline()` when it has no wake-up pending, and when `sooner` is
    set: a deadline that only moves later (an idle timeout) is met by the pending
    wake-up, which looks again when it fires. A stream whose deadline comes closer
    (a grace period starts) sets `sooner`; the shim clears it.
    """

    sooner = False

    @property
    def raw(self) -> bool:
        """The stream passes raw (a body of no known protocol, an internal error): a broken
        upstream then breaks the client's body too, as it would without codex-fix."""
        return False

    @abstractmethod
    def __call__(self, data: bytes) -> list[bytes]: ...

    @abstractmethod
    def deadline(self) -> float | None:
        """Monotonic time after which the stream must end if no more bytes arrive."""

    @abstractmethod
    def upstream_broken(self, message: str) -> None:
        """The upstream response failed; the next call with b"" ends the client stream."""

    @abstractmethod
    def expired(self, now: float) -> None:
        """The deadline passed; the next call with b"" ends the client stream."""


class HeaderWait:
    """A request whose upstream must send response headers before `deadline`.

    `respond(flow)` makes the answer; it must not hold the flow itself, or the weak
    registry below could never let the flow go.
    """

    def __init__(self, deadline: float, respond: Callable[[http.HTTPFlow], http.Response]) -> None:
        self.deadline = deadline
        self.respond = respond


_header_waits: weakref.WeakKeyDictionary[http.HTTPFlow, HeaderWait] = weakref.WeakKeyDictionary()
# Flows whose upstream failure, before the client got any response, is answered by the
# flow's own answer instead of mitmproxy's 502 (the WebSocket upgrade's 426).
_error_answers: weakref.WeakKeyDictionary[
    http.HTTPFlow, Callable[[http.HTTPFlow, str], http.Response]
] = weakref.WeakKeyDictionary()


def await_headers(
    flow: http.HTTPFlow, seconds: float, respond: Callable[[http.HTTPFlow], http.Response]
) -> None:
    """If no response headers come within `seconds`, cancel upstream, answer `respond(flow)`."""
    _header_waits[flow] = HeaderWait(time.monotonic() + seconds, respond)


def answer_errors(
    flow: http.HTTPFlow, answer: Callable[[http.HTTPFlow, str], http.Response]
) -> None:
    """If the upstream fails (refused, TLS error, reset, a broken body) before the client
    got a response, answer `answer(flow, mitmproxy's error message)` instead of a 502."""
    _error_answers[flow] = answer


def installed() -> bool:
    return hasattr(HttpStream, _ORIGINALS)


def install() -> None:
    """Patch HttpStream (idempotent: a hot reload does not patch twice)."""
    if installed():
        return
    originals = {
        "_handle_event": HttpStream._handle_event,
        "handle_protocol_error": HttpStream.handle_protocol_error,
        "start_response_stream": HttpStream.start_response_stream,
    }
    setattr(HttpStream, _ORIGINALS, originals)
    websocket_shim.install()
    HttpStream._handle_event = _make_handle_event(originals["_handle_event"])  # type: ignore[method-assign]
    HttpStream.handle_protocol_error = _make_handle_protocol_error(  # type: ignore[method-assign]
        originals["handle_protocol_error"]
    )
    HttpStream.start_response_stream = _make_start_response_stream(  # type: ignore[method-assign]
        originals["start_response_stream"]
    )
    log.debug("HttpStream patched")


def uninstall() -> None:
    websocket_shim.uninstall()
    originals = getattr(HttpStream, _ORIGINALS, None)
    if originals is None:
        return
    for name, original in originals.items():
        setattr(HttpStream, name, original)
    delattr(HttpStream, _ORIGINALS)
    log.debug("HttpStream patch removed")


# -- per-stream state -------------------------------------------------------------------

# A wake-up cannot be cancelled, and until it fires mitmproxy keeps the stream (and so the
# flow, with its kept bodies) alive; short steps let a finished stream go soon, whatever its
# timeouts (at hundreds of streams a second, 1 s steps held hundreds of flows).
_MAX_WAKEUP_DELAY = 0.25


class _State:
    """What the shim keeps on an HttpStream (one attribute, `_codexfix`)."""

    __slots__ = ("due", "finished", "managed", "wakeup")

    def __init__(self) -> None:
        self.managed: ManagedStream | None = None
        self.due: float | None = None  # when the pending wake-up fires
        self.wakeup: commands.RequestWakeup | None = None  # the current one
        self.finished = False  # the client response is complete: ignore the rest


def _state(stream: HttpStream) -> _State:
    state: _State | None = getattr(stream, "_codexfix", None)
    if state is None:
        state = _State()
        stream._codexfix = state  # type: ignore[attr-defined]
    return state


def _streaming(stream: HttpStream, state: _State) -> bool:
    return (
        stream.server_state == stream.state_stream_response_body
        and stream.client_state != stream.state_errored
        and not state.finished
    )


def _waiting_for_headers(stream: HttpStream) -> HeaderWait | None:
    """The stream's header wait, if the request went upstream (or is connecting there: the
    server state is the same) and no response headers came yet."""
    flow = getattr(stream, "flow", None)
    if flow is None or flow not in _header_waits:
        return None
    if flow.response is not None:
        del _header_waits[flow]  # answered in time
        return None
    if stream.server_state != stream.state_wait_for_response_headers:
        return None
    if stream.client_state != stream.state_done:  # request not sent upstream yet
        return None
    if _state(stream).finished:
        return None
    return _header_waits[flow]


def _arm(stream: HttpStream, deadline: float | None) -> CommandGenerator:
    """Ask for a wake-up by `deadline`, unless one at or before it is pending."""
    if deadline is None:
        return
    state = _state(stream)
    now = time.monotonic()
    wake = min(deadline, now + _MAX_WAKEUP_DELAY)
    if state.due is not None and state.due <= wake:
        return
    state.due = wake
    state.wakeup = commands.RequestWakeup(max(wake - now, 0.001))
    yield state.wakeup


def _cancel_upstream(stream: HttpStream, reason: str) -> CommandGenerator:
    yield layers_http.SendHttp(
        layers_http.RequestProtocolError(stream.stream_id, reason, _CANCEL),
        stream.context.server,
    )


def _end_response(stream: HttpStream, cancel_reason: str | None) -> CommandGenerator:
    """End the client response through mitmproxy's own end-of-message path."""
    _state(stream).finished = True  # set first: our cancel may echo back as an error
    if cancel_reason is not None:
        yield from _cancel_upstream(stream, cancel_reason)
    yield from stream.state_stream_response_body(layers_http.ResponseEndOfMessage(stream.stream_id))


def _on_wakeup(stream: HttpStream, state: _State, now: float) -> CommandGenerator:
    state.due = None
    wait = _waiting_for_headers(stream)
    if wait is not None:
        if now < wait.deadline:
            yield from _arm(stream, wait.deadline)
            return
        state.finished = True
        yield from _cancel_upstream(stream, "codex-fix: no response headers")
        del _header_waits[stream.flow]
        stream.flow.response = wait.respond(stream.flow)
        yield from stream.send_response()
        return
    managed = state.managed
    if managed is None or not _streaming(stream, state):
        return
    deadline = managed.deadline()
    if deadline is not None and now >= deadline:
        managed.expired(now)
        yield from _end_response(stream, "codex-fix: stream ended by deadline")
    else:
        yield from _arm(stream, deadline)


# -- the patched methods ----------------------------------------------------------------


def _make_handle_event(
    original: Callable[..., CommandGenerator],
) -> Callable[..., CommandGenerator]:
    def _handle_event(self: HttpStream, event: events.Event) -> CommandGenerator:
        state: _State | None = self.__dict__.get("_codexfix")
        if state is None and type(event) is layers_http.ResponseData:
            # The body chunks of every other flow: mitmproxy's own generator, not even
            # wrapped. (Not the request's events: a hook they run may register the
            # flow for a header wait, which the wrapper then arms.)
            return original(self, event)
        return _handle_own_event(original, self, state, event)

    return _handle_event


def _handle_own_event(
    original: Callable[..., CommandGenerator],
    stream: HttpStream,
    state: _State | None,
    event: events.Event,
) -> CommandGenerator:
    if isinstance(event, events.Wakeup):
        # HttpStream itself never asks for wake-ups: every one routed here is ours,
        # but only the latest is current.
        if state is not None and event.command is state.wakeup:
            yield from _on_wakeup(stream, state, time.monotonic())
        return
    managed = state.managed if state is not None else None
    if managed is not None and type(event) is layers_http.ResponseData and not event.data:
        # Empty HTTP/2 DATA frames (mitmproxy 11 also passes the END_STREAM one):
        # b"" must mean end of message only.
        return
    yield from original(stream, event)
    if managed is not None:
        assert state is not None
        if (state.due is None or managed.sooner) and _streaming(stream, state):
            managed.sooner = False
            yield from _arm(stream, managed.deadline())
    elif _header_waits and (wait := _waiting_for_headers(stream)) is not None:
        # (Most flows are never registered: skip the lookup while nothing waits.)
        yield from _arm(stream, wait.deadline)


def _make_handle_protocol_error(
    original: Callable[..., CommandGenerator],
) -> Callable[..., CommandGenerator]:
    def handle_protocol_error(
        self: HttpStream,
        event: layers_http.RequestProtocolError | layers_http.ResponseProtocolError,
    ) -> CommandGenerator:
        if (
            isinstance(event, layers_http.ResponseProtocolError)
            and self.flow in _error_answers
            and self.client_state == self.state_done  # the request went (or was going) up
            and self.server_state
            in (self.state_wait_for_response_headers, self.state_consume_response_body)
        ):
            answer = _error_answers.pop(self.flow)
            _header_waits.pop(self.flow, None)
            _state(self).finished = True
            self.flow.response = answer(self.flow, event.message)
            yield from self.send_response()
            return
        state: _State | None = getattr(self, "_codexfix", None)
        if state is not None and isinstance(event, layers_http.ResponseProtocolError):
            if state.finished:
                return  # the answer to our own cancel, for a response already complete
            if state.managed is not None and not state.managed.raw and _streaming(self, state):
                state.managed.upstream_broken(event.message)
                yield from _end_response(self, None)
                return
        yield from original(self, event)

    return handle_protocol_error


def _make_start_response_stream(
    original: Callable[..., CommandGenerator],
) -> Callable[..., CommandGenerator]:
    def start_response_stream(self: HttpStream) -> CommandGenerator:
        yield from original(self)
        assert self.flow.response is not None
        callback = self.flow.response.stream
        if isinstance(callback, ManagedStream):
            state = _state(self)
            state.managed = callback
            # A pending header wake-up serves the stream too (_on_wakeup looks at both):
            # one wake-up less per request, unless the stream's deadline is sooner.
            yield from _arm(self, callback.deadline())

    return start_response_stream
