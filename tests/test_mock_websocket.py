"""The mock backend's WebSocket (codexfix.testing.websocket): a `Scenario` with
``websocket=True``, and a `WebSocketScript` (handshakes, replies, warm-ups, endings,
binary and fragmented messages, permessage-deflate, and what it records).

Checked with `WebSocketClient` (a plain wsproto client) over a real socket.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator, Sequence

import pytest
from wsproto.events import AcceptConnection, RejectConnection
from wsproto.extensions import Extension, PerMessageDeflate

from codexfix.testing import codex
from codexfix.testing.backend import MockBackend
from codexfix.testing.chatgpt import ChatGptBackend, ChatGptCase, error_frame
from codexfix.testing.scenario import (
    Fragmented,
    Handshake,
    RecordedRequest,
    Reply,
    ReplyEnd,
    Scenario,
    WebSocketClose,
    WebSocketScript,
)
from codexfix.testing.websocket import WebSocketClient

from support.harness import wait_until

PARTS = (b'{"type":"a","n":1}', b'{"type":"b","n":2}', b'{"type":"c","n":3}')
PATH = "backend-api/codex/responses"
WARMUP = json.dumps({"type": "response.create", "generate": False, "input": []})
WARMED = Reply(('{"type":"response.completed","response":{"id":"resp_warm"}}',))


def create(n: int, previous: str | None = None) -> str:
    message = {"type": "response.create", "input": [n]}
    return json.dumps(message | ({"previous_response_id": previous} if previous else {}))


def answer(n: int, end: ReplyEnd = "open") -> Reply:
    return Reply((f'{{"type":"answer","n":{n}}}',), end)


@pytest.fixture
def mb(mock_backend: MockBackend) -> MockBackend:
    mock_backend.scenarios.update(
        {
            "ws": Scenario(parts=PARTS, websocket=True, delay=0.01),
            "ws-cut": Scenario(parts=PARTS[:1], websocket=True, end="cut"),
            "ws-drop": Scenario(parts=PARTS[:1], websocket=True, end="drop"),
            "ws-stall": Scenario(parts=PARTS[:1], websocket=True, end="stall"),
            "refuse": Scenario(
                status=426, headers=(("content-type", "text/plain"),), parts=(b"no",)
            ),
        }
    )
    return mock_backend


def script(mb: MockBackend, name: str, played: WebSocketScript) -> str:
    """Add a scenario playing `played`; its path."""
    mb.scenarios[name] = Scenario(websocket_script=played)
    return f"/s/{name}/{PATH}"


def open_ws(mb: MockBackend, target: str, extensions: Sequence[Extension] = ()) -> WebSocketClient:
    client = WebSocketClient.open(mb.http_port)
    accepted = client.connect(target, extensions=extensions)
    assert isinstance(accepted, AcceptConnection)
    return client


@pytest.fixture
def clients() -> Iterator[list[WebSocketClient]]:
    """Clients to close at the end of the test, whatever happened."""
    opened: list[WebSocketClient] = []
    yield opened
    for client in opened:
        client.sock.close()


def only_request(mb: MockBackend, name: str) -> RecordedRequest:
    (request,) = mb.requests_for(name)
    return request


# -- websocket=True: the parts in answer to every message --------------------------------


def test_each_client_message_is_answered_with_the_parts_as_text_messages(
    mb: MockBackend,
) -> None:
    client = open_ws(mb, f"/s/ws/{PATH}")
    for n in (1, 2):
        client.send_text(f'{{"type":"response.create","n":{n}}}')
        assert client.receive(3) == [p.decode() for p in PARTS]
    client.close()
    assert client.closed  # the server answered the close frame
    request = only_request(mb, "ws")
    assert request.method == "GET" and (request.header("upgrade") or "").lower() == "websocket"
    assert request.messages == [
        b'{"type":"response.create","n":1}',
        b'{"type":"response.create","n":2}',
    ]
    assert request.handshake_status == 101 and request.extensions == ""


def test_nothing_is_sent_before_the_client_asks(mb: MockBackend) -> None:
    client = open_ws(mb, f"/s/ws/{PATH}")
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.receive(1)
    client.sock.settimeout(5)
    client.send_text("go")
    assert client.receive(3)[0] == PARTS[0].decode()
    client.close()


def test_cut_closes_the_tcp_connection_without_a_close_frame(mb: MockBackend) -> None:
    client = open_ws(mb, f"/s/ws-cut/{PATH}")
    client.send_text("go")
    assert client.receive(5) == [PARTS[0].decode()]
    assert client.closed and client.close_code is None
    client.sock.close()
    assert only_request(mb, "ws-cut").close == WebSocketClose("server", "eof")


def test_drop_resets_the_connection(mb: MockBackend) -> None:
    client = open_ws(mb, f"/s/ws-drop/{PATH}")
    client.send_text("go")
    with pytest.raises(ConnectionResetError):
        client.receive(5)
    client.sock.close()
    assert only_request(mb, "ws-drop").close == WebSocketClose("server", "reset")


def test_stall_goes_silent_and_records_the_abandon(mb: MockBackend) -> None:
    client = open_ws(mb, f"/s/ws-stall/{PATH}")
    client.send_text("go")
    assert client.receive(1) == [PARTS[0].decode()]
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.receive(1)
    client.sock.close()
    wait_until(lambda: only_request(mb, "ws-stall").abandoned, "stall not marked abandoned")
    assert only_request(mb, "ws-stall").close == WebSocketClose("client", "eof")


def test_a_scenario_without_websocket_answers_the_upgrade_with_its_status(
    mb: MockBackend,
) -> None:
    client = WebSocketClient.open(mb.http_port)
    rejected = client.connect(f"/s/refuse/{PATH}")
    client.sock.close()
    assert isinstance(rejected, RejectConnection) and rejected.status_code == 426
    assert client.reject_body == b"no"


def test_the_websocket_works_over_tls(mb: MockBackend) -> None:
    tls = ssl.create_default_context(cafile=mb.cert_path)
    tls.set_alpn_protocols(["http/1.1"])  # RFC 6455 upgrades are HTTP/1.1
    client = WebSocketClient.open(mb.https_port, tls)
    assert isinstance(client.connect("/s/ws/v1/responses"), AcceptConnection)
    client.send_text("go")
    assert len(client.receive(3)) == 3
    client.close()
    assert only_request(mb, "ws").tls


# -- scripts: the handshake --------------------------------------------------------------


def test_a_refused_upgrade_gets_its_status_and_body(mb: MockBackend) -> None:
    body = json.dumps({"error": {"message": "unavailable"}}).encode()
    refusal = Handshake(503, (("content-type", "application/json"),), body)
    target = script(mb, "down", WebSocketScript(handshakes=(refusal,)))
    client = WebSocketClient.open(mb.http_port)
    rejected = client.connect(target)
    client.sock.close()
    assert isinstance(rejected, RejectConnection) and rejected.status_code == 503
    assert (b"content-type", b"application/json") in rejected.headers
    assert client.reject_body == body
    assert only_request(mb, "down").handshake_status == 503


def test_a_reset_handshake_is_a_connection_error(mb: MockBackend) -> None:
    target = script(mb, "reset", WebSocketScript(handshakes=(Handshake(reset=True),)))
    client = WebSocketClient.open(mb.http_port)
    with pytest.raises(ConnectionError):
        client.connect(target)
    client.sock.close()
    assert only_request(mb, "reset").handshake_status is None


def test_an_unanswered_handshake_hangs_until_the_client_leaves(mb: MockBackend) -> None:
    target = script(mb, "silent", WebSocketScript(handshakes=(Handshake(delay=None),)))
    client = WebSocketClient.open(mb.http_port, timeout=0.3)
    with pytest.raises(TimeoutError):
        client.connect(target)
    client.sock.close()
    wait_until(lambda: only_request(mb, "silent").abandoned, "the wait was not recorded")


def test_handshakes_are_played_connection_after_connection(
    mb: MockBackend, clients: list[WebSocketClient]
) -> None:
    handshakes = (Handshake(403), Handshake(), Handshake(500))
    target = script(mb, "seq", WebSocketScript(handshakes=handshakes))
    statuses = []
    for _ in range(4):
        client = WebSocketClient.open(mb.http_port)
        clients.append(client)
        outcome = client.connect(target, headers=[(b"openai-beta", b"responses_websockets=x")])
        statuses.append(101 if isinstance(outcome, AcceptConnection) else outcome.status_code)
    assert statuses == [403, 101, 500, 500]  # the last one repeats
    recorded = mb.requests_for("seq")
    assert [r.handshake_status for r in recorded] == statuses
    assert all(r.header("openai-beta") == "responses_websockets=x" for r in recorded)


# -- scripts: the replies ----------------------------------------------------------------


def test_a_warmup_gets_its_reply_and_requests_take_the_replies_in_turn(
    mb: MockBackend,
) -> None:
    played = WebSocketScript(replies=(answer(1), answer(2)), warmup=WARMED)
    client = open_ws(mb, script(mb, "turns", played))
    client.send_text(WARMUP)
    assert client.receive(1) == list(WARMED.messages)
    client.send_text(create(1, "resp_warm"))
    client.send_text(create(2, "resp_1"))
    client.send_text(create(3))
    client.send_text(WARMUP)  # a second warm-up on the socket gets the warm-up reply too
    assert client.receive(4) == [
        '{"type":"answer","n":1}',
        '{"type":"answer","n":2}',
        '{"type":"answer","n":2}',  # the last reply repeats
        *WARMED.messages,
    ]
    client.close()
    request = only_request(mb, "turns")
    assert [m.get("input") for m in request.response_creates()] == [[], [1], [2], [3], []]
    assert request.incremental() == [False, True, True, False, False]
    assert request.close == WebSocketClose("client", "close", 1000)


def test_messages_of_other_types_are_recorded_but_not_answered(mb: MockBackend) -> None:
    client = open_ws(mb, script(mb, "types", WebSocketScript(replies=(answer(1),))))
    client.send_text('{"type":"response.processed","response_id":"resp_1"}')
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.receive(1)
    client.sock.settimeout(5)
    client.send_text("not json")  # not a typed message: answered
    assert client.receive(1) == ['{"type":"answer","n":1}']
    client.close()
    assert only_request(mb, "types").messages[0].startswith(b'{"type":"response.processed"')


def test_replies_are_counted_over_the_connections(
    mb: MockBackend, clients: list[WebSocketClient]
) -> None:
    """A reconnect's request gets the reply after the one the dropped socket played."""
    played = WebSocketScript(replies=(answer(1, "drop"), answer(2)), warmup=WARMED)
    target = script(mb, "again", played)
    first = open_ws(mb, target)
    clients.append(first)
    first.send_text(WARMUP)
    first.send_text(create(1, "resp_warm"))
    with pytest.raises(ConnectionResetError):
        first.receive(3)
    assert first.frames == [1, 1]  # the warm-up's answer and the first reply came
    second = open_ws(mb, target)
    second.send_text(create(1))
    assert second.receive(1) == ['{"type":"answer","n":2}']
    second.sock.close()  # the Codex CLI's ending: TCP closed, no Close frame
    recorded = mb.requests_for("again")
    assert [r.incremental() for r in recorded] == [[False, True], [False]]
    wait_until(lambda: recorded[1].close is not None, "the client's leaving not recorded")
    assert [r.close for r in recorded] == [
        WebSocketClose("server", "reset"),
        WebSocketClose("client", "eof"),
    ]


