"""A Codex WebSocket repaired in place: the `SocketFixer` on mitmproxy's messages (driven
by `websocket_shim`), with a summary line, stats and a capture per request."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from mitmproxy import http, websocket

from ..capture import Capture, FlowFacts
from ..coercion import UnknownTypes
from ..fixer import Limits
from ..socket_fixer import SocketFixer, SocketRequest
from . import websocket_shim
from .summary import FlowLog, Stats, flow_log, report_parts, where


class RepairedSocket(websocket_shim.ManagedSocket):
    """A repaired socket: the SocketFixer on mitmproxy's messages, with a summary line,
    stats and a capture per request. Holds no reference to the flow (the transport's
    weak registry maps the flow to this)."""

    def __init__(
        self,
        flow: http.HTTPFlow,
        limits: Limits,
        *,
        stats: Stats,
        unknown_types: UnknownTypes,
        capture_dir: Path | None,
        keep: int,
    ) -> None:
        self.log: FlowLog = flow_log(flow)
        self.stats = stats
        self.started = time.monotonic()
        self.fixer = SocketFixer(
            limits, self.log, self.started, unknown_types, on_end=self._request_ended
        )
        self._capture_dir = capture_dir
        self._keep = keep
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
            "-" if ws is None or ws.closed_by_client is None else closer(ws.closed_by_client)
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


def closer(by_client: bool) -> str:
    return "client" if by_client else "server"
