"""The mock backend's WebSocket responder (codexfix.testing.websocket, ``websocket=True``).

Checked with a small wsproto client over a real socket: the handshake, the parts as text
messages after the client's first message, each way of ending, and the recording.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from codexfix.testing.backend import MockBackend
from codexfix.testing.scenario import RecordedRequest, Scenario

from support.harness import wait_until

TIMEOUT = 5.0
PARTS = (b'{"type":"a","n":1}', b'{"type":"b","n":2}', b'{"type":"c","n":3}')


class WsClient:
    """A blocking WebSocket client over one socket (plain or TLS), for tests.

    `connect()` returns the handshake outcome: AcceptConnection, or RejectConnection
    with the status (and RejectData with the body) when the server answered otherwise.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.closed = False
        self.close_code: int | None = None
        self.rejection: RejectConnection | None = None
        self.reject_body = b""

    @classmethod
    def open(
        cls, host: str, port: int, tls: ssl.SSLContext | None = None, timeout: float = TIMEOUT
    ) -> WsClient:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        return cls(sock)

    def connect(
        self, host: str, target: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Event:
        request = Request(host=host, target=target, extra_headers=headers or [])
        self.sock.sendall(self.ws.send(request))
        while not self.closed:
            for event in self._events():
                if isinstance(event, RejectData):
                    self.reject_body += event.data
                    if event.body_finished and self.rejection is not None:
                        return self.rejection
                elif isinstance(event, RejectConnection):
                    self.rejection = event
                    if not event.has_body:
                        return event
                elif isinstance(event, AcceptConnection):
                    return event
        raise ConnectionError("connection closed during the opening handshake")

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def receive(self, count: int) -> list[str]:
        """The next `count` text messages (fewer if the connection ends first)."""
        messages: list[str] = []
        text = ""
        while len(messages) < count and not self.closed:
            for event in self._events():
                if isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        messages.append(text)
                        text = ""
                elif isinstance(event, BytesMessage):
                    raise AssertionError("unexpected binary message")
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    self.closed = True
        return messages

    def close(self) -> None:
        """Send a close frame, wait (bounded) for the server's, then close the socket."""
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
            deadline = time.monotonic() + TIMEOUT
            while not self.closed and time.monotonic() < deadline:
                for event in self._events():
                    if isinstance(event, CloseConnection):
                        self.closed = True
        except OSError:
            pass
        finally:
            self.sock.close()

    def _events(self) -> Iterator[Event]:
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return iter(())
        self.ws.receive_data(data)
        return self.ws.events()


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


def open_ws(mb: MockBackend, name: str) -> WsClient:
    client = WsClient.open("127.0.0.1", mb.http_port)
    accepted = client.connect("127.0.0.1", f"/s/{name}/backend-api/codex/responses")
    assert isinstance(accepted, AcceptConnection)
    return client


def only_request(mb: MockBackend, name: str) -> RecordedRequest:
    (request,) = mb.requests_for(name)
    return request


def test_each_client_message_is_answered_with_the_parts_as_text_messages(
    mb: MockBackend,
) -> None:
    client = open_ws(mb, "ws")
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


def test_nothing_is_sent_before_the_client_asks(mb: MockBackend) -> None:
    client = open_ws(mb, "ws")
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.receive(1)
    client.sock.settimeout(TIMEOUT)
    client.send_text("go")
    assert client.receive(3)[0] == PARTS[0].decode()
    client.close()


def test_cut_closes_the_tcp_connection_without_a_close_frame(mb: MockBackend) -> None:
    client = open_ws(mb, "ws-cut")
    client.send_text("go")
    assert client.receive(5) == [PARTS[0].decode()]
    assert client.closed and client.close_code is None
    client.sock.close()


def test_drop_resets_the_connection(mb: MockBackend) -> None:
    client = open_ws(mb, "ws-drop")
    client.send_text("go")
    with pytest.raises(ConnectionResetError):
        client.receive(5)
    client.sock.close()


def test_stall_goes_silent_and_records_the_abandon(mb: MockBackend) -> None:
    client = open_ws(mb, "ws-stall")
    client.send_text("go")
    assert client.receive(1) == [PARTS[0].decode()]
    client.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.receive(1)
    client.sock.close()
    wait_until(lambda: only_request(mb, "ws-stall").abandoned, "stall not marked abandoned")


def test_a_scenario_without_websocket_answers_the_upgrade_with_its_status(
    mb: MockBackend,
) -> None:
    client = WsClient.open("127.0.0.1", mb.http_port)
    rejected = client.connect("127.0.0.1", "/s/refuse/backend-api/codex/responses")
    client.sock.close()
    assert isinstance(rejected, RejectConnection) and rejected.status_code == 426
    assert client.reject_body == b"no"


def test_the_websocket_works_over_tls(mb: MockBackend) -> None:
    tls = ssl.create_default_context(cafile=mb.cert_path)
    tls.set_alpn_protocols(["http/1.1"])  # RFC 6455 upgrades are HTTP/1.1
    client = WsClient.open("127.0.0.1", mb.https_port, tls)
    assert isinstance(client.connect("127.0.0.1", "/s/ws/v1/responses"), AcceptConnection)
    client.send_text("go")
    assert len(client.receive(3)) == 3
    client.close()
    assert only_request(mb, "ws").tls
