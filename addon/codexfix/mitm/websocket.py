"""The Codex CLI's WebSocket transport: repaired in place, downgraded to SSE, or passed.

With a ChatGPT login the Codex CLI opens a WebSocket to `/backend-api/codex/responses`
(header `OpenAI-Beta: responses_websockets=…`), sends each request as one
`response.create` message and gets one Responses event per text message back.
`codexfix_websocket` says what codex-fix does with it:

* `repair` (default): every server message goes through the Responses dialect that
  serves SSE (`socket_fixer.SocketFixer`, driven by `websocket_shim`); a request that
  the upstream closes, drops or stalls mid-way ends with an injected `response.failed`
  and a clean Close, so the CLI reconnects at once. An upgrade the upstream refuses
  (an error status, a failed connection, no answer within `codexfix_header_timeout`)
  gets a 426 instead, which makes the CLI switch to HTTP SSE for the session at once
  (repaired there) rather than retry the handshake six times;
* `downgrade`: every upgrade gets the 426, the upstream is never asked;
* `passthrough`: the WebSocket is left alone; its server messages are validated and
  counted for one summary line.
"""

from __future__ import annotations

import json
import re
import time
import weakref
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mitmproxy import ctx, exceptions, http, websocket

from ..accumulate.responses import ResponsesAccumulator
from ..capture import Capture, FlowFacts
from ..coercion import Coercer, UnknownTypes, WarningBudget
from ..fixer import Limits
from ..models.responses import RESPONSES_EVENT, ResponsesEvent
from ..protocols import Protocol, endpoints_pattern
from ..reading import read_event
from ..report import printable
from ..socket_fixer import SocketFixer, SocketRequest
from . import shim, websocket_shim
from .summary import FlowLog, Stats, flow_log, report_parts, where

if TYPE_CHECKING:
    from .addon import CodexFix

MODES = ("repair", "downgrade", "passthrough")
# The Responses endpoints of DEFAULT_FILTER (scope.py): the Codex backend and the API.
RESPONSES_PATH = re.compile(endpoints_pattern(Protocol.RESPONSES))
MODE_KEY = "codexfix.websocket"  # flow.metadata: "repair", "passthrough" or "downgraded"


class Settings(NamedTuple):
    mode: str


@dataclass
class Tally:
    """What went through one passed-through WebSocket, for its summary line."""

    coercer: Coercer[ResponsesEvent]
    budget: WarningBudget
    started: float
    state: ResponsesAccumulator = field(default_factory=ResponsesAccumulator)
    client_messages: int = 0
    server_messages: int = 0
    events: int = 0
    binary: int = 0
    bytes_in: int = 0


def is_responses_upgrade(request: http.Request) -> bool:
    """A WebSocket upgrade (RFC 6455: a GET with `Upgrade: websocket`) to a Responses path."""
    return (
        request.method == "GET"
        and "websocket" in request.headers.get("upgrade", "").lower()
        and RESPONSES_PATH.search(request.path) is not None
    )