def test_a_close_reply_sends_a_close_frame_after_its_messages(mb: MockBackend) -> None:
    reply = Reply(('{"type":"a"}', '{"type":"b"}'), "close", close_code=1011)
    client = open_ws(mb, script(mb, "close", WebSocketScript(replies=(reply,))))
    client.send_text(create(1))
    assert client.receive(3) == ['{"type":"a"}', '{"type":"b"}']
    assert client.closed and client.close_code == 1011
    client.sock.close()
    assert only_request(mb, "close").close == WebSocketClose("server", "close", 1011)


def test_a_stall_reply_records_the_abandon_when_the_client_gives_up(mb: MockBackend) -> None:
    played = WebSocketScript(replies=(Reply(('{"type":"a"}',), "stall"),))
    client = open_ws(mb, script(mb, "stall", played))
    client.send_text(create(1))
    assert client.receive(1) == ['{"type":"a"}']
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.receive(1)
    client.sock.close()
    wait_until(lambda: only_request(mb, "stall").abandoned, "stall not marked abandoned")


def test_error_frames_binary_and_fragmented_messages(mb: MockBackend) -> None:
    error = error_frame(429, "usage_limit_reached", "The usage limit has been reached")
    text = json.dumps({"type": "response.output_text.delta", "delta": "x" * 100})
    reply = Reply((error, b"\x00\x01binary", Fragmented.split(text, 4)))
    client = open_ws(mb, script(mb, "frames", WebSocketScript(replies=(reply,))))
    client.send_text(create(1))
    assert client.receive(3) == [error, b"\x00\x01binary", text]
    assert client.frames == [1, 1, 4]
    assert json.loads(error)["status"] == 429
    client.close()


