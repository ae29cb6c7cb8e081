"""HTTP/2 for the mock backend (h2): each stream is its own task, so a stalled stream and
a reset one can share a connection with a healthy one."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

# h2 ships its types from 4.2 on (mitmproxy 12); mitmproxy 11 has h2 4.1.
import h2.config  # type: ignore[import-untyped,unused-ignore]
import h2.connection  # type: ignore[import-untyped,unused-ignore]
import h2.errors  # type: ignore[import-untyped,unused-ignore]
import h2.events  # type: ignore[import-untyped,unused-ignore]
import h2.exceptions  # type: ignore[import-untyped,unused-ignore]

from .scenario import Headers, RecordedRequest, Resolver, Scenario
from .wire import READ_SIZE, reset_connection, stall

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Headers that HTTP/2 forbids; dropped from scenario headers on h2.
FORBIDDEN = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


def _text(value: str | bytes) -> str:
    """A header name/value as str (h2 yields str when header_encoding is set)."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass
class _Stream:
    """Per-stream state of an HTTP/2 request being received / answered."""

    headers: Headers
    body: bytearray = field(default_factory=bytearray)
    window: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    reset_by_peer: bool = False


class H2Connection:
    """Server side of one HTTP/2 connection."""

    def __init__(
        self,
        backend: Resolver,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: bool,
    ) -> None:
        self.backend, self.reader, self.writer, self.tls = backend, reader, writer, tls
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _Stream] = {}

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
                data = await self.reader.read(READ_SIZE)
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
            self.streams[event.stream_id] = _Stream(headers)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if (st := self.streams.get(event.stream_id)) is not None:
                st.body += event.data or b""
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

    def _wake(self, stream_id: int | None) -> None:
        """Wake senders waiting for flow-control window (0 = all streams)."""
        for sid, st in self.streams.items():
            if stream_id in (0, sid):
                st.window.set()

    async def _answer(self, stream_id: int, st: _Stream) -> None:
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

    async def _play(self, stream_id: int, st: _Stream, sc: Scenario) -> None:
        """Send headers, DATA frames and the ending that ``sc`` asks for."""
        if sc.headers_delay is None:
            await stall()  # until cancelled by reset / close
            return
        await asyncio.sleep(sc.headers_delay)
        self.conn.send_headers(stream_id, _response_headers(sc))
        await self._flush()
        for i, part in enumerate(sc.parts):
            if i and sc.delay:
                await asyncio.sleep(sc.delay)
            last = i == len(sc.parts) - 1 and sc.end == "eof"
            await self._send_data(stream_id, st, part, last)
        await self._end(stream_id, sc)

    async def _send_data(self, stream_id: int, st: _Stream, data: bytes, end: bool) -> None:
        """Send ``data`` as one DATA frame (split only by window/frame size)."""
        while True:
            limit: int = min(
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

    async def _end(self, stream_id: int, sc: Scenario) -> None:
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
            await stall()


def _response_headers(sc: Scenario) -> Headers:
    """Response header block for ``sc`` (connection headers removed)."""
    headers = [(":status", str(sc.status))]
    headers += [(k.lower(), v) for k, v in sc.headers if k.lower() not in FORBIDDEN]
    if sc.framing == "content-length":
        headers.append(("content-length", str(sc.declared_length())))
    return headers
