"""The ChatGPT backend as the Codex CLI needs it with a ChatGPT login: account routing, a
models list, and `…/codex/responses` over HTTP SSE and over the Responses WebSocket, one
case per `/s/<name>/` path prefix (`websocket_faults()`: the faults of the WebSocket
tests and of scripts/websocket_matrix.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .bodies import CODEX_TRANSCRIPT, sse_events
from .codex import ACCOUNT_ID
from .faults import CUT, SequenceBackend, payload, rewrite_completed, tool_call_turn
from .scenario import (
    Handshake,
    Headers,
    Reply,
    Scenario,
    WebSocketScript,
    select_scenario_name,
)


def accounts_check() -> dict[str, object]:
    """`/wham/accounts/check`: Codex routes every ChatGPT request by it (0.169); the
    backend origin `NO_CONSTRAINT` keeps it on `chatgpt_base_url`."""
    account = {
        "id": ACCOUNT_ID,
        "structure": "personal",
        "plan_type": "plus",
        "workspace_backend_origin": "NO_CONSTRAINT",
        "account_routing_override": "NO_CONSTRAINT",
    }
    return {"accounts": [account], "account_ordering": [ACCOUNT_ID]}


def json_scenario(body: object) -> Scenario:
    """A JSON response with a content-length."""
    return Scenario(
        headers=(("content-type", "application/json"),),
        parts=(json.dumps(body).encode(),),
        framing="content-length",
    )


@dataclass(frozen=True)
class ChatGptCase:
    """What `/s/<name>/backend-api/codex/responses` plays: a WebSocket upgrade is played
    by `websocket`; the n-th POST (SSE) gets `sse[n]`, the last one repeating."""

    websocket: WebSocketScript
    sse: tuple[Scenario, ...]
    description: str = ""


class ChatGptBackend(SequenceBackend):
    """The ChatGPT backend as Codex 0.169 needs it: account routing, a models list, and
    `…/codex/responses` answering a POST with `sse_frames` and a WebSocket upgrade with
    `ws_messages` (the same events, one JSON message each).

    `cases`: more `…/codex/responses` endpoints, one per `/s/<name>/` path prefix
    (`chatgpt_config(f"{backend.https_url}/s/{name}")` points the Codex CLI at one); the
    requests of a case are recorded under its name, WebSocket upgrades and POSTs alike.
    """

    def __init__(
        self,
        sse_frames: Sequence[bytes] = (),
        ws_messages: Sequence[bytes] = (),
        *,
        cases: Mapping[str, ChatGptCase] | None = None,
        **ports: int,
    ) -> None:
        routes = {
            "/wham/accounts/check": json_scenario(accounts_check()),
            "/codex/models": json_scenario({"models": []}),
        }
        super().__init__({}, routes, **ports)
        self.responses = Scenario(parts=tuple(sse_frames))
        self.websocket = Scenario(parts=tuple(ws_messages), websocket=True)
        self.cases = dict(cases or {})

    def resolve(self, path: str, headers: Headers) -> tuple[str, Scenario]:
        if not path.split("?", 1)[0].endswith("/codex/responses"):
            return super().resolve(path, headers)
        upgrade = any(k.lower() == "upgrade" and "websocket" in v.lower() for k, v in headers)
        name = select_scenario_name(path, headers)
        case = self.cases.get(name)
        if case is None:
            return "/codex/responses", self.websocket if upgrade else self.responses
        if upgrade:
            return name, Scenario(websocket_script=case.websocket)
        posts = [r for r in self.requests_for(name) if r.method == "POST"]
        return name, case.sse[min(len(posts), len(case.sse) - 1)]


# -- The Codex WebSocket transport's faults -------------------------------------------------
# One `ChatGptCase` per fault, shared by tests/test_e2e_codex_websocket.py and
# scripts/websocket_matrix.py. A warm-up gets an empty completed. A transport fault (a
# close, a drop, a stall, a refused upgrade) is transient: the request after it (a
# reconnect's) gets the healthy answer, and so does SSE (the CLI's fallback). A malformed
# response is the backend's bug: every request gets it, over the WebSocket and over SSE.

WARMUP_ID = "resp_codexfix_warmup"
TOOL_CALL_RESPONSE_ID = "resp_codexfix_tool_call"
USAGE_LIMIT_MESSAGE = "The usage limit has been reached"


def ws_text(frames: Sequence[bytes], response_id: str | None = None) -> tuple[str, ...]:
    """SSE frames as WebSocket messages (the event's JSON, compact, one message each), the
    response's `id` replaced by `response_id` when given."""
    messages = []
    for frame in frames:
        event = payload(frame)
        response = event.get("response")
        if response_id is not None and isinstance(response, dict) and "id" in response:
            event["response"] = {**response, "id": response_id}
        messages.append(json.dumps(event, separators=(",", ":")))
    return tuple(messages)


def warmup_reply(frames: Sequence[bytes], response_id: str = WARMUP_ID) -> Reply:
    """The answer to a warm-up (`generate: false`): `response.created` and an empty but
    well-formed `response.completed` (an id, no output, zero usage)."""
    created, completed = payload(frames[0]), payload(frames[-1])
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    created["response"] = {**created["response"], "id": response_id}
    completed["response"] = {
        **completed["response"],
        "id": response_id,
        "output": [],
        "usage": usage,
    }
    completed["sequence_number"] = 1
    events = (created, completed)
    return Reply(tuple(json.dumps(e, separators=(",", ":")) for e in events))


def error_frame(status: int, error_type: str, message: str) -> str:
    """An error as the Codex backend sends it on the WebSocket: the Codex CLI treats it as
    an HTTP error `status` (codex-api's `WrappedWebsocketErrorEvent`)."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    return json.dumps({"type": "error", "status": status, "error": error})


def refused(status: int, message: str) -> Handshake:
    """An upgrade answered with `status` and an OpenAI-style JSON error."""
    body = {"error": {"message": message, "type": "server_error", "code": None}}
    return Handshake(status, (("content-type", "application/json"),), json.dumps(body).encode())


def websocket_faults(transcript: bytes | None = None) -> dict[str, ChatGptCase]:
    """The faults of the Codex WebSocket transport, made from `transcript` (default: the
    shipped one), by name."""
    frames = sse_events(transcript or CODEX_TRANSCRIPT.read_bytes())
    head = ws_text(frames[:CUT])
    healthy = Reply(ws_text(frames))
    sse = (Scenario(parts=tuple(frames)),)
    warmup = warmup_reply(frames)

    def case(description: str, *replies: Reply, handshake: Handshake | None = None) -> ChatGptCase:
        script = WebSocketScript(
            replies=(*replies, healthy),
            handshakes=(handshake or Handshake(),),
            warmup=warmup,
        )
        return ChatGptCase(script, sse, description)

    def malformed(description: str, bad: list[bytes]) -> ChatGptCase:
        script = WebSocketScript(replies=(Reply(ws_text(bad)),), warmup=warmup)
        return ChatGptCase(script, (Scenario(parts=tuple(bad)),), description)

    no_done = [f for f in frames if b'"type":"response.output_item.done"' not in f]
    partial_usage = rewrite_completed(frames, usage={"input_tokens": 2239})
    tool_call = ws_text(tool_call_turn(frames), TOOL_CALL_RESPONSE_ID)
    unavailable = refused(503, "The service is temporarily unavailable.")
    return {
        "healthy": case("healthy turn", healthy),
        "tool-call": case("a tool call (`get_goal`), then the answer", Reply(tool_call)),
        "deltas-only": malformed("no `output_item.done`", no_done),
        "no-id": malformed("completed without `response.id`", rewrite_completed(frames, id=None)),
        "partial-usage": malformed(
            "completed with `usage` without output/total tokens", partial_usage
        ),
        "close": case("Close frame mid-response", Reply(head, "close", close_code=1011)),
        "drop": case("TCP reset mid-response", Reply(head, "drop")),
        "stall": case("silent mid-response, socket open", Reply(head, "stall")),
        "handshake-503": case("upgrade answered 503", handshake=unavailable),
        "handshake-403": case(
            "upgrade answered 403", handshake=refused(403, "Forbidden: WebSockets not allowed")
        ),
        "handshake-reset": case(
            "TCP reset after the upgrade request", handshake=Handshake(reset=True)
        ),
        "handshake-silent": case("upgrade never answered", handshake=Handshake(delay=None)),
        "error-429": case(
            "`error` message with `status: 429`",
            Reply((error_frame(429, "usage_limit_reached", USAGE_LIMIT_MESSAGE),)),
        ),
    }
