#!/usr/bin/env python3
"""A scenario-playing fake LLM backend for end-to-end tests of codex-fix.

The backend serves canned responses ("scenarios") over plain HTTP/1.1, over
TLS (HTTP/1.1 or HTTP/2 via ALPN) and over HTTP/2 prior-knowledge on the plain
port.  Each scenario controls the response headers, the body pieces and their
timing, and, most importantly, *how the response ends*: cleanly, cut short,
with the TCP connection dropped, or stalled forever.  This lets tests reproduce
the broken upstream streams that the addon is meant to repair.

A scenario can also answer an HTTP/1.1 WebSocket upgrade (``websocket=True``): to each
client message, each part is sent as one text message, the way the Responses WebSocket
transport of the Codex CLI receives its events.

Only the standard library, ``h2``, ``wsproto`` and ``cryptography`` are used (all ship
with mitmproxy), so the backend runs in any mitmproxy virtualenv; :func:`compressed`, which
makes bodies with a ``content-encoding`` (decompression bombs too), also uses ``brotli``
(a mitmproxy dependency) and zstd (a codex-fix dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http
import ipaddress
import json
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import generate_accept_token

HOST = "127.0.0.1"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRANSCRIPT = REPO_ROOT / "tests/fixtures/real/responses/codex-backend-gpt5-text.sse"
# Headers that HTTP/2 forbids; dropped from scenario headers on h2.
H2_FORBIDDEN = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

Framing = Literal["chunked", "content-length", "close"]
End = Literal["eof", "cut", "drop", "stall"]
Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Scenario:
    """One canned response and the way it is delivered and terminated.

    ``parts`` are written one write each (one h1 chunk / one h2 DATA frame),
    ``delay`` seconds apart.  ``end`` decides how the response finishes:
    ``eof`` properly, ``cut`` truncated (h1: close without terminator; h2:
    RST_STREAM), ``drop`` by resetting the TCP connection (RST, no GOAWAY),
    ``stall`` by going silent.  ``headers_delay=None`` means no response is ever sent.

    ``websocket=True``: a WebSocket upgrade request is accepted (101) and the parts
    become text messages, sent in answer to each client message; ``end`` then means
    ``eof`` (keep answering until the client closes), ``cut`` (TCP close without a
    close frame after the first answer), ``drop`` (reset) or ``stall`` (silent).  A
    request without ``Upgrade: websocket`` still gets the plain HTTP response.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("content-type", "text/event-stream"),)
    parts: tuple[bytes, ...] = ()
    delay: float = 0.0
    framing: Framing = "chunked"
    content_length: int | None = None
    end: End = "eof"
    headers_delay: float | None = 0.0
    websocket: bool = False

    def declared_length(self) -> int:
        """Content-length to announce: the override or the real body size."""
        if self.content_length is not None:
            return self.content_length
        return sum(len(p) for p in self.parts)


@dataclass
class RecordedRequest:
    """A request as the backend received it (header names lower-cased).

    For HTTP/2, pseudo-headers are not in ``headers``; ``:authority`` is
    recorded as a ``host`` header so both protocols look alike.
    """

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    http_version: str
    scenario: str
    tls: bool
    # The proxy gave up on the request while the backend held it (a stall, or no headers
    # yet): h1 closed the connection, h2 reset the stream. Shows an upstream cancel.
    abandoned: bool = False
    # WebSocket only: the client's messages (text as UTF-8), in order.
    messages: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


def select_scenario_name(path: str, headers: Headers) -> str:
    """Pick the scenario name: ``/s/<name>/`` prefix, header, else ``default``."""
    bare = path.split("?", 1)[0]
    if bare.startswith("/s/"):
        name = bare[3:].split("/", 1)[0]
        if name:
            return name
    for key, value in headers:
        if key.lower() == "x-mock-scenario":
            return value.strip()
    return "default"


