"""The WebSocket transport (codexfix.mitm.websocket): downgrade to SSE, or pass through.

In-process with mitmproxy's test helpers for the option, the scope and the logging; then
end to end with the real Codex CLI on its built-in ChatGPT path (a fake login, its
ChatGPT backend moved to the mock's TLS port, reached through mitmdump in regular-proxy
mode): with `downgrade` its WebSocket upgrade is answered 426 and the turn completes
over SSE; with `passthrough` the turn runs over the WebSocket and is summarized. These
run for the pinned and the latest Codex CLI (test ids `codex-<version>`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from codexfix.mitm.addon import CodexFix
from codexfix.mitm.websocket import MODE_KEY, WebSocketTransport
from codexfix.testing import codex
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.chatgpt import ChatGptBackend
from codexfix.testing.codex import CodexCli
from codexfix.testing.faults import payload, streamed_text
from codexfix.testing.mitmdump import Mitmdump

from support.codex import requires_codex
from support.harness import mitmdump, wait_until

FRAMES = sse_events(CODEX_TRANSCRIPT.read_bytes())
EVENTS = [json.dumps(payload(f), separators=(",", ":")).encode() for f in FRAMES]
ANSWER = streamed_text(FRAMES) + "\n"
CODEX_URL = "https://chatgpt.com/backend-api/codex/responses?key=sk-secret-query"
UPGRADE = {
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
    "openai-beta": "responses_websockets=2026-02-06",
    "authorization": "Bearer sk-secret-token",
    "chatgpt-account-id": "acct-secret",
    "cookie": "session=secret-cookie",
}
SECRETS = ("sk-secret-query", "sk-secret-token", "acct-secret", "secret-cookie")


@pytest.fixture
def transport() -> Iterator[tuple[WebSocketTransport, taddons.context]]:
    addon = WebSocketTransport()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, codexfix_websocket="downgrade")
        yield addon, tctx


def upgrade_flow(url: str = CODEX_URL, method: str = "GET", **headers: str) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make(method, url, b"", {**UPGRADE, **headers})
    return flow


def test_the_default_is_repair() -> None:
    addon = WebSocketTransport()
    with taddons.context(addon) as tctx:
        tctx.configure(addon)
        assert tctx.options.codexfix_websocket == "repair"


def test_a_bad_mode_is_rejected_naming_the_option() -> None:
    addon = WebSocketTransport()
    expected = pytest.raises(exceptions.OptionsError, match="codexfix_websocket: expected one of")
    with taddons.context(addon) as tctx, expected:
        tctx.configure(addon, codexfix_websocket="upgrade")


def test_downgrade_answers_the_upgrade_with_426_and_logs_no_secret(
    transport: tuple[WebSocketTransport, taddons.context], caplog: pytest.LogCaptureFixture
) -> None:
    addon, _ = transport
    flow = upgrade_flow()
    with caplog.at_level(logging.INFO, logger="codexfix"):
        addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 426
    assert json.loads(flow.response.content or b"")["error"]["type"] == "upgrade_required"
    (record,) = caplog.records
    assert "answered 426" in record.getMessage()
    assert "chatgpt.com/backend-api/codex/responses" in record.getMessage()
    for secret in SECRETS:
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("url", "method", "upgrade"),
    [
        (CODEX_URL, "POST", "websocket"),  # the SSE request itself
        (CODEX_URL, "GET", ""),  # a plain GET
        ("https://api.openai.com/v1/realtime", "GET", "websocket"),  # another WebSocket
        ("https://example.com/backend-api/codex/responses-other", "GET", "websocket"),
    ],
)
def test_other_requests_are_left_alone(
    transport: tuple[WebSocketTransport, taddons.context], url: str, method: str, upgrade: str
) -> None:
    addon, _ = transport
    flow = upgrade_flow(url, method, upgrade=upgrade)
    addon.requestheaders(flow)
    assert flow.response is None and not flow.metadata


def test_the_responses_api_path_is_downgraded_too(
    transport: tuple[WebSocketTransport, taddons.context],
) -> None:
    addon, _ = transport
    flow = upgrade_flow("https://api.openai.com/v1/responses", upgrade="WebSocket")
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 426


def passthrough_flow(
    addon: WebSocketTransport, tctx: taddons.context, messages: list[tuple[bool, bytes]]
) -> http.HTTPFlow:
    """A passed-through WebSocket flow that carried `messages` (from_client, content)."""
    tctx.configure(addon, codexfix_websocket="passthrough")
    flow = tflow.twebsocketflow()
    assert flow.websocket is not None
    flow.websocket.messages.clear()
    flow.request = upgrade_flow().request
    addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 101  # untouched
    addon.websocket_start(flow)
    assert flow.websocket is not None
    for from_client, content in messages:
        opcode = Opcode.TEXT if content[:1] in (b"{", b"[") else Opcode.BINARY
        flow.websocket.messages.append(WebSocketMessage(opcode, from_client, content, time.time()))
        addon.websocket_message(flow)
    flow.websocket.close_code = 1000
    flow.websocket.closed_by_client = True
    addon.websocket_end(flow)
    return flow


def test_passthrough_counts_the_messages_in_one_summary(
    transport: tuple[WebSocketTransport, taddons.context], caplog: pytest.LogCaptureFixture
) -> None:
    addon, tctx = transport
    messages = [(True, b'{"type":"response.create","model":"gpt-5"}')]
    messages += [(False, event) for event in EVENTS]
    with caplog.at_level(logging.INFO, logger="codexfix"):
        flow = passthrough_flow(addon, tctx, messages)
    assert [m.content for m in flow.websocket.messages] == [m for _, m in messages]
    (record,) = [r for r in caplog.records if "websocket summary" in r.getMessage()]
    line = record.getMessage()
    assert f"messages=client:1 server:{len(EVENTS)} events={len(EVENTS)}" in line
    assert f"bytes={sum(map(len, EVENTS))}" in line
    assert "terminal=response.completed close=1000 by client warnings=0" in line
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for secret in SECRETS:
        assert secret not in caplog.text


def test_passthrough_warns_on_a_malformed_event_and_forwards_it(
    transport: tuple[WebSocketTransport, taddons.context], caplog: pytest.LogCaptureFixture
) -> None:
    addon, tctx = transport
    completed = payload(FRAMES[-1])
    del completed["response"]["id"]
    bad = json.dumps(completed).encode()
    messages = [(False, e) for e in EVENTS[:-1]] + [(False, bad), (False, b"\x00\x01")]
    with caplog.at_level(logging.INFO, logger="codexfix"):
        flow = passthrough_flow(addon, tctx, messages)
    assert flow.websocket is not None and flow.websocket.messages[-2].content == bad
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "coercion failed: event response.completed" in warning.getMessage()
    assert "response.id" in warning.getMessage()
    summary = next(r.getMessage() for r in caplog.records if "websocket summary" in r.getMessage())
    assert f"events={len(EVENTS) - 1} binary=1" in summary
    # A terminal by its type, though it fails its model (as on SSE): the warning says so.
    assert "terminal=response.completed " in summary and "warnings=1" in summary


def test_a_repaired_socket_summarizes_and_counts_each_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fix = CodexFix()
    addon = WebSocketTransport(fix)
    create = b'{"type":"response.create","model":"gpt-5"}'
    with taddons.context(fix, addon) as tctx:
        tctx.configure(fix)
        tctx.configure(addon)
        flow = tflow.twebsocketflow()
        assert flow.websocket is not None
        flow.request = upgrade_flow().request
        addon.requestheaders(flow)
        assert flow.metadata[MODE_KEY] == "repair" and flow.response is not None
        addon.websocket_start(flow)
        socket = addon.sockets[flow]

        def message(from_client: bool, content: bytes) -> WebSocketMessage:
            return WebSocketMessage(Opcode.TEXT, from_client, content, time.time())

        with caplog.at_level(logging.INFO, logger="codexfix"):
            socket.client_message(message(True, create))
            assert [socket.server_message(message(False, e)) for e in EVENTS] == [None] * len(
                EVENTS
            )
            socket.client_message(message(True, create))
            for e in EVENTS[:5]:
                socket.server_message(message(False, e))
            flow.websocket.close_code, flow.websocket.closed_by_client = 1006, True
            addon.websocket_end(flow)  # the Codex CLI's way to leave: TCP dropped
        stats = fix.stats_command().splitlines()
    assert "streams: 2" in stats and "protocol responses: 2" in stats
    assert "outcome completed: 1" in stats and "outcome aborted: 1" in stats
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("websocket ")[1].split(" ")[0] for line in lines if "request=" in line] == [
        "request=1",
        "request=2",
    ]
    assert any("requests=2 outcomes=completed:1,aborted:1 " in line for line in lines)
    assert "close=1006 by client" in lines[-1]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for secret in SECRETS:
        assert secret not in caplog.text


# -- the real Codex CLI ---------------------------------------------------------------


@pytest.fixture
def chatgpt_backend() -> Iterator[ChatGptBackend]:
    with ChatGptBackend(FRAMES, EVENTS) as mock:
        yield mock


def run_chatgpt_codex(
    cli: CodexCli, backend: ChatGptBackend, tmp_path: Path, websocket_mode: str
) -> tuple[codex.CodexResult, Mitmdump]:
    options = {"codexfix_websocket": websocket_mode, "ssl_insecure": "true"}
    with mitmdump(tmp_path, "regular", options=options) as proxy:
        config = codex.chatgpt_config(backend.https_url)
        home = codex.make_home(tmp_path / "home", config, codex.chatgpt_auth())
        env = {"HTTPS_PROXY": proxy.url, "CODEX_CA_CERTIFICATE": str(proxy.ca_cert)}
        result = codex.run_codex(home, env=env, timeout=60, cli=cli)
        # The summary lines are written when the flows end, just after Codex exits.
        wait_until(lambda: "summary: " in proxy.log_text(), "no summary in mitmdump's log")
    return result, proxy


@requires_codex
@pytest.mark.e2e
def test_codex_websocket_is_downgraded_and_the_turn_completes_over_sse(
    cli: CodexCli, chatgpt_backend: ChatGptBackend, tmp_path: Path
) -> None:
    result, proxy = run_chatgpt_codex(cli, chatgpt_backend, tmp_path, "downgrade")
    assert result.returncode == 0, result.describe()
    assert result.stdout == ANSWER
    assert "Falling back from WebSockets" not in result.stderr  # switched silently
    assert proxy.log_text().count("websocket upgrade answered 426") == 1
    turns = chatgpt_backend.requests_for("/codex/responses")
    assert [(r.method, r.header("accept")) for r in turns] == [("POST", "text/event-stream")]
    assert turns[0].header("chatgpt-account-id") == codex.ACCOUNT_ID  # the ChatGPT path
    assert "outcome=completed" in proxy.log_text()


@requires_codex
@pytest.mark.e2e
def test_codex_websocket_passes_through_and_is_summarized(
    cli: CodexCli, chatgpt_backend: ChatGptBackend, tmp_path: Path
) -> None:
    result, proxy = run_chatgpt_codex(cli, chatgpt_backend, tmp_path, "passthrough")
    assert result.returncode == 0, result.describe()
    assert result.stdout == ANSWER
    (turn,) = chatgpt_backend.requests_for("/codex/responses")
    assert turn.method == "GET" and (turn.header("openai-beta") or "").startswith(
        "responses_websockets="
    )
    # A prewarm request (`generate: false`), then the turn's request; each is answered.
    requests = [json.loads(m) for m in turn.messages]
    assert [(r["type"], r.get("generate")) for r in requests] == [
        ("response.create", False),
        ("response.create", None),
    ]
    log = proxy.log_text()
    assert "answered 426" not in log
    n = len(requests)
    assert (
        f"messages=client:{n} server:{n * len(EVENTS)} events={n * len(EVENTS)} binary=0 "
        f"bytes={n * sum(map(len, EVENTS))}"
    ) in log
    assert "terminal=response.completed" in log and "warnings=0" in log


@requires_codex
@pytest.mark.e2e
@pytest.mark.parametrize("supports_websockets", [False, True])
def test_codex_chatgpt_login_through_reverse_mode(
    cli: CodexCli, chatgpt_backend: ChatGptBackend, tmp_path: Path, supports_websockets: bool
) -> None:
    """The README's reverse mode for a ChatGPT login: a custom provider with
    `requires_openai_auth`; with `supports_websockets = true` the turn runs over the
    WebSocket, repaired in place (the default)."""
    mode = f"reverse:{chatgpt_backend.https_url}"
    with mitmdump(tmp_path, mode, options={"ssl_insecure": "true"}) as proxy:
        config = codex.chatgpt_provider_config(
            f"{proxy.url}/backend-api/codex", chatgpt_backend.https_url, supports_websockets
        )
        home = codex.make_home(tmp_path / "home", config, codex.chatgpt_auth())
        # Only the direct calls (account routing) need the mock's CA.
        env = {"CODEX_CA_CERTIFICATE": str(chatgpt_backend.cert_path)}
        result = codex.run_codex(home, env=env, timeout=60, cli=cli)
        wait_until(lambda: "summary: " in proxy.log_text(), "no summary in mitmdump's log")
        if supports_websockets:
            wait_until(lambda: "websocket summary: " in proxy.log_text(), proxy.log_text)
    assert result.returncode == 0, result.describe()
    assert result.stdout == ANSWER
    log = proxy.log_text()
    assert "answered 426" not in log
    turns = chatgpt_backend.requests_for("/codex/responses")
    assert turns[0].header("chatgpt-account-id") == codex.ACCOUNT_ID
    if supports_websockets:
        assert [r.method for r in turns] == ["GET"]
        # The warm-up and the turn's request, each answered and summarized.
        assert "summary: GET 127.0.0.1/backend-api/codex/responses websocket request=2 " in log
        assert "requests=2 outcomes=completed:2 " in log
    else:
        assert [r.method for r in turns] == ["POST"]
        assert "summary: POST 127.0.0.1/backend-api/codex/responses 200" in log
        assert "outcome=completed" in log