class WebSocketTransport:
    """`fix`: the CodexFix addon whose options (limits, captures, kept bodies) and stats
    the repaired sockets share."""

    def __init__(self, fix: CodexFix | None = None) -> None:
        self.fix = fix
        self.settings: Settings | None = None
        self.unknown_types = fix.unknown_types if fix is not None else UnknownTypes()
        self.stats = fix.stats if fix is not None else Stats()
        # Per-flow state, not in flow.metadata (which must stay serializable).
        self.tallies: weakref.WeakKeyDictionary[http.HTTPFlow, Tally] = weakref.WeakKeyDictionary()
        self.sockets: weakref.WeakKeyDictionary[http.HTTPFlow, RepairedSocket] = (
            weakref.WeakKeyDictionary()
        )

    def load(self, loader: Any) -> None:
        loader.add_option(
            "codexfix_websocket",
            str,
            "repair",
            "What to do with the Codex CLI's WebSocket transport to a Responses path: "
            "'repair' validates and repairs each server message as on SSE and ends a request "
            "the upstream breaks with an injected failure (an upgrade the upstream refuses "
            "gets HTTP 426, so the client switches to SSE at once); 'downgrade' answers every "
            "upgrade with 426; 'passthrough' leaves the WebSocket alone and only validates "
            "and counts its messages.",
            choices=MODES,
        )

    def configure(self, updated: set[str]) -> None:
        if "codexfix_websocket" not in updated and self.settings:
            return
        mode = ctx.options.codexfix_websocket
        # `choices` only shapes the help and the command line: `--set` is not checked.
        if mode not in MODES:
            raise exceptions.OptionsError(
                f"codexfix_websocket: expected one of {', '.join(MODES)}, got {mode!r}"
            )
        self.settings = Settings(mode=mode)

    # -- the upgrade ------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.settings is None or not is_responses_upgrade(flow.request):
            return
        if self.settings.mode == "downgrade":
            # A response set here is sent instead of contacting the upstream at all.
            flow.response = downgraded(flow, "codexfix_websocket=downgrade")
            return
        flow.metadata[MODE_KEY] = self.settings.mode

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(MODE_KEY) != "repair":
            return
        timeout = self._limits()[1]
        if timeout > 0:
            shim.await_headers(flow, timeout, partial(_no_answer, seconds=timeout))
        shim.answer_errors(flow, _upstream_failed)

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if flow.metadata.get(MODE_KEY) != "repair" or response is None:
            return
        if response.status_code != 101:
            status = f"{response.status_code} {response.reason}".strip()
            flow.response = downgraded(flow, f"upstream answered {status}")

    # -- the socket -------------------------------------------------------------------

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        mode = flow.metadata.get(MODE_KEY)
        if mode == "repair":
            socket = RepairedSocket(flow, self._limits()[0], self)
            self.sockets[flow] = socket
            websocket_shim.manage(flow, socket)
        elif mode == "passthrough":
            flog = flow_log(flow)
            budget = WarningBudget(flog, Limits().warning_limit)
            coercer = Coercer(RESPONSES_EVENT, budget, self.unknown_types)
            self.tallies[flow] = Tally(coercer, budget, time.monotonic())

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        tally = self.tallies.get(flow)
        if tally is None or flow.websocket is None:
            return
        message = flow.websocket.messages[-1]
        if message.from_client:
            # The client's requests (`response.create`) are not events: counted only.
            tally.client_messages += 1
            return
        tally.server_messages += 1
        tally.bytes_in += len(message.content)
        if not message.is_text:
            tally.binary += 1
            return
        event = tally.coercer.coerce(message.content, None)
        if event is None:
            obj = read_event(message.content).obj
            if obj is not None:
                tally.state.feed_object(obj, message.content)
            return
        tally.events += 1
        tally.state.feed(event, message.content)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        socket = self.sockets.pop(flow, None)
        if socket is not None:
            socket.close(flow)
        tally = self.tallies.pop(flow, None)
        if tally is not None:
            flow_log(flow).info(summary(flow, tally))

    def _limits(self) -> tuple[Limits, float]:
        """The stream limits and the header timeout, as CodexFix parsed them."""
        fix = self.fix
        if fix is None or fix.settings is None:
            return Limits(), 60.0
        return fix.settings.limits, fix.settings.header_timeout

    def capture_dir(self) -> Path | None:
        fix = self.fix
        return None if fix is None or fix.settings is None else fix.settings.capture_dir


