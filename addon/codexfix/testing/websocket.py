"""The mock backend's WebSocket (RFC 6455 over HTTP/1.1): wsproto frames, each scenario
part one text message, the way the Codex CLI's Responses WebSocket receives its events."""

from __future__ import annotations

import asyncio

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from .scenario import RecordedRequest, Scenario
from .wire import READ_SIZE, reset_connection, wait_eof


def websocket_accept_head(key: str) -> bytes:
    """The 101 response that completes the opening handshake (no extensions)."""
    accept = generate_accept_token(key.encode()).decode()
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "upgrade: websocket",
        "connection: Upgrade",
        f"sec-websocket-accept: {accept}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class WebSocketSession:
    """Server side of one WebSocket: wsproto frames over the h1 connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, recorded: RecordedRequest
    ) -> None:
        self.reader, self.writer, self.recorded = reader, writer, recorded
        self.ws = Connection(ConnectionType.SERVER)
        self.closed = False
        self._text: list[str] = []
        self._binary: list[bytes] = []

    async def play(self, sc: Scenario, initial: bytes = b"") -> None:
        """Answer each client message with the parts; ``sc.end`` applies after the first
        answer, except ``eof``, which keeps answering until the client closes (a real
        server keeps the session for more requests). ``initial``: frames that arrived
        with the handshake."""
        if initial:
            await self._receive(initial)
        answered = 0
        while True:
            while len(self.recorded.messages) <= answered and not self.closed:
                await self._read()
            if self.closed:
                return
            answered += 1
            for i, part in enumerate(sc.parts):
                if i and sc.delay:
                    await asyncio.sleep(sc.delay)
                await self._send(TextMessage(data=part.decode("utf-8")))
            if sc.end != "eof":
                break
        if sc.end == "drop":
            reset_connection(self.writer)
        elif sc.end == "cut":
            self.writer.close()
        else:
            await wait_eof(self.reader)
            self.recorded.abandoned = True

    async def _read(self) -> None:
        data = await self.reader.read(READ_SIZE)
        if not data:
            self.closed = True
            return
        await self._receive(data)

    async def _receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._collect(event)
            elif isinstance(event, Ping):
                await self._send(event.response())
            elif isinstance(event, CloseConnection):
                await self._send(event.response())
                self.closed = True

    def _collect(self, event: TextMessage | BytesMessage) -> None:
        """Assemble fragmented messages; record each complete one."""
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self.recorded.messages.append("".join(self._text).encode())
                self._text.clear()
        else:
            self._binary.append(bytes(event.data))
            if event.message_finished:
                self.recorded.messages.append(b"".join(self._binary))
                self._binary.clear()

    async def _send(self, event: Event) -> None:
        if not self.writer.transport.is_closing():
            self.writer.write(self.ws.send(event))
            await self.writer.drain()