def not_found_body(name: str) -> bytes:
    """OpenAI-style JSON error body for an unknown scenario."""
    error = {
        "message": f"unknown scenario {name}",
        "type": "invalid_request_error",
        "code": None,
        "param": None,
    }
    return json.dumps({"error": error}).encode()


def not_found_scenario(name: str) -> Scenario:
    """A plain 404 response carrying :func:`not_found_body`."""
    return Scenario(
        status=404,
        headers=(("content-type", "application/json"),),
        parts=(not_found_body(name),),
        framing="content-length",
    )


# --------------------------------------------------------------------------
# TLS certificate
# --------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    """An X.509 name consisting of just a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _base_builder(subject: str, issuer: str, key: Any) -> x509.CertificateBuilder:
    """Certificate builder with validity, serial, subject, issuer, public key."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _make_ca() -> tuple[Any, x509.Certificate]:
    """A throwaway self-signed CA (the trust anchor handed to clients)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _base_builder("codex-fix mock backend CA", "codex-fix mock backend CA", key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(_key_usage(cert_sign=True), True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    """KeyUsage for a CA (cert signing) or a TLS server (signatures)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _make_leaf(ca_key: Any, ca: x509.Certificate) -> tuple[Any, x509.Certificate]:
    """Server certificate for ``127.0.0.1`` and ``localhost`` signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    )
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    cert = (
        _base_builder("localhost", "codex-fix mock backend CA", key)
        .add_extension(san, False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(cert_sign=False), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(aki, False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Write CA cert, server chain and server key; return their paths.

    A separate CA (rather than one self-signed leaf) keeps strict verifiers
    such as rustls/webpki happy: they refuse a CA cert used as end entity.
    """
    ca_key, ca = _make_ca()
    key, leaf = _make_leaf(ca_key, ca)
    pem = serialization.Encoding.PEM
    ca_path, chain_path, key_path = (
        directory / "ca.pem",
        directory / "chain.pem",
        directory / "key.pem",
    )
    ca_path.write_bytes(ca.public_bytes(pem))
    chain_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, chain_path, key_path


def server_ssl_context(chain_path: Path, key_path: Path) -> ssl.SSLContext:
    """Server TLS context offering ``h2`` and ``http/1.1`` via ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain_path, key_path)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Abort the TCP connection with an RST (SO_LINGER 0), not a FIN.

    A bare ``transport.abort()`` just closes the socket, which the peer sees
    as an orderly EOF; linger 0 makes the kernel send a reset instead, so the
    peer gets ECONNRESET like on a real dropped connection.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --------------------------------------------------------------------------
# HTTP/1.1
# --------------------------------------------------------------------------


class _BufferedStream:
    """A StreamReader with a push-back buffer (for protocol sniffing)."""

    def __init__(self, reader: asyncio.StreamReader, initial: bytes = b"") -> None:
        self.reader = reader
        self.buf = bytearray(initial)

    async def _fill(self) -> None:
        """Read more bytes; raise IncompleteReadError at EOF."""
        data = await self.reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(bytes(self.buf), None)
        self.buf += data

    async def read_until(self, sep: bytes) -> bytes:
        """Return bytes up to and including ``sep`` (bounded by MAX_HEAD)."""
        while (idx := self.buf.find(sep)) < 0:
            if len(self.buf) > MAX_HEAD:
                raise ValueError("request head too large")
            await self._fill()
        out = bytes(self.buf[: idx + len(sep)])
        del self.buf[: idx + len(sep)]
        return out

    async def read_exact(self, n: int) -> bytes:
        """Return exactly ``n`` bytes."""
        while len(self.buf) < n:
            await self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def wait_eof(self) -> None:
        """Discard input until the peer closes or resets the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass


@dataclass
class _H1Request:
    """A parsed HTTP/1.x request."""

    method: str
    path: str
    version: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str:
        """Value of header ``name`` (lower-case) or the empty string."""
        return next((v for k, v in self.headers if k == name), "")

    def wants_close(self) -> bool:
        """Whether the client asked not to keep the connection alive."""
        conn = self.header("connection").lower()
        return conn == "close" or (self.version == "HTTP/1.0" and conn != "keep-alive")


async def _read_chunked(stream: _BufferedStream) -> bytes:
    """Read a chunked request body including trailers."""
    body = bytearray()
    while True:
        size_line = await stream.read_until(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while await stream.read_until(b"\r\n") != b"\r\n":
                pass  # trailers
            return bytes(body)
        body += await stream.read_exact(size)
        await stream.read_exact(2)


async def read_h1_request(stream: _BufferedStream) -> _H1Request | None:
    """Read one request (head and whole body); None on clean EOF."""
    try:
        head = await stream.read_until(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ", 2)
    req = _H1Request(method, path, version.strip())
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            req.headers.append((key.strip().lower(), value.strip()))
    if "chunked" in req.header("transfer-encoding").lower():
        req.body = await _read_chunked(stream)
    elif length := req.header("content-length"):
        req.body = await stream.read_exact(int(length))
    return req


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


async def h1_respond(
    sc: Scenario, writer: asyncio.StreamWriter, stream: _BufferedStream, recorded: RecordedRequest
) -> bool:
    """Play ``sc`` on an HTTP/1.1 connection; return True to keep it alive."""
    if sc.headers_delay is None:
        await stream.wait_eof()
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
    return await _h1_end(sc, writer, stream, recorded)


async def _h1_end(
    sc: Scenario, writer: asyncio.StreamWriter, stream: _BufferedStream, recorded: RecordedRequest
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
        await stream.wait_eof()
        recorded.abandoned = True
    return False


# --------------------------------------------------------------------------
# WebSocket (RFC 6455 over HTTP/1.1)
# --------------------------------------------------------------------------


def is_websocket_upgrade(req: _H1Request) -> bool:
    """A GET asking to switch to the WebSocket protocol."""
    return (
        req.method == "GET"
        and "websocket" in req.header("upgrade").lower()
        and bool(req.header("sec-websocket-key"))
    )


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


class _WebSocketSession:
    """Server side of one WebSocket: wsproto frames over the h1 connection."""

    def __init__(
        self, stream: _BufferedStream, writer: asyncio.StreamWriter, recorded: RecordedRequest
    ) -> None:
        self.stream, self.writer, self.recorded = stream, writer, recorded
        self.ws = Connection(ConnectionType.SERVER)
        self.closed = False
        self._text: list[str] = []
        self._binary: list[bytes] = []

    async def play(self, sc: Scenario) -> None:
        """Answer each client message with the parts; ``sc.end`` applies after the first
        answer, except ``eof``, which keeps answering until the client closes (a real
        server keeps the session for more requests)."""
        if self.stream.buf:  # frames that arrived with the handshake
            await self._receive(bytes(self.stream.buf))
            self.stream.buf.clear()
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
            await self.stream.wait_eof()
            self.recorded.abandoned = True

    async def _read(self) -> None:
        data = await self.stream.reader.read(65536)
        if not data:
            self.closed = True
            return
        await self._receive(data)

    async def _receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Message):
                self._collect(event)
            elif isinstance(event, Ping):
                await self._send(event.response())
            elif isinstance(event, CloseConnection):
                await self._send(event.response())
                self.closed = True

    def _collect(self, event: Message[Any]) -> None:
        """Assemble fragmented messages; record each complete one."""
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self.recorded.messages.append("".join(self._text).encode())
                self._text.clear()
        elif isinstance(event, BytesMessage):
            self._binary.append(bytes(event.data))
            if event.message_finished:
                self.recorded.messages.append(b"".join(self._binary))
                self._binary.clear()

    async def _send(self, event: Any) -> None:
        if not self.writer.transport.is_closing():
            self.writer.write(self.ws.send(event))
            await self.writer.drain()


# --------------------------------------------------------------------------
# HTTP/2
# --------------------------------------------------------------------------


def _text(value: str | bytes) -> str:
    """A header name/value as str (h2 yields str when header_encoding is set)."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass
class _H2Stream:
    """Per-stream state of an HTTP/2 request being received / answered."""

    headers: Headers
    body: bytearray = field(default_factory=bytearray)
    window: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    reset_by_peer: bool = False


class _H2Connection:
    """Server side of one HTTP/2 connection; each stream is its own task."""

    def __init__(
        self,
        backend: MockBackend,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: bool,
    ) -> None:
        self.backend, self.reader, self.writer, self.tls = backend, reader, writer, tls
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _H2Stream] = {}

    async def run(self, initial: bytes) -> None:
        """Serve the connection until the peer goes away or it is aborted."""
        self.conn.initiate_connection()
        data = initial
        try:
            while True:
                if data:
                    for event in self.conn.receive_data(data):
                        self._on_event(event)
                await self._flush()
                data = await self.reader.read(65536)
                if not data:
                    break
        except (OSError, h2.exceptions.ProtocolError):
            pass  # peer vanished or broke the protocol: just close
        finally:
            tasks = [st.task for st in self.streams.values() if st.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _flush(self) -> None:
        """Write whatever the h2 state machine wants to send."""
        out = self.conn.data_to_send()
        if out and not self.writer.transport.is_closing():
            self.writer.write(out)
            await self.writer.drain()

    def _on_event(self, event: h2.events.Event) -> None:
        """Dispatch one h2 event from the client."""
        if isinstance(event, h2.events.RequestReceived):
            headers = [(_text(k), _text(v)) for k, v in event.headers or ()]
            self.streams[event.stream_id] = _H2Stream(headers)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if (st := self.streams.get(event.stream_id)) is not None:
                st.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            st = self.streams[event.stream_id]
            st.task = asyncio.ensure_future(self._answer(event.stream_id, st))
        elif isinstance(event, h2.events.StreamReset):
            st = self.streams.get(event.stream_id)
            if st is not None and st.task is not None:
                st.reset_by_peer = True
                st.task.cancel()
        elif isinstance(event, h2.events.WindowUpdated):
            self._wake(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._wake(0)

    def _wake(self, stream_id: int) -> None:
        """Wake senders waiting for flow-control window (0 = all streams)."""
        for sid, st in self.streams.items():
            if stream_id in (0, sid):
                st.window.set()

    async def _answer(self, stream_id: int, st: _H2Stream) -> None:
        """Record the request, then play its scenario on the stream."""
        pseudo = {k: v for k, v in st.headers if k.startswith(":")}
        headers = [(k, v) for k, v in st.headers if not k.startswith(":")]
        if ":authority" in pseudo:
            headers.insert(0, ("host", pseudo[":authority"]))
        path = pseudo.get(":path", "/")
        name, sc = self.backend.resolve(path, headers)
        recorded = RecordedRequest(
            pseudo.get(":method", ""), path, headers, bytes(st.body), "HTTP/2", name, self.tls
        )
        self.backend.record(recorded)
        # The stream or the connection may go away underneath us.
        with contextlib.suppress(h2.exceptions.ProtocolError, ConnectionError):
            try:
                await self._play(stream_id, st, sc)
            except asyncio.CancelledError:
                recorded.abandoned = st.reset_by_peer
                raise

    async def _play(self, stream_id: int, st: _H2Stream, sc: Scenario) -> None:
        """Send headers, DATA frames and the ending that ``sc`` asks for."""
        if sc.headers_delay is None:
            await asyncio.Event().wait()  # until cancelled by reset / close
            return
        await asyncio.sleep(sc.headers_delay)
        self.conn.send_headers(stream_id, self._h2_headers(sc))
        await self._flush()
        for i, part in enumerate(sc.parts):
            if i and sc.delay:
                await asyncio.sleep(sc.delay)
            last = i == len(sc.parts) - 1 and sc.end == "eof"
            await self._send_data(stream_id, st, part, last)
        await self._h2_end(stream_id, sc)

    def _h2_headers(self, sc: Scenario) -> Headers:
        """Response header block for ``sc`` (connection headers removed)."""
        headers = [(":status", str(sc.status))]
        headers += [(k.lower(), v) for k, v in sc.headers if k.lower() not in H2_FORBIDDEN]
        if sc.framing == "content-length":
            headers.append(("content-length", str(sc.declared_length())))
        return headers

    async def _send_data(self, stream_id: int, st: _H2Stream, data: bytes, end: bool) -> None:
        """Send ``data`` as one DATA frame (split only by window/frame size)."""
        while True:
            limit = min(
                self.conn.local_flow_control_window(stream_id),
                self.conn.max_outbound_frame_size,
            )
            if limit <= 0 and data:
                st.window.clear()
                await st.window.wait()
                continue
            chunk, data = data[:limit], data[limit:]
            self.conn.send_data(stream_id, chunk, end_stream=end and not data)
            await self._flush()
            if not data:
                return

    async def _h2_end(self, stream_id: int, sc: Scenario) -> None:
        """Finish the stream: END_STREAM, RST_STREAM, abort, or stall."""
        if sc.end == "eof":
            if not sc.parts:
                self.conn.end_stream(stream_id)
                await self._flush()
        elif sc.end == "cut":
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            await self._flush()
        elif sc.end == "drop":
            reset_connection(self.writer)
        else:
            await asyncio.Event().wait()  # stall until cancelled


# --------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------


class MockBackend:
    """Scenario-playing HTTP/1.1 + HTTP/2 backend on 127.0.0.1.

    Runs its own asyncio loop in a daemon thread; use as a context manager
    or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        scenarios: Mapping[str, Scenario] | None = None,
        *,
        http_port: int = 0,
        https_port: int = 0,
    ) -> None:
        self.scenarios: dict[str, Scenario] = dict(scenarios or {})
        self.requests: list[RecordedRequest] = []
        self.http_port = http_port
        self.https_port = https_port
        self.cert_path = Path()
        self._lock = threading.Lock()
        self._tmpdir: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- public API -------------------------------------------------------

    @property
    def http_url(self) -> str:
        """Base URL of the plain HTTP port."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def https_url(self) -> str:
        """Base URL of the TLS port."""
        return f"https://{HOST}:{self.https_port}"

    def requests_for(self, scenario: str) -> list[RecordedRequest]:
        """Recorded requests that selected ``scenario``."""
        with self._lock:
            return [r for r in self.requests if r.scenario == scenario]

    def record(self, request: RecordedRequest) -> None:
        """Append a request to :attr:`requests` (thread-safe)."""
        with self._lock:
            self.requests.append(request)

    def resolve(self, path: str, headers: Headers) -> tuple[str, Scenario]:
        """Scenario name and scenario for a request (404 scenario if unknown)."""
        name = select_scenario_name(path, headers)
        sc = self.scenarios.get(name)
        return name, sc if sc is not None else not_found_scenario(name)

    def start(self) -> MockBackend:
        """Start listening; returns once both ports are bound (or raises)."""
        self._tmpdir = tempfile.mkdtemp(prefix="mock-backend-")
        ca, chain, key = write_certificates(Path(self._tmpdir))
        self.cert_path = ca
        ctx = server_ssl_context(chain, key)
        self._thread = threading.Thread(
            target=self._thread_main, args=(ctx,), name="mock-backend", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("mock backend did not start in time")
        if self._error is not None:
            self.stop()
            raise RuntimeError("mock backend failed to start") from self._error
        return self

    def stop(self) -> None:
        """Close listeners, abort every connection and join the loop thread."""
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> MockBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- loop thread --------------------------------------------------------

    def _thread_main(self, ctx: ssl.SSLContext) -> None:
        """Thread body: run the asyncio loop until :meth:`stop`."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ctx))
        except BaseException as exc:  # reported to start()
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self, ctx: ssl.SSLContext) -> None:
        """Bind both servers, signal readiness, wait for stop, clean up."""
        self._stop_event = asyncio.Event()
        plain = await asyncio.start_server(self._on_plain, HOST, self.http_port)
        tls = await asyncio.start_server(self._on_tls, HOST, self.https_port, ssl=ctx)
        self.http_port = plain.sockets[0].getsockname()[1]
        self.https_port = tls.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop_event.wait()
        await self._shutdown(plain, tls)

    async def _shutdown(self, *servers: asyncio.Server) -> None:
        """Stop accepting, abort open connections, then cancel stragglers.

        Aborting makes blocked reads return, so most handlers finish on their
        own; handlers sleeping in a delay are cancelled after a short grace.
        """
        for server in servers:
            server.close()
        for writer in list(self._writers):
            reset_connection(writer)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=0.2)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for server in servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _on_plain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Plain-port connection: sniff for the h2 preface, else HTTP/1.1."""
        async with self._track(writer):
            head = await self._sniff(reader)
            if head.startswith(H2_PREFACE):
                await _H2Connection(self, reader, writer, tls=False).run(head)
            else:
                await self._serve_h1(_BufferedStream(reader, head), writer, False)

    async def _on_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """TLS connection: HTTP/2 if ALPN picked ``h2``, else HTTP/1.1."""
        async with self._track(writer):
            ssl_obj = writer.get_extra_info("ssl_object")
            if ssl_obj is not None and ssl_obj.selected_alpn_protocol() == "h2":
                await _H2Connection(self, reader, writer, tls=True).run(b"")
            else:
                await self._serve_h1(_BufferedStream(reader), writer, True)

    @contextlib.asynccontextmanager
    async def _track(self, writer: asyncio.StreamWriter) -> AsyncIterator[None]:
        """Register a connection for shutdown; always close it at the end."""
        task = asyncio.current_task()
        assert task is not None
        self._writers.add(writer)
        self._tasks.add(task)
        try:
            yield
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass  # peer vanished or sent garbage: just close
        except asyncio.CancelledError:
            pass  # only _shutdown cancels; a cancelled handler task gets logged
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    async def _sniff(reader: asyncio.StreamReader) -> bytes:
        """Read until the input diverges from the h2 preface or matches it."""
        head = b""
        while len(head) < len(H2_PREFACE) and H2_PREFACE.startswith(head):
            data = await reader.read(65536)
            if not data:
                break
            head += data
        return head

    async def _serve_h1(
        self, stream: _BufferedStream, writer: asyncio.StreamWriter, tls: bool
    ) -> None:
        """Answer HTTP/1.1 requests sequentially while keep-alive applies."""
        while (req := await read_h1_request(stream)) is not None:
            name, sc = self.resolve(req.path, req.headers)
            recorded = RecordedRequest(
                req.method, req.path, req.headers, req.body, "HTTP/1.1", name, tls
            )
            self.record(recorded)
            if sc.websocket and is_websocket_upgrade(req):
                writer.write(websocket_accept_head(req.header("sec-websocket-key")))
                await writer.drain()
                await _WebSocketSession(stream, writer, recorded).play(sc)
                return
            keep_alive = await h1_respond(sc, writer, stream, recorded)
            if not keep_alive or req.wants_close():
                return


# --------------------------------------------------------------------------
# Built-in scenarios and CLI
# --------------------------------------------------------------------------


def compressed(
    block: bytes, encoding: str, copies: int = 1, *, head: bytes = b"", tail: bytes = b""
) -> bytes:
    """``head``, ``block`` repeated ``copies`` times and ``tail``, compressed with a
    ``content-encoding`` (gzip, deflate, zstd, br) in the memory of one block: a body that
    decodes to a gigabyte (a decompression bomb) takes well under a second to make."""
    if encoding in ("gzip", "deflate"):
        return _deflated(head, block, copies, tail, gzip=encoding == "gzip")
    if encoding == "zstd":
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
        zstd_compressor = zstd.ZstdCompressor()
        compress, finish = zstd_compressor.compress, zstd_compressor.flush
    elif encoding == "br":
        import brotli  # type: ignore[import-untyped,unused-ignore]

        br_compressor = brotli.Compressor(quality=5)
        compress, finish = br_compressor.process, br_compressor.finish
    else:
        raise ValueError(f"no compressor for {encoding!r}")
    # Streamed, as the Codex CLI sends its zstd bodies: no content size in the frame.
    pieces = [compress(head), *(compress(block) for _ in range(copies)), compress(tail)]
    return b"".join([*pieces, finish()])


def _deflated(head: bytes, block: bytes, copies: int, tail: bytes, gzip: bool) -> bytes:
    """zlib (``deflate``) or gzip data: after a full flush a compressor starts afresh, so
    each copy of the block compresses to the same bytes; only the checksum in the trailer
    needs all the data."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)  # with the header
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.compress(tail) + compressor.flush()
    end = end[: -8 if gzip else -4]  # the trailer, for one copy: made again below
    checksum = zlib.crc32 if gzip else zlib.adler32
    value = checksum(head, 0 if gzip else 1)
    for _ in range(copies):
        value = checksum(block, value)
    value = checksum(tail, value)
    size = len(head) + len(block) * copies + len(tail)
    trailer = struct.pack("<II", value, size & 0xFFFFFFFF) if gzip else struct.pack(">I", value)
    return start + again * copies + end + trailer


def split_bytes(data: bytes, chunk_size: int) -> tuple[bytes, ...]:
    """Split ``data`` into pieces of at most ``chunk_size`` bytes."""
    return tuple(data[i : i + chunk_size] for i in range(0, len(data), chunk_size))


def sse_events(transcript: bytes) -> list[bytes]:
    """Split an SSE transcript into whole events (each with its blank line)."""
    normalized = transcript.replace(b"\r\n", b"\n")
    return [e + b"\n\n" for e in normalized.split(b"\n\n") if e.strip()]


def builtin_scenarios(transcript: bytes, chunk_size: int, delay: float) -> dict[str, Scenario]:
    """The CLI's scenarios, all derived from one SSE transcript."""
    parts = split_bytes(transcript, chunk_size)
    half = split_bytes(transcript[: len(transcript) // 2], chunk_size)
    early = split_bytes(b"".join(sse_events(transcript)[:-1]), chunk_size)
    ok = Scenario(parts=parts, delay=delay)
    return {
        "ok": ok,
        "default": ok,
        "cut-midbody": Scenario(parts=half, delay=delay, end="cut"),
        "eof-early": Scenario(parts=early, delay=delay),
        "stall": Scenario(parts=half, delay=delay, end="stall"),
        "hold-open": Scenario(parts=parts, delay=delay, end="stall"),
        "no-headers": Scenario(parts=parts, delay=delay, headers_delay=None),
        "drop": Scenario(parts=half, delay=delay, end="drop"),
        "short-content-length": Scenario(
            parts=half,
            delay=delay,
            framing="content-length",
            content_length=len(transcript),
            end="cut",
        ),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the standalone backend."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="plain HTTP port (0 = any)")
    p.add_argument("--tls-port", type=int, default=0, help="TLS port (0 = any)")
    p.add_argument("--transcript", type=Path, default=DEFAULT_TRANSCRIPT, help="SSE file to serve")
    p.add_argument("--chunk-size", type=int, default=512, help="bytes per write")
    p.add_argument("--delay", type=float, default=0.01, help="seconds between writes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the backend with built-in scenarios until SIGINT/SIGTERM."""
    args = parse_args(argv)
    scenarios = builtin_scenarios(args.transcript.read_bytes(), args.chunk_size, args.delay)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with MockBackend(scenarios, http_port=args.port, https_port=args.tls_port) as mb:
        info = {
            "http_port": mb.http_port,
            "https_port": mb.https_port,
            "cert": str(mb.cert_path),
        }
        print(json.dumps(info), flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