def downgraded(flow: http.HTTPFlow, why: str) -> http.Response:
    """The 426 that makes the Codex CLI continue over HTTP SSE (DESIGN.md), logged."""
    flow.metadata[MODE_KEY] = "downgraded"  # (the `response` hook then leaves it)
    why = printable(why)  # (it may quote the upstream)
    flow_log(flow).info(
        "websocket upgrade answered 426 (%s): the client continues over HTTP SSE", why
    )
    body = {
        "error": {
            "type": "upgrade_required",
            "code": "websocket_downgraded",
            "message": f"codex-fix: use HTTP streaming (SSE) for this endpoint ({why})",
        }
    }
    return http.Response.make(426, json.dumps(body), {"content-type": "application/json"})


def _upstream_failed(flow: http.HTTPFlow, message: str) -> http.Response:
    return downgraded(flow, f"upstream failed: {message}")


def _no_answer(flow: http.HTTPFlow, seconds: float) -> http.Response:
    return downgraded(flow, f"upstream sent no answer within {seconds:g}s")


class RepairedSocket(websocket_shim.ManagedSocket):
    """A repaired socket: the SocketFixer on mitmproxy's messages, with a summary line,
    stats and a capture per request. Holds no reference to the flow (the transport's
    weak registry maps the flow to this)."""

    def __init__(self, flow: http.HTTPFlow, limits: Limits, transport: WebSocketTransport) -> None:
        self.log: FlowLog = flow_log(flow)
        self.stats = transport.stats
        self.started = time.monotonic()
        self.fixer = SocketFixer(
            limits, self.log, self.started, transport.unknown_types, on_end=self._request_ended
        )
        self._capture_dir = transport.capture_dir()
        self._keep = transport.fix.keep_body() if transport.fix is not None else 0
        self._flow_id = flow.id
        self._where = f"GET {where(flow.request)} websocket"
        self._handshake = _handshake_facts(flow)
        self._captures: dict[int, _Captured] = {}

    # -- ManagedSocket ----------------------------------------------------------------

    @property
    def raw(self) -> bool:
        return self.fixer.passthrough

    def client_message(self, message: websocket.WebSocketMessage) -> None:
        before = self.fixer.current
        self.fixer.client_message(message.content, message.is_text, time.monotonic())
        request = self.fixer.current
        if request is not None and request is not before and self._capture_dir is not None:
            capture = Capture(
                self._capture_dir, time.time(), self._flow_id, self.log, part=request.index
            )
            self._captures[request.index] = _Captured(capture, message.content, time.time())
        self._close_captures()

    def server_message(self, message: websocket.WebSocketMessage) -> list[bytes] | None:
        request = self.fixer.current
        out = self.fixer.server_message(message.content, message.is_text, time.monotonic())
        if self._captures and request is not None and request.index in self._captures:
            capture = self._captures[request.index].capture
            capture.append_upstream(_as_sse(message.content))
            for sent in [message.content] if out is None else out:
                capture.append_client(_as_sse(sent))
            self._close_captures()
        return out

    def server_activity(self) -> None:
        self.fixer.server_activity(time.monotonic())

    def deadline(self) -> float | None:
        return self.fixer.deadline()

    def expired(self) -> list[bytes]:
        out = self.fixer.expire(time.monotonic())
        self._close_captures()
        return out

    def server_closed(self, code: int, reason: str) -> list[bytes]:
        if code == 1006:
            detail = "the upstream connection dropped without a WebSocket Close"
        else:
            detail = f"the upstream closed the WebSocket: code {code}"
            detail += f" {reason!r}" if reason else ""
        out = self.fixer.upstream_closed(detail)
        self._close_captures()
        return out

    def fail_open(self, exc: BaseException) -> None:
        self.fixer.go_raw(exc)
        self._close_captures()

    @property
    def keep(self) -> int:
        return self._keep

    # -- the end ----------------------------------------------------------------------

    def close(self, flow: http.HTTPFlow) -> None:
        """The socket ended: a request still in flight ends with it; one summary line."""
        ws = flow.websocket
        closed_by = (
            "-" if ws is None or ws.closed_by_client is None else _closer(ws.closed_by_client)
        )
        self.fixer.client_closed(f"the socket closed (by {closed_by}) before its terminal")
        self._close_captures()
        counts = self.fixer.counts
        outcomes = ",".join(f"{kind}:{n}" for kind, n in counts.outcomes.items()) or "-"
        close = "-" if ws is None or ws.close_code is None else str(ws.close_code)
        self.log.info(
            "websocket summary: %s requests=%d outcomes=%s messages=client:%d server:%d "
            "binary=%d bytes=%d->%d duration=%.2fs close=%s by %s%s",
            self._where,
            counts.requests,
            outcomes,
            counts.client_messages,
            counts.server_messages,
            counts.binary,
            counts.bytes_in,
            counts.bytes_out,
            time.monotonic() - self.started,
            close,
            closed_by,
            " (relayed unchanged after an error)" if self.fixer.passthrough else "",
        )

    def _request_ended(self, request: SocketRequest) -> None:
        outcome = request.outcome
        assert outcome is not None
        report = request.report
        duration = time.monotonic() - request.started
        ttfb = (
            None if request.first_message_at is None else request.first_message_at - request.started
        )
        line = " ".join(
            [
                f"{self._where} request={request.index}",
                *report_parts(report, outcome, duration, ttfb),
            ]
        )
        self.log.info("summary: %s", line)
        self.stats.add(report, outcome)
        captured = self._captures.get(request.index)
        if captured is not None:  # closed once the message at hand is written to it
            captured.ended = (request, ttfb)

    def _close_captures(self) -> None:
        if not self._captures:
            return
        for index, captured in list(self._captures.items()):
            if captured.ended is None:
                continue
            del self._captures[index]
            request, ttfb = captured.ended
            for message in request.injected:
                captured.capture.append_client(_as_sse(message))
            facts = replace(
                self._handshake,
                request_body=captured.body,
                duration_s=time.time() - captured.started,
                ttfb_s=ttfb,
            )
            captured.capture.close(
                facts, request.report, outcome=request.outcome, warnings=request.budget.lines
            )


