"""The mock backend's WebSocket (RFC 6455 over HTTP/1.1, wsproto frames), played by a
`WebSocketScript`: the answer to each upgrade (101, an HTTP status, a reset, nothing),
then per client message a `Reply` (text, binary or fragmented messages, then stay open,
Close, cut, reset or stall), the way the Codex CLI's Responses WebSocket is served.

A `Scenario` with ``websocket=True`` and no script is played as the script
`legacy_script` makes of it: its parts as text messages in answer to every message.

`WebSocketClient` is the other end, for tests: a blocking wsproto client.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence

from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import LocalProtocolError, generate_accept_token, split_comma_header

from .scenario import (
    Fragmented,
    Handshake,
    Message,
    RecordedRequest,
    Reply,
    ReplyEnd,
    Scenario,
    WebSocketClose,
    WebSocketScript,
    is_warmup,
)
from .wire import HOST, READ_SIZE, reset_connection, wait_eof

Headers = Sequence[tuple[str, str]]


def websocket_accept_head(key: str, headers: Headers = ()) -> bytes:
    """The 101 response that completes the opening handshake, with extra ``headers``
    (e.g. the accepted `sec-websocket-extensions`)."""
    accept = generate_accept_token(key.encode()).decode()
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "upgrade: websocket",
        "connection: Upgrade",
        f"sec-websocket-accept: {accept}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def refusal_head(handshake: Handshake) -> bytes:
    """An HTTP response refusing the upgrade: the handshake's status, headers and body."""
    try:
        reason = http.HTTPStatus(handshake.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = [
        *handshake.headers,
        ("content-length", str(len(handshake.body))),
        ("connection", "close"),
    ]
    lines = [f"HTTP/1.1 {handshake.status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + handshake.body


def legacy_script(sc: Scenario) -> WebSocketScript:
    """A ``websocket=True`` scenario as a script: every client message (JSON or not, warm-up
    or not) gets the parts as text messages; ``end`` applies after the first answer, except
    ``eof`` (stay open); no extension is accepted."""
    ends: dict[str, ReplyEnd] = {"eof": "open", "cut": "cut", "drop": "drop", "stall": "stall"}
    reply = Reply(tuple(p.decode() for p in sc.parts), ends[sc.end], sc.delay)
    return WebSocketScript(replies=(reply,), deflate=False, answers=None)


def negotiate(offers: list[str], deflate: bool) -> tuple[list[Extension], str]:
    """The extensions to use and the `sec-websocket-extensions` value to answer ("" for
    none), for the client's offers (header values)."""
    if not deflate or not offers:
        return [], ""
    extension = PerMessageDeflate()
    accepted = server_extensions_handshake(
        split_comma_header(", ".join(offers).encode("latin-1")), [extension]
    )
    if accepted is None:
        return [], ""
    return [extension], accepted.decode("ascii")


async def serve_websocket(
    script: WebSocketScript,
    history: Callable[[], list[RecordedRequest]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    recorded: RecordedRequest,
    initial: bytes = b"",
) -> None:
    """Answer the upgrade ``recorded`` (already in ``history``: the scenario's requests)
    by ``script``, then play the session if it was accepted. ``initial``: bytes that
    arrived after the upgrade request."""
    upgrades = [r for r in history() if r.is_websocket_upgrade()]
    index = next((i for i, r in enumerate(upgrades) if r is recorded), len(upgrades))
    handshake = script.handshakes[min(index, len(script.handshakes) - 1)]
    if handshake.delay is None:
        await wait_eof(reader)
        recorded.abandoned = True
        return
    await asyncio.sleep(handshake.delay)
    if handshake.reset:
        reset_connection(writer)
        return
    recorded.handshake_status = handshake.status
    if handshake.status != 101:
        writer.write(refusal_head(handshake))
        await writer.drain()
        return
    offers = [v for k, v in recorded.headers if k == "sec-websocket-extensions"]
    extensions, accepted = negotiate(offers, script.deflate)
    recorded.extensions = accepted
    headers = [*handshake.headers, *([("sec-websocket-extensions", accepted)] if accepted else [])]
    writer.write(websocket_accept_head(recorded.header("sec-websocket-key") or "", headers))
    await writer.drain()
    # Replies are numbered over the scenario's connections: a reconnect's request gets the
    # reply after the one the dropped connection was playing.
    earlier = sum(len(WebSocketSession.requests(script, r.messages)) for r in upgrades[:index])
    await WebSocketSession(reader, writer, recorded, script, extensions).run(earlier, initial)


class WebSocketSession:
    """Server side of one accepted WebSocket, played by ``script``: a reader records every
    client message (and answers pings and Close frames) while the answers are played one
    by one."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        recorded: RecordedRequest,
        script: WebSocketScript,
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.reader, self.writer, self.recorded = reader, writer, recorded
        self.script = script
        self.ws = Connection(ConnectionType.SERVER, extensions=list(extensions))
        self.stalled = False
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._text: list[str] = []
        self._binary: list[bytes] = []

    @staticmethod
    def requests(script: WebSocketScript, messages: list[bytes]) -> list[bytes]:
        """The messages that take a reply of ``script.replies`` (warm-ups aside)."""
        return [m for m in messages if script.answered(m) and not _takes_warmup(script, m)]

    async def run(self, earlier: int = 0, initial: bytes = b"") -> None:
        """Answer client messages until the connection ends; ``earlier``: the replies the
        scenario's previous connections took; ``initial``: bytes already received."""
        reading = asyncio.create_task(self._read_loop(initial))
        answering = asyncio.create_task(self._answer_loop(earlier))
        try:
            await asyncio.wait({reading, answering}, return_when=asyncio.FIRST_COMPLETED)
            if answering.done() and not reading.done():
                await reading  # a cut or a reset ends the reading; a Close waits for the echo
        finally:
            for task in (reading, answering):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(reading, answering, return_exceptions=True)

    # -- reading -------------------------------------------------------------------------

    async def _read_loop(self, initial: bytes) -> None:
        try:
            if initial:
                await self._receive(initial)
            while self.ws.state is not ConnectionState.CLOSED:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    self._ended(WebSocketClose("client", "eof"))
                    return
                await self._receive(data)
        except ConnectionResetError:
            self._ended(WebSocketClose("client", "reset"))
        finally:
            if self.stalled:
                self.recorded.abandoned = True
            self.writer.close()

    async def _receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._collect(event)
            elif isinstance(event, Ping) and not self.stalled:
                await self._send(event.response())
            elif isinstance(event, CloseConnection):
                # An answer to our Close, or the client's own Close (echoed, unless stalled).
                self._ended(WebSocketClose("client", "close", event.code))
                if self.ws.state is ConnectionState.REMOTE_CLOSING and not self.stalled:
                    await self._send(event.response())

    def _collect(self, event: TextMessage | BytesMessage) -> None:
        """Assemble fragmented messages; record each complete one, queue it if answered."""
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if not event.message_finished:
                return
            message = "".join(self._text).encode()
            self._text.clear()
        else:
            self._binary.append(bytes(event.data))
            if not event.message_finished:
                return
            message = b"".join(self._binary)
            self._binary.clear()
        self.recorded.messages.append(message)
        if self.script.answered(message):
            self._inbox.put_nowait(message)

    def _ended(self, close: WebSocketClose) -> None:
        """Record how the socket ended: the first ending counts."""
        if self.recorded.close is None:
            self.recorded.close = close

    # -- answering -----------------------------------------------------------------------

    async def _answer_loop(self, earlier: int) -> None:
        script, taken = self.script, earlier
        while True:
            message = await self._inbox.get()
            if _takes_warmup(script, message) and script.warmup is not None:
                reply = script.warmup
            else:
                reply = script.replies[min(taken, len(script.replies) - 1)]
                taken += 1
            try:
                for i, part in enumerate(reply.messages):
                    if i and reply.delay:
                        await asyncio.sleep(reply.delay)
                    await self._send_message(part)
            except (ConnectionError, LocalProtocolError):
                return  # the client left mid-reply
            if reply.end != "open":
                await self._end(reply)
                return

    async def _end(self, reply: Reply) -> None:
        if reply.end == "close":
            self._ended(WebSocketClose("server", "close", reply.close_code))
            with contextlib.suppress(ConnectionError, LocalProtocolError):
                await self._send(CloseConnection(reply.close_code, reply.close_reason))
            return  # the reader closes the TCP connection once the client answers
        if reply.end == "cut":
            self._ended(WebSocketClose("server", "eof"))
            self.writer.close()
        elif reply.end == "drop":
            self._ended(WebSocketClose("server", "reset"))
            reset_connection(self.writer)
        else:  # stall: silent until the client leaves (the reader records it)
            self.stalled = True
            await asyncio.Event().wait()

    async def _send_message(self, message: Message) -> None:
        if isinstance(message, Fragmented):
            pieces: Sequence[str | bytes] = message.pieces
            for i, piece in enumerate(pieces):
                await self._send(_message_event(piece, i == len(pieces) - 1))
        else:
            await self._send(_message_event(message, True))

    async def _send(self, event: Event) -> None:
        if not self.writer.transport.is_closing():
            self.writer.write(self.ws.send(event))
            await self.writer.drain()


def _message_event(data: str | bytes, finished: bool) -> TextMessage | BytesMessage:
    if isinstance(data, str):
        return TextMessage(data=data, message_finished=finished)
    return BytesMessage(data=data, message_finished=finished)


def _takes_warmup(script: WebSocketScript, message: bytes) -> bool:
    return script.warmup is not None and is_warmup(message)


class WebSocketClient:
    """A blocking WebSocket client over one socket (plain or TLS), for tests; every read is
    bounded by the socket's timeout.

    `connect()` returns the handshake's outcome: `AcceptConnection` (its `extensions`
    are the ones the server accepted), or `RejectConnection` with the status (the body in
    `reject_body`). `receive()` returns whole messages, text as str and binary as bytes,
    and notes in `frames` how many frames each one came in.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.closed = False  # the server's Close arrived, or the connection ended
        self.close_code: int | None = None  # the server's Close frame's code
        self.reject_body = b""
        self.frames: list[int] = []
        self._parts: list[str | bytes] = []
        self._frames = 0

    @classmethod
    def open(
        cls, port: int, tls: ssl.SSLContext | None = None, timeout: float = 5.0
    ) -> WebSocketClient:
        sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=HOST)
        return cls(sock)

    def connect(
        self,
        target: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        extensions: Sequence[Extension] = (),
    ) -> AcceptConnection | RejectConnection:
        """Send the upgrade request for ``target``; wait for the answer."""
        request = Request(
            host=HOST, target=target, extra_headers=list(headers), extensions=list(extensions)
        )
        self.sock.sendall(self.ws.send(request))
        rejection: RejectConnection | None = None
        while not self.closed:
            for event in self._events():
                if isinstance(event, AcceptConnection):
                    return event
                if isinstance(event, RejectConnection):
                    rejection = event
                    if not event.has_body:
                        return event
                elif isinstance(event, RejectData):
                    self.reject_body += event.data
                    if event.body_finished and rejection is not None:
                        return rejection
        raise ConnectionError("connection closed during the opening handshake")

    def send_text(self, text: str, fragments: int = 1) -> None:
        """One text message, in ``fragments`` frames."""
        pieces = [p for p in Fragmented.split(text, fragments).pieces if isinstance(p, str)]
        for i, piece in enumerate(pieces):
            self.sock.sendall(self.ws.send(_message_event(piece, i == len(pieces) - 1)))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def receive(self, count: int) -> list[str | bytes]:
        """The next ``count`` messages (fewer if the connection ends first)."""
        messages: list[str | bytes] = []
        while len(messages) < count and not self.closed:
            for event in self._events():
                if isinstance(event, TextMessage | BytesMessage):
                    message = self._assemble(event)
                    if message is not None:
                        messages.append(message)
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    self.closed = True
                    with contextlib.suppress(OSError):  # the echo RFC 6455 asks for
                        self.sock.sendall(self.ws.send(event.response()))
        return messages

    def close(self, code: int = 1000) -> None:
        """Send a Close frame, wait (bounded) for the server's, then close the socket."""
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=code)))
            while not self.closed:
                for event in self._events():
                    if isinstance(event, CloseConnection):
                        self.close_code = event.code
                        self.closed = True
        except OSError:
            pass
        finally:
            self.sock.close()

    def _assemble(self, event: TextMessage | BytesMessage) -> str | bytes | None:
        self._parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
        self._frames += event.frame_finished
        if not event.message_finished:
            return None
        parts, self._parts = self._parts, []
        self.frames.append(self._frames)
        self._frames = 0
        if isinstance(event, TextMessage):
            return "".join(p for p in parts if isinstance(p, str))
        return b"".join(p for p in parts if isinstance(p, bytes))

    def _events(self) -> Iterator[Event]:
        data = self.sock.recv(READ_SIZE)
        if not data:
            self.closed = True
            return iter(())
        self.ws.receive_data(data)
        return self.ws.events()
