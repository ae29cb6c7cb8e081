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
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mitmproxy import ctx, exceptions, http

from ..accumulate.responses import ResponsesAccumulator
from ..coercion import Coercer, UnknownTypes, WarningBudget
from ..fixer import Limits
from ..models.responses import RESPONSES_EVENT, ResponsesEvent
from ..protocols import Protocol, endpoints_pattern
from ..reading import read_event
from ..report import printable
from . import shim, websocket_shim
from .repaired_socket import RepairedSocket, closer
from .summary import Stats, flow_log, where

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
            fix = self.fix
            socket = RepairedSocket(
                flow,
                self._limits()[0],
                stats=self.stats,
                unknown_types=self.unknown_types,
                capture_dir=self.capture_dir(),
                keep=fix.keep_body() if fix is not None else 0,
            )
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


def summary(flow: http.HTTPFlow, tally: Tally) -> str:
    """The one INFO line per passed-through WebSocket."""
    ws = flow.websocket
    close = f"{ws.close_code}" if ws is not None and ws.close_code is not None else "-"
    by = "-" if ws is None or ws.closed_by_client is None else closer(ws.closed_by_client)
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
