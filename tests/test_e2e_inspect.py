"""End to end: captures, kept bodies and flow files through a real mitmdump with codex-fix.

Canary secrets are planted in every place a request carries them (headers, query,
a zstd-compressed JSON body, a response Set-Cookie); none may appear in any capture
file or in any line mitmdump logs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from mitmproxy import io

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import compressed, sse_events
from codexfix.testing.scenario import Scenario

from support.harness import mitmdump, wait_until
from support.transcripts import CODEX_BACKEND, events

pytestmark = pytest.mark.e2e

FRAMES = sse_events(CODEX_BACKEND[0].read_bytes())
CUT = 10
CANARIES = [f"CANARY{n}x7Qz9Lk2Vb8Mn4Rt" for n in range(11)]
SCENARIOS = {
    "healthy": Scenario(
        headers=(("content-type", "text/event-stream"), ("set-cookie", f"s={CANARIES[10]}")),
        parts=tuple(FRAMES),
    ),
    "cut": Scenario(parts=(*FRAMES[:CUT], FRAMES[CUT][:50]), end="cut"),
}
bodies: dict[str, bytes] = {}  # what the client received, per scenario


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    return SCENARIOS


@pytest.fixture(scope="module")
def run(
    backend: MockBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, str]]:
    """Both scenarios through one mitmdump; the capture dir, the flow file, the log."""
    directory = tmp_path_factory.mktemp("inspect")
    captures, flows = directory / "captures", directory / "flows.mitm"
    # mitmdump's own flow listing prints URLs, queries included: off, as the README says
    # for anyone who keeps logs.
    options = {"codexfix_capture_dir": str(captures), "flow_detail": "0"}
    mode = f"reverse:{backend.http_url}"
    with mitmdump(directory, mode, options=options, args=("-w", str(flows))) as proxy:
        headers = {
            "authorization": f"Bearer sk-{CANARIES[0]}",
            "cookie": f"session={CANARIES[1]}",
            "chatgpt-account-id": CANARIES[2],
            "x-api-key": CANARIES[3],
            "api-key": CANARIES[4],
            "content-encoding": "zstd",
            "accept": "text/event-stream",
        }
        body = {
            "model": "gpt-5",
            "stream": True,
            "api_key": CANARIES[5],
            "metadata": {"nested": [{"access_token": CANARIES[6]}]},
            "input": f"use the key sk-proj-{CANARIES[7]} please",
        }
        content = compressed(json.dumps(body).encode(), "zstd")
        query = f"?key={CANARIES[8]}&api_key={CANARIES[9]}"
        with httpx.Client(timeout=10.0) as client:
            for name in SCENARIOS:
                url = f"{proxy.url}/s/{name}/backend-api/codex/responses{query}"
                with client.stream("POST", url, content=content, headers=headers) as r:
                    bodies[name] = b"".join(r.iter_raw())
    log = proxy.log_text()
    yield captures, flows, log


def records(captures: Path) -> dict[str, dict[str, object]]:
    found = {}
    for path in sorted(captures.glob("*.json")):
        record = json.loads(path.read_text())
        found[str(record["request"]["url"]).split("/s/")[1].split("/")[0]] = record  # type: ignore[index]
    return found


def test_no_canary_reaches_any_capture_file_or_log_line(run: tuple[Path, Path, str]) -> None:
    captures, _, log = run
    files = sorted(captures.iterdir())
    assert len(files) == 6  # upstream, client and record for each flow
    assert "summary: POST" in log  # the log was really written
    for path in files:
        text = path.read_bytes().decode(errors="replace")
        assert "CANARY" not in text, path.name
    assert "CANARY" not in log


def test_capture_has_both_bodies_byte_exact_and_a_decoded_record(
    run: tuple[Path, Path, str],
) -> None:
    captures, _, _ = run
    found = records(captures)
    assert set(found) == {"healthy", "cut"}
    for name, record in found.items():
        files = record["files"]
        assert isinstance(files, dict)
        upstream = (captures / files["upstream"]).read_bytes()
        client = (captures / files["client"]).read_bytes()
        assert client == bodies[name]
        if name == "healthy":
            assert upstream == client == b"".join(FRAMES)
            assert record["outcome"] == "completed"
        else:
            assert upstream == b"".join(FRAMES[:CUT]) + FRAMES[CUT][:50]
            assert str(record["outcome"]).startswith("injected: truncated")
            assert events(client)[-2]["type"] == "response.failed"
        request = record["request"]
        assert isinstance(request, dict)
        assert request["body"]["model"] == "gpt-5"  # zstd decoded
        assert request["body"]["metadata"]["nested"][0]["access_token"] == "[REDACTED]"
        assert record["protocol"] == "responses" and record["model"] == "gpt-5-2025-08-07"


def test_flow_file_keeps_the_client_body_and_the_upstream_body(
    run: tuple[Path, Path, str],
) -> None:
    _, flows, _ = run
    with flows.open("rb") as file:
        saved = list(io.FlowReader(file).stream())
    by_name = {f.request.path.split("/")[2]: f for f in saved}  # type: ignore[attr-defined]
    cut = by_name["cut"]
    assert cut.response.content == bodies["cut"]
    info = cut.metadata["codexfix"]
    assert info["upstream"] == b"".join(FRAMES[:CUT]) + FRAMES[CUT][:50]
    assert info["outcome"] == "injected: truncated" and not info["client_truncated"]
    assert by_name["healthy"].response.content == b"".join(FRAMES)


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send `request` as is on a new connection; the response head and its chunked body,
    read until the proxy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            return head, body
        body, rest = body + rest[:size], rest[size + 2 :]


def test_captures_survive_any_header_and_body_bytes(
    tmp_path: Path, mock_backend: MockBackend
) -> None:
    binary_stream = b"data: \xff\xfe\x00" + bytes(range(256)) + b"\n\n"
    mock_backend.scenarios["healthy"] = SCENARIOS["healthy"]
    mock_backend.scenarios["binary"] = Scenario(parts=(binary_stream,))
    captures = tmp_path / "captures"
    options = {"codexfix_capture_dir": str(captures)}
    binary_body = bytes(range(256)) * 4
    received = {}
    with mitmdump(tmp_path, f"reverse:{mock_backend.http_url}", options=options) as proxy:
        for name in ("healthy", "binary"):
            head = (
                f"POST /s/{name}/v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Accept: text/event-stream\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(binary_body)}\r\nConnection: close\r\n"
            ).encode()
            odd = b"X-Odd: caf\xe9 \xff\xfe\r\nAuthorization: Bearer \xff" + CANARIES[0].encode()
            request = head + odd + b"\r\n\r\n" + binary_body
            status, received[name] = raw_exchange(proxy.port, request)
            assert status.startswith(b"HTTP/1.1 200")
        assert mock_backend.requests_for("binary")[0].body == binary_body  # forwarded as it came

        wait_until(lambda: len(records(captures)) >= 2, proxy.log_tail, 10.0)
        found = records(captures)
        assert set(found) == {"healthy", "binary"}, proxy.log_tail()
    for name, record in found.items():
        request = record["request"]
        assert isinstance(request, dict)
        headers = dict(request["headers"])
        assert headers["X-Odd"] == "caf\\xe9 \\xff\\xfe"
        assert headers["Authorization"] == "Bearer [REDACTED]"
        assert request["body"] == f"[{len(binary_body)} bytes of binary data: not kept]"
        files = record["files"]
        assert isinstance(files, dict)
        upstream = (captures / files["upstream"]).read_bytes()
        client = (captures / files["client"]).read_bytes()
        assert upstream == (b"".join(FRAMES) if name == "healthy" else binary_stream)
        assert client == received[name]
    for path in captures.iterdir():
        assert b"CANARY" not in path.read_bytes(), path.name
