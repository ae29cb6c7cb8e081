"""A scenario-playing fake LLM backend, for end-to-end tests of codex-fix and of clients.

The backend serves canned responses ("scenarios") over plain HTTP/1.1, over TLS (HTTP/1.1
or HTTP/2 via ALPN) and over HTTP/2 prior-knowledge on the plain port. Each scenario
controls the response headers, the body pieces and their timing, and, most importantly,
*how the response ends*: cleanly, cut short, with the TCP connection dropped, or stalled
forever. A scenario can also answer an HTTP/1.1 WebSocket upgrade. A request picks its
scenario by a ``/s/<name>/`` path prefix (or an ``x-mock-scenario`` header).

    python -m codexfix.testing.backend [--port N] [--tls-port N] [--transcript FILE]

serves the built-in scenarios made from one transcript and prints its ports and CA.
Uses h11, h2, wsproto and cryptography, which all come with mitmproxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Self

import h11

from .bodies import CODEX_TRANSCRIPT, split_bytes, sse_events
from .http1 import serve_h1
from .http2 import PREFACE, H2Connection
from .scenario import (
    Headers,
    RecordedRequest,
    Scenario,
    not_found_scenario,
    select_scenario_name,
)
from .tls import server_ssl_context, write_certificates
from .wire import HOST, READ_SIZE, reset_connection

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class MockBackend:
    """Scenario-playing HTTP/1.1 + HTTP/2 backend on 127.0.0.1.

    Runs its own asyncio loop in a daemon thread; use as a context manager
    or call :meth:`start` / :meth:`stop`. ``scenarios`` may change while it runs.
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

    def start(self) -> Self:
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

    def __enter__(self) -> Self:
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
            if head.startswith(PREFACE):
                await H2Connection(self, reader, writer, tls=False).run(head)
            else:
                await serve_h1(self, reader, writer, head, tls=False)

    async def _on_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """TLS connection: HTTP/2 if ALPN picked ``h2``, else HTTP/1.1."""
        async with self._track(writer):
            ssl_obj = writer.get_extra_info("ssl_object")
            if ssl_obj is not None and ssl_obj.selected_alpn_protocol() == "h2":
                await H2Connection(self, reader, writer, tls=True).run(b"")
            else:
                await serve_h1(self, reader, writer, b"", tls=True)

    @contextlib.asynccontextmanager
    async def _track(self, writer: asyncio.StreamWriter) -> AsyncIterator[None]:
        """Register a connection for shutdown; always close it at the end."""
        task = asyncio.current_task()
        assert task is not None
        self._writers.add(writer)
        self._tasks.add(task)
        try:
            yield
        except (OSError, ValueError, h11.RemoteProtocolError):
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
        while len(head) < len(PREFACE) and PREFACE.startswith(head):
            data = await reader.read(READ_SIZE)
            if not data:
                break
            head += data
        return head


# --------------------------------------------------------------------------
# Built-in scenarios and CLI
# --------------------------------------------------------------------------


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
    p = argparse.ArgumentParser(
        prog="python -m codexfix.testing.backend", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--port", type=int, default=0, help="plain HTTP port (0 = any)")
    p.add_argument("--tls-port", type=int, default=0, help="TLS port (0 = any)")
    p.add_argument(
        "--transcript", type=Path, help="SSE file to serve (default: a real Codex stream)"
    )
    p.add_argument("--chunk-size", type=int, default=512, help="bytes per write")
    p.add_argument("--delay", type=float, default=0.01, help="seconds between writes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the backend with built-in scenarios until SIGINT/SIGTERM."""
    args = parse_args(argv)
    source = args.transcript or CODEX_TRANSCRIPT
    scenarios = builtin_scenarios(source.read_bytes(), args.chunk_size, args.delay)
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