@dataclass
class _Captured:
    """The capture of one request: its `response.create`, and its end once it came."""

    capture: Capture
    body: bytes
    started: float  # wall clock
    ended: tuple[SocketRequest, float | None] | None = None  # the request, its ttfb


def _handshake_facts(flow: http.HTTPFlow) -> FlowFacts:
    """The upgrade's facts, copied once: each request's capture record starts from them."""
    request, response = flow.request, flow.response
    return FlowFacts(
        method=request.method,
        url=request.pretty_url,
        http_version=request.http_version,
        request_headers=list(request.headers.items(multi=True)),
        request_body=None,
        response_status=response.status_code if response else None,
        response_headers=list(response.headers.items(multi=True)) if response else (),
    )


def _as_sse(message: bytes) -> bytes:
    """A message as the SSE frame of the same event (one `data:` line per line)."""
    return b"data: " + message.replace(b"\n", b"\ndata: ") + b"\n\n"


def summary(flow: http.HTTPFlow, tally: Tally) -> str:
    """The one INFO line per passed-through WebSocket."""
    ws = flow.websocket
    close = f"{ws.close_code}" if ws is not None and ws.close_code is not None else "-"
    by = "-" if ws is None or ws.closed_by_client is None else _closer(ws.closed_by_client)
    parts = [
        f"GET {where(flow.request)} websocket",
        f"messages=client:{tally.client_messages} server:{tally.server_messages}",
        f"events={tally.events}",
        f"binary={tally.binary}",
        f"bytes={tally.bytes_in}",
        f"duration={time.monotonic() - tally.started:.2f}s",
        f"terminal={tally.state.terminal or '-'}",
        f"close={close} by {by}",
        f"warnings={tally.budget.count}",
    ]
    return "websocket summary: " + " ".join(parts)


def _closer(by_client: bool) -> str:
    return "client" if by_client else "server"