def test_fragmented_and_binary_client_messages_are_recorded_whole(mb: MockBackend) -> None:
    client = open_ws(mb, script(mb, "record", WebSocketScript(replies=(answer(1),))))
    client.send_text(create(7), fragments=3)
    client.send_bytes(b"\xff\x00")
    assert len(client.receive(2)) == 2  # a binary message is answered too
    client.close()
    assert only_request(mb, "record").messages == [create(7).encode(), b"\xff\x00"]


# -- scripts: permessage-deflate and size ------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "deflate", "negotiated"),
    [(True, True, True), (True, False, False), (False, True, False)],
)
def test_permessage_deflate_is_negotiated_when_offered_and_allowed(
    mb: MockBackend, offered: bool, deflate: bool, negotiated: bool
) -> None:
    played = WebSocketScript(replies=(Reply((PARTS[0].decode() * 50,)),), deflate=deflate)
    target = script(mb, "deflate", played)
    client = WebSocketClient.open(mb.http_port)
    accepted = client.connect(target, extensions=[PerMessageDeflate()] if offered else [])
    assert isinstance(accepted, AcceptConnection)
    assert [e.name for e in accepted.extensions] == (["permessage-deflate"] if negotiated else [])
    client.send_text(create(1) + " " * 1000)  # compressed by the client when negotiated
    assert client.receive(1) == [PARTS[0].decode() * 50]
    client.close()
    recorded = only_request(mb, "deflate")
    assert recorded.extensions.startswith("permessage-deflate") == negotiated
    assert recorded.messages == [(create(1) + " " * 1000).encode()]


