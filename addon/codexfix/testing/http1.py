"""HTTP/1.1 for the mock backend: requests are parsed with h11; responses are written by
hand, because most of them are broken on purpose (a chunked body without its terminator,
a short content-length, a reset, a stall), which h11 refuses to send."""

from __future__ import annotations

import asyncio
import functools
import http
from dataclasses import dataclass

import h11

from .scenario import Headers, RecordedRequest, Resolver, Scenario
from .websocket import legacy_script, serve_websocket
from .wire import READ_SIZE, reset_connection, wait_eof

MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class H1Request:
    """A parsed HTTP/1.x request (header names lower-cased, values as latin-1)."""

    method: str
    path: str
    version: str
    headers: Headers
    body: bytes

    def header(self, name: str) -> str:
        """Value of header ``name`` (lower-case) or the empty string."""
        return next((v for k, v in self.headers if k == name), "")

    def wants_close(self) -> bool:
        """Whether the client asked not to keep the connection alive."""
        conn = self.header("connection").lower()
        return conn == "close" or (self.version == "HTTP/1.0" and conn != "keep-alive")

    def is_websocket_upgrade(self) -> bool:
        """A GET asking to switch to the WebSocket protocol."""
        return (
            self.method == "GET"
            and "websocket" in self.header("upgrade").lower()
            and bool(self.header("sec-websocket-key"))
        )


class RequestReader:
    """The requests of one connection, one after another, parsed by h11.

    h11 never sees the hand-written responses, so its connection cannot start a new
    cycle: each request gets a fresh one, fed the bytes that came after the previous
    request (a pipelined request, or the WebSocket frames sent with an upgrade).
    """

    def __init__(self, reader: asyncio.StreamReader, initial: bytes = b"") -> None:
        self.reader = reader
        self.pending = initial

    async def next_request(self) -> H1Request | None:
        """The next whole request, body included; None when the client closed first.

        Raises ``h11.RemoteProtocolError`` for a malformed or unfinished request.
        """
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        if self.pending:  # for h11, b"" is the end of the input
            conn.receive_data(self.pending)
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self.reader.read(READ_SIZE))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                self.pending = conn.trailing_data[0]
                return _request(head, bytes(body))
            else:  # ConnectionClosed before a request began
                return None


def _request(head: h11.Request, body: bytes) -> H1Request:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers]
    return H1Request(
        head.method.decode("latin-1"),
        head.target.decode("latin-1"),
        "HTTP/" + head.http_version.decode("latin-1"),
        headers,
        body,
    )


async def serve_h1(
    backend: Resolver,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    initial: bytes,
    tls: bool,
) -> None:
    """Answer HTTP/1.1 requests sequentially while keep-alive applies."""
    requests = RequestReader(reader, initial)
    while (req := await requests.next_request()) is not None:
        name, sc = backend.resolve(req.path, req.headers)
        recorded = RecordedRequest(
            req.method, req.path, req.headers, req.body, "HTTP/1.1", name, tls
        )
        backend.record(recorded)
        script = sc.websocket_script or (legacy_script(sc) if sc.websocket else None)
        if script is not None and req.is_websocket_upgrade():
            history = functools.partial(backend.requests_for, name)
            await serve_websocket(script, history, reader, writer, recorded, requests.pending)
            return
        keep_alive = await respond(sc, reader, writer, recorded)
        if not keep_alive or req.wants_close():
            return


def h1_head(sc: Scenario) -> bytes:
    """Status line and headers for ``sc`` including its framing header."""
    try:
        reason = http.HTTPStatus(sc.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = list(sc.headers)
    if sc.framing == "chunked":
        headers.append(("transfer-encoding", "chunked"))
    elif sc.framing == "content-length":
        headers.append(("content-length", str(sc.declared_length())))
    else:
        headers.append(("connection", "close"))
    lines = [f"HTTP/1.1 {sc.status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def h1_piece(sc: Scenario, part: bytes) -> bytes:
    """Wire bytes for one body part (a chunk when chunked; empty parts vanish)."""
    if sc.framing != "chunked":
        return part
    if not part:
        return b""  # an empty chunk would be the terminator
    return b"%x\r\n%s\r\n" % (len(part), part)


async def respond(
    sc: Scenario,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    recorded: RecordedRequest,
) -> bool:
    """Play ``sc`` on an HTTP/1.1 connection; return True to keep it alive."""
    if sc.headers_delay is None:
        await wait_eof(reader)
        recorded.abandoned = True
        return False
    await asyncio.sleep(sc.headers_delay)
    writer.write(h1_head(sc))
    await writer.drain()
    try:
        for i, part in enumerate(sc.parts):
            if i and sc.delay:
                await asyncio.sleep(sc.delay)
            writer.write(h1_piece(sc, part))
            await writer.drain()
    except ConnectionError:  # the proxy gave up while a large part was still being sent
        recorded.abandoned = True
        return False
    return await _end(sc, reader, writer, recorded)


async def _end(
    sc: Scenario,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    recorded: RecordedRequest,
) -> bool:
    """Finish an h1 response according to ``sc.end``; True = keep alive."""
    if sc.end == "eof":
        if sc.framing == "chunked":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return sc.framing != "close"
    if sc.end == "drop":
        reset_connection(writer)
    elif sc.end == "stall":
        await wait_eof(reader)
        recorded.abandoned = True
    return False
