"""Tests for the mock backend, codexfix.testing.backend (and, once, the mitmdump harness).

Each behaviour is checked with a real client: httpx for HTTP/1.1, TLS and
HTTP/2, a raw socket where the exact HTTP/1.1 bytes matter, and a raw ``h2``
client where HTTP/2 frame-level behaviour matters (RST_STREAM, concurrency).
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

from codexfix.testing.backend import MockBackend, builtin_scenarios
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.scenario import Scenario

from support.harness import mitmdump
from support.transcripts import CODEX_BACKEND

PARTS = (b"event: a\ndata: {", b'"n":1}\n\n', b"event: b\ndata: {", b'"n":2}\n\n')
BODY = b"".join(PARTS)
SHORT = httpx.Timeout(5.0, read=0.5)


@pytest.fixture
def mb(mock_backend: MockBackend) -> MockBackend:
    """The mock backend with a handful of scenarios used below."""
    mock_backend.scenarios.update(
        {
            "ok": Scenario(parts=PARTS, delay=0.01),
            "default": Scenario(parts=(b"default\n",)),
            "cut": Scenario(parts=PARTS[:2], end="cut"),
            "drop": Scenario(parts=PARTS[:2], end="drop"),
            "stall": Scenario(parts=PARTS[:2], end="stall"),
            "silent": Scenario(headers_delay=None),
            "close": Scenario(parts=PARTS, framing="close"),
            "cl": Scenario(parts=PARTS, framing="content-length"),
            "short-cl": Scenario(
                parts=PARTS[:2], framing="content-length", content_length=len(BODY), end="cut"
            ),
        }
    )
    return mock_backend


@pytest.fixture
def client(mb: MockBackend) -> Iterator[httpx.Client]:
    """Plain HTTP/1.1 client pointed at the backend."""
    with httpx.Client(base_url=mb.http_url, timeout=SHORT) as c:
        yield c


@pytest.fixture
def tls_client(mb: MockBackend) -> Iterator[httpx.Client]:
    """HTTP/1.1 + HTTP/2 client over TLS, trusting the backend's CA."""
    with httpx.Client(
        base_url=mb.https_url,
        verify=ssl.create_default_context(cafile=mb.cert_path),
        http2=True,
        timeout=SHORT,
    ) as c:
        yield c