@pytest.mark.parametrize("deflate", [True, False])
def test_a_10_mb_message_arrives_whole(mb: MockBackend, deflate: bool) -> None:
    big = json.dumps({"type": "response.output_text.delta", "delta": "y" * 10_000_000})
    played = WebSocketScript(replies=(Reply((big, '{"type":"after"}')),), deflate=deflate)
    client = open_ws(
        mb, script(mb, "big", played), extensions=[PerMessageDeflate()] if deflate else []
    )
    client.send_text(create(1))
    assert client.receive(2) == [big, '{"type":"after"}']
    client.close()


# -- the ChatGPT backend's cases -----------------------------------------------------------


def test_chatgpt_backend_plays_one_case_per_path_prefix() -> None:
    """POSTs take the case's SSE scenarios in turn, an upgrade its script; the account
    routing answers under the prefix too; all recorded under the case's name."""
    sse = (Scenario(parts=(b"first",)), Scenario(parts=(b"second",)))
    case = ChatGptCase(WebSocketScript(replies=(answer(1),)), sse)
    with ChatGptBackend(cases={"c": case}) as backend:
        url = f"{backend.http_url}/s/c/{PATH}"
        bodies = []
        for _ in range(3):
            with urllib.request.urlopen(urllib.request.Request(url, b"{}"), timeout=5) as response:
                bodies.append(response.read())
        assert bodies == [b"first", b"second", b"second"]
        client = open_ws(backend, f"/s/c/{PATH}")
        client.send_text(create(1))
        assert client.receive(1) == ['{"type":"answer","n":1}']
        client.close()
        check = f"{backend.http_url}/s/c/backend-api/wham/accounts/check"
        with urllib.request.urlopen(check, timeout=5) as response:
            assert json.load(response)["accounts"][0]["id"] == codex.ACCOUNT_ID
        assert [r.method for r in backend.requests_for("c")] == ["POST", "POST", "POST", "GET"]
