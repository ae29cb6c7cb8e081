"""The Codex CLI's WebSocket transport: downgrade it to HTTP SSE, or pass it through.

With a ChatGPT login the Codex CLI first opens a WebSocket to
`/backend-api/codex/responses` (header `OpenAI-Beta: responses_websockets=…`) and sends
each request as one JSON message; the events come back as one JSON text message each.
SSE repair cannot help there. Answering the upgrade with HTTP 426 makes the Codex CLI
(0.169) switch to HTTP SSE for the rest of the session without telling the user (a 200,
for one, makes it retry the WebSocket first; DESIGN.md lists the others). So:

* `downgrade` (default): the upgrade gets a 426 from the proxy, upstream is never asked;
* `passthrough`: the WebSocket is left alone, but every server message is coerced into
  the Responses event models (a mismatch is a rate-limited warning, as for SSE) and
  counted for one summary line when the WebSocket ends.
"""

from __future__ import annotations

import json
import re
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mitmproxy import ctx, exceptions, http

from ..accumulate.responses import ResponsesAccumulator
from ..coercion import Coercer, UnknownTypes, WarningBudget
from ..fixer import Limits
from ..models.responses import RESPONSES_EVENT, ResponsesEvent
from ..protocols import Protocol, endpoints_pattern
from ..reading import read_event
from .summary import flow_log

MODES = ("downgrade", "passthrough")
# The Responses endpoints of DEFAULT_FILTER (scope.py): the Codex backend and the API.
RESPONSES_PATH = re.compile(endpoints_pattern(Protocol.RESPONSES))
_MATCHED = "codexfix.websocket"


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
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.unknown_types = UnknownTypes()
        # Per-flow tallies, not in flow.metadata (which must stay serializable).
        self.tallies: weakref.WeakKeyDictionary[http.HTTPFlow, Tally] = weakref.WeakKeyDictionary()

    def load(self, loader: Any) -> None:
        loader.add_option(
            "codexfix_websocket",
            str,
            "downgrade",
            "What to do with the Codex CLI's WebSocket transport to a Responses path: "
            "'downgrade' answers the upgrade with HTTP 426, so the client switches to HTTP "
            "SSE, which codex-fix repairs; 'passthrough' leaves the WebSocket alone and only "
            "validates and counts its messages.",
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

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.settings is None or not is_responses_upgrade(flow.request):
            return
        if self.settings.mode == "passthrough":
            flow.metadata[_MATCHED] = True
            return
        # A response set here is sent instead of contacting the upstream at all.
        body = {
            "error": {
                "type": "upgrade_required",
                "code": "websocket_downgraded",
                "message": "codex-fix: use HTTP streaming (SSE) for this endpoint",
            }
        }
        flow.response = http.Response.make(
            426, json.dumps(body), {"content-type": "application/json"}
        )
        flow_log(flow).info(
            "websocket upgrade answered 426 (codexfix_websocket=downgrade): "
            "the client continues over HTTP SSE"
        )

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(_MATCHED):
            return
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
        tally = self.tallies.pop(flow, None)
        if tally is not None:
            flow_log(flow).info(summary(flow, tally))


def summary(flow: http.HTTPFlow, tally: Tally) -> str:
    """The one INFO line per passed-through WebSocket."""
    ws = flow.websocket
    close = f"{ws.close_code}" if ws is not None and ws.close_code is not None else "-"
    by = "-" if ws is None or ws.closed_by_client is None else _closer(ws.closed_by_client)
    parts = [
        f"GET {_path(flow)} websocket",
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


def _path(flow: http.HTTPFlow) -> str:
    """Host and path without the query, as FlowLog prints them (a query may carry a key)."""
    return flow.request.host + flow.request.path.split("?", 1)[0]