def raw_h1(port: int, request: bytes, until: Callable[[bytes], bool]) -> bytes:
    """Send raw bytes, read until ``until(data)`` holds or EOF (5 s bound)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while not until(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def get(path: str, host: str = "x") -> bytes:
    """A minimal HTTP/1.1 GET request."""
    return f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()


def parse_chunks(body: bytes) -> tuple[list[bytes], bytes]:
    """Split a chunked body into its chunks and whatever follows the last."""
    chunks: list[bytes] = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body.startswith(b"\r\n")  # no trailers
            return chunks, body[2:]
        chunks.append(body[:size])
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]


# --------------------------------------------------------------------------
# HTTP/1.1 framing and endings
# --------------------------------------------------------------------------


def test_chunked_eof_exact_bytes_and_keep_alive(mb: MockBackend) -> None:
    two = get("/s/ok/v1/responses") + get("/s/default/")
    data = raw_h1(mb.http_port, two, lambda d: d.count(b"0\r\n\r\n") >= 2)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in first
    assert b"content-type: text/event-stream" in first
    chunks, after = parse_chunks(rest)
    assert chunks == list(PARTS)  # one chunk per part
    assert after.startswith(b"HTTP/1.1 200 OK\r\n")  # second answer, same socket
    assert data.endswith(b"0\r\n\r\n")
    assert [r.scenario for r in mb.requests] == ["ok", "default"]


def test_httpx_plain_ok_and_recorded(mb: MockBackend, client: httpx.Client) -> None:
    resp = client.post("/s/ok/v1/responses?x=1", content=b'{"q":1}')
    assert resp.status_code == 200
    assert resp.content == BODY
    [req] = mb.requests_for("ok")
    assert (req.method, req.path, req.body) == ("POST", "/s/ok/v1/responses?x=1", b'{"q":1}')
    assert (req.http_version, req.tls) == ("HTTP/1.1", False)
    assert req.header("host") == f"127.0.0.1:{mb.http_port}"


def test_chunked_request_body_is_read(mb: MockBackend, client: httpx.Client) -> None:
    resp = client.post("/s/ok/", content=iter([b"ab", b"cd"]))  # chunked upload
    assert resp.content == BODY
    assert mb.requests[0].body == b"abcd"
    assert mb.requests[0].header("transfer-encoding") == "chunked"


def test_cut_h1_raises(client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/s/cut/")


def test_cut_h1_has_no_terminator(mb: MockBackend) -> None:
    data = raw_h1(mb.http_port, get("/s/cut/"), lambda d: False)  # read to EOF
    assert data.endswith(PARTS[1] + b"\r\n")
    assert b"0\r\n\r\n" not in data


def test_drop_h1_resets(mb: MockBackend, client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadError):  # ECONNRESET, not a clean EOF
        client.get("/s/drop/")
    with pytest.raises(ConnectionResetError):
        raw_h1(mb.http_port, get("/s/drop/"), lambda d: False)


def test_short_content_length_raises(mb: MockBackend, client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/s/short-cl/")
    data = raw_h1(mb.http_port, get("/s/short-cl/"), lambda d: False)
    assert f"content-length: {len(BODY)}\r\n".encode() in data
    assert data.endswith(PARTS[0] + PARTS[1])


def test_content_length_framing(mb: MockBackend, client: httpx.Client) -> None:
    resp = client.get("/s/cl/")
    assert resp.content == BODY
    assert resp.headers["content-length"] == str(len(BODY))
    assert "transfer-encoding" not in resp.headers


def test_close_framing_gives_full_body(mb: MockBackend, client: httpx.Client) -> None:
    resp = client.get("/s/close/")
    assert resp.content == BODY
    assert resp.headers["connection"] == "close"
    assert "content-length" not in resp.headers
    assert "transfer-encoding" not in resp.headers


def test_stall_read_timeout(client: httpx.Client) -> None:
    with client.stream("GET", "/s/stall/") as resp:
        assert resp.status_code == 200
        received = b""
        with pytest.raises(httpx.ReadTimeout):
            for chunk in resp.iter_raw():
                received += chunk
    assert received == PARTS[0] + PARTS[1]


def test_no_headers_read_timeout(mb: MockBackend, client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.get("/s/silent/")
    assert mb.requests_for("silent")  # the request itself was read


def test_stop_aborts_stalled_connection(mb: MockBackend) -> None:
    with socket.create_connection(("127.0.0.1", mb.http_port), timeout=5) as sock:
        sock.sendall(get("/s/stall/"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        mb.stop()
        assert time.monotonic() - t0 < 3
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass


# --------------------------------------------------------------------------
# Scenario selection
# --------------------------------------------------------------------------


def test_selection_by_path_header_and_default(mb: MockBackend, client: httpx.Client) -> None:
    assert client.get("/s/ok").content == BODY  # no trailing slash
    assert client.get("/v1/x", headers={"x-mock-scenario": "ok"}).content == BODY
    assert client.get("/v1/responses").content == b"default\n"
    # the path prefix wins over the header
    assert client.get("/s/default/", headers={"x-mock-scenario": "ok"}).content == b"default\n"
    assert [r.scenario for r in mb.requests] == ["ok", "ok", "default", "default"]


def test_unknown_scenario_404(mb: MockBackend, client: httpx.Client) -> None:
    resp = client.get("/s/nope/v1/responses")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {
        "error": {
            "message": "unknown scenario nope",
            "type": "invalid_request_error",
            "code": None,
            "param": None,
        }
    }
    del mb.scenarios["default"]
    assert client.get("/").json()["error"]["message"] == "unknown scenario default"
    # a 404 keeps the connection usable
    assert client.get("/s/ok/").content == BODY


def test_scenarios_added_while_running(mb: MockBackend, client: httpx.Client) -> None:
    mb.scenarios["late"] = Scenario(status=429, headers=(("retry-after", "1"),), parts=(b"x",))
    resp = client.get("/s/late/")
    assert (resp.status_code, resp.headers["retry-after"], resp.content) == (429, "1", b"x")


# --------------------------------------------------------------------------
# TLS and HTTP/2
# --------------------------------------------------------------------------


def test_tls_http11(mb: MockBackend) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=mb.cert_path), timeout=SHORT) as c:
        resp = c.post(f"https://localhost:{mb.https_port}/s/ok/", content=b"hi")
    assert (resp.http_version, resp.content) == ("HTTP/1.1", BODY)
    [req] = mb.requests
    assert (req.http_version, req.tls, req.body) == ("HTTP/1.1", True, b"hi")


def test_tls_h2_ok_and_recorded(mb: MockBackend, tls_client: httpx.Client) -> None:
    resp = tls_client.post("/s/ok/v1/responses", content=b'{"h2":true}')
    assert (resp.http_version, resp.status_code, resp.content) == ("HTTP/2", 200, BODY)
    [req] = mb.requests
    assert (req.method, req.path, req.body) == ("POST", "/s/ok/v1/responses", b'{"h2":true}')
    assert (req.http_version, req.tls) == ("HTTP/2", True)
    assert req.header("host") == f"127.0.0.1:{mb.https_port}"


def test_tls_h2_content_length_and_404(tls_client: httpx.Client) -> None:
    resp = tls_client.get("/s/close/")  # "close" framing on h2: no length, no connection hdr
    assert (resp.http_version, resp.content) == ("HTTP/2", BODY)
    assert "connection" not in resp.headers and "content-length" not in resp.headers
    assert tls_client.get("/s/cl/").headers["content-length"] == str(len(BODY))
    assert tls_client.get("/s/nope/").status_code == 404


def test_cut_h2_raises(tls_client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        tls_client.get("/s/cut/")
    assert tls_client.get("/s/ok/").content == BODY  # client recovers


def test_stall_h2_read_timeout(tls_client: httpx.Client) -> None:
    with tls_client.stream("GET", "/s/stall/") as resp:
        assert resp.http_version == "HTTP/2"
        with pytest.raises(httpx.ReadTimeout):
            for _ in resp.iter_raw():
                pass


def test_drop_h2_raises(mb: MockBackend, tls_client: httpx.Client) -> None:
    # Depending on timing httpx notices the reset while reading (ReadError),
    # while sending WINDOW_UPDATE (WriteError), or Python's ssl module reports
    # it as a ragged EOF ("Server disconnected", RemoteProtocolError).
    with pytest.raises((httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        tls_client.get("/s/drop/")
    # Without TLS in between, the RST is unambiguous (and no GOAWAY precedes it).
    with pytest.raises(ConnectionResetError):
        h2_exchange(mb.http_port, ["/s/drop/"], done=1)


def test_h2_prior_knowledge_on_plain_port(mb: MockBackend) -> None:
    with httpx.Client(http1=False, http2=True, timeout=SHORT) as c:
        resp = c.get(f"{mb.http_url}/s/ok/")
    assert (resp.http_version, resp.content) == ("HTTP/2", BODY)
    assert (mb.requests[0].http_version, mb.requests[0].tls) == ("HTTP/2", False)


def h2_exchange(port: int, paths: list[str], done: int) -> dict[int, list[h2.events.Event]]:
    """Raw prior-knowledge h2 client: send GETs, collect events per stream.

    Returns once ``done`` streams have ended or been reset (5 s bound).
    """
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    conn.initiate_connection()
    events: dict[int, list[h2.events.Event]] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for path in paths:
            sid = conn.get_next_available_stream_id()
            hdrs = [(":method", "GET"), (":path", path), (":scheme", "http")]
            conn.send_headers(sid, [*hdrs, (":authority", "x")], end_stream=True)
            events[sid] = []
        sock.sendall(conn.data_to_send())
        finished = 0
        while finished < done:
            data = sock.recv(65536)
            assert data, "server closed the h2 connection"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                sid = getattr(ev, "stream_id", 0)
                if sid in events:
                    events[sid].append(ev)
                finished += isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset))
            sock.sendall(conn.data_to_send())
    return events


def data_of(events: list[h2.events.Event]) -> list[bytes]:
    """The DATA frame payloads among ``events``."""
    return [e.data for e in events if isinstance(e, h2.events.DataReceived)]


def test_h2_frames_reset_and_concurrency(mb: MockBackend) -> None:
    # stall (never finishes), cut (RST_STREAM), ok (END_STREAM) on ONE connection
    events = h2_exchange(mb.http_port, ["/s/stall/", "/s/cut/", "/s/ok/"], done=2)
    stall, cut, ok = events.values()
    assert data_of(ok) == list(PARTS)  # one DATA frame per part
    assert isinstance(ok[-1], h2.events.StreamEnded)
    assert data_of(cut) == list(PARTS[:2])
    assert isinstance(cut[-1], h2.events.StreamReset)
    assert cut[-1].error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert data_of(stall) == list(PARTS[:2])
    assert not any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in stall)


def test_h2_large_body_respects_flow_control(mb: MockBackend) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB > default 64 KiB window
    mb.scenarios["big"] = Scenario(parts=(big[:100_000], big[100_000:]))
    events = h2_exchange(mb.http_port, ["/s/big/"], done=1)
    assert b"".join(data_of(events[1])) == big


# --------------------------------------------------------------------------
# Built-in scenarios and CLI
# --------------------------------------------------------------------------


def test_the_shipped_transcript_is_the_real_one() -> None:
    real = next(path for path in CODEX_BACKEND if path.name == CODEX_TRANSCRIPT.name)
    assert CODEX_TRANSCRIPT.read_bytes() == real.read_bytes()


def test_builtin_scenarios() -> None:
    transcript = CODEX_TRANSCRIPT.read_bytes()
    sc = builtin_scenarios(transcript, 512, 0.0)
    assert sc["default"] == sc["ok"]
    assert b"".join(sc["ok"].parts) == transcript
    assert max(len(p) for p in sc["ok"].parts) == 512
    half = transcript[: len(transcript) // 2]
    for name in ("cut-midbody", "stall", "drop", "short-content-length"):
        assert b"".join(sc[name].parts) == half, name
    assert (sc["cut-midbody"].end, sc["stall"].end, sc["drop"].end) == ("cut", "stall", "drop")
    assert sc["hold-open"].parts == sc["ok"].parts and sc["hold-open"].end == "stall"
    assert sc["no-headers"].headers_delay is None
    short = sc["short-content-length"]
    assert (short.framing, short.content_length, short.end) == (
        "content-length",
        len(transcript),
        "cut",
    )
    early = b"".join(sc["eof-early"].parts)
    assert early == b"".join(sse_events(transcript)[:-1]) and early.endswith(b"\n\n")
    assert sc["eof-early"].end == "eof"


def test_cli_prints_ports_and_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "codexfix.testing.backend", "--delay", "0", "--chunk-size", "4096"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())  # printed once listening
        with httpx.Client(
            verify=ssl.create_default_context(cafile=info["cert"]), http2=True, timeout=5
        ) as c:
            resp = c.get(f"https://127.0.0.1:{info['https_port']}/s/ok/")
            assert resp.content == CODEX_TRANSCRIPT.read_bytes()
            assert resp.http_version == "HTTP/2"
            plain = c.get(f"http://127.0.0.1:{info['http_port']}/")
            assert plain.content == resp.content  # default = ok
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# --------------------------------------------------------------------------
# Harness: a real mitmdump in reverse mode in front of the mock
# --------------------------------------------------------------------------


@pytest.mark.e2e
def test_mitmdump_reverse_proxy_byte_identical(mock_backend: MockBackend, tmp_path: Path) -> None:
    transcript = CODEX_TRANSCRIPT.read_bytes()
    mock_backend.scenarios.update(builtin_scenarios(transcript, 512, 0.0))
    mode = f"reverse:http://127.0.0.1:{mock_backend.http_port}"
    with (
        mitmdump(tmp_path, mode, script=None, options={}) as proxy,
        httpx.Client(base_url=proxy.url, timeout=10) as c,
    ):
        resp = c.post("/s/ok/v1/responses", content=b'{"model":"gpt-5"}')
    assert resp.status_code == 200
    assert resp.content == transcript
    [req] = mock_backend.requests
    assert (req.path, req.body) == ("/s/ok/v1/responses", b'{"model":"gpt-5"}')
    assert proxy.ca_cert.exists()
    assert "listening at" in proxy.log_text()
