"""End to end: a real mitmdump with codex-fix between real clients and the mock backend.

Every fault of the Responses matrix (codexfix.testing.faults) goes through HTTP/1.1 and
HTTP/2 upstreams; clients are httpx (exact bytes, clean end of body), curl, a raw
socket (the chunked terminator) and openai-python (what an SDK user sees).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

try:  # openai >= 3 is built on httpx2, earlier versions on httpx
    import httpx2 as openai_httpx
except ImportError:
    openai_httpx = httpx

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.faults import CUT, DONE, Fault, payload, responses_faults, streamed_text
from codexfix.testing.mitmdump import Mitmdump, mitmdump_executable
from codexfix.testing.scenario import Scenario

from support.harness import ADDON, E2E_OPTIONS, mitmdump, wait_for_log, wait_until
from support.transcripts import events

pytestmark = pytest.mark.e2e

FAULTS = responses_faults()
FRAMES = sse_events(CODEX_TRANSCRIPT.read_bytes())
CREATED_ID = payload(FRAMES[0])["response"]["id"]
BODY = {"model": "gpt-5", "input": "hi", "stream": True}
TIMEOUT = 10.0  # every client read is bounded; stalls end after 1.5 s


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    return {name: fault.scenario for name, fault in FAULTS.items()}


@pytest.fixture(scope="module")
def proxy_modes(backend: MockBackend) -> dict[str, str]:
    """Reverse proxies to the mock's HTTP/1.1 and TLS (HTTP/2) ports, and a regular proxy."""
    return {
        "h1": f"reverse:{backend.http_url}",
        "h2": f"reverse:{backend.https_url}",
        "regular": "regular",
    }


def post_raw(client: httpx.Client, url: str) -> tuple[httpx.Response, bytes]:
    """POST a streaming request and read the whole body; raises if it does not end cleanly."""
    headers = {"accept": "text/event-stream", "authorization": "Bearer sk-test"}
    with client.stream("POST", url, json=BODY, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def check_client_stream(name: str, body: bytes) -> None:
    """What codex-fix must deliver for fault `name` (exact bytes where they are known)."""
    fault: Fault = FAULTS[name]
    original = b"".join(FRAMES)
    payloads = events(body)
    terminals = [
        p
        for p in payloads
        if p != "[DONE]" and p["type"] in ("response.completed", "response.failed")
    ]
    assert len(terminals) == 1, body[-500:]
    if name == "healthy":
        assert body == original
    elif name == "hold-open":
        assert body == original + DONE
    elif fault.injected is None:  # repairs: the final output is the original one
        expected_output = payload(FRAMES[-1])["response"]["output"]
        assert terminals[0]["response"]["output"] == expected_output
        assert terminals[0]["response"]["id"] == CREATED_ID
        done_items = [p["item"] for p in payloads if p["type"] == "response.output_item.done"]
        assert done_items == expected_output
    else:
        failed = payloads[-2]
        assert payloads[-1] == "[DONE]" and failed["type"] == "response.failed"
        assert fault.injected in failed["response"]["error"]["message"]
        if name == "no-headers":
            assert payloads[0]["type"] == "response.created" and len(payloads) == 3
            assert failed["response"]["id"] == payloads[0]["response"]["id"]
            assert failed["response"]["id"].startswith("resp_codexfix_")
            return
        assert body.startswith(b"".join(FRAMES[:CUT]))
        assert failed["response"]["id"] == CREATED_ID
        expected_code = "rate_limit_exceeded" if name == "error-then-eof" else "server_error"
        assert failed["response"]["error"]["code"] == expected_code


def base_url(proxies: dict[str, Mitmdump], protocol: str) -> str:
    """HTTP/1.1 goes to the plain upstream; an HTTP/2 client (TLS to mitmproxy) gets an
    HTTP/2 upstream: mitmproxy offers upstream what the client offered it."""
    if protocol == "h1":
        return proxies["h1"].url
    return f"https://127.0.0.1:{proxies['h2'].port}"


def tls_to(proxy: Mitmdump) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.ca_cert))


@pytest.mark.parametrize("name", list(FAULTS))
@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_every_fault_reaches_httpx_well_formed(
    proxies: dict[str, Mitmdump], backend: MockBackend, protocol: str, name: str
) -> None:
    http2 = protocol == "h2"
    client = httpx.Client(
        http1=not http2, http2=http2, verify=tls_to(proxies["h2"]), timeout=TIMEOUT
    )
    started = time.monotonic()
    with client:
        response, body = post_raw(client, f"{base_url(proxies, protocol)}/s/{name}/v1/responses")
    if name == "hold-open":  # ended by the terminal grace (0.3 s), not the idle timeout
        assert time.monotonic() - started < float(E2E_OPTIONS["codexfix_idle_timeout"])
    assert response.status_code == 200
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    check_client_stream(name, body)
    request = backend.requests_for(name)[-1]
    assert request.http_version == response.http_version  # the upstream spoke it too
    assert request.header("accept-encoding") == "identity"
    if name in ("stall", "hold-open", "no-headers"):  # the upstream request was cancelled
        wait_until(lambda: request.abandoned, f"{name}: upstream request not cancelled")


@pytest.mark.parametrize("name", ["healthy", "empty-output", "cut", "reset", "stall", "no-headers"])
def test_regular_proxy_mode_over_https(
    proxies: dict[str, Mitmdump], backend: MockBackend, name: str
) -> None:
    proxy = proxies["regular"]
    with httpx.Client(proxy=proxy.url, verify=tls_to(proxy), http2=True, timeout=TIMEOUT) as client:
        response, body = post_raw(client, f"{backend.https_url}/s/{name}/v1/responses")
    assert response.status_code == 200
    check_client_stream(name, body)


def test_http1_body_ends_with_the_chunked_terminator_and_the_connection_lives_on(
    proxies: dict[str, Mitmdump],
) -> None:
    proxy = proxies["h1"]
    request = (
        b"POST /s/cut/v1/responses HTTP/1.1\r\nHost: x\r\naccept: text/event-stream\r\n"
        b"content-length: 2\r\n\r\n{}"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as sock:
        for _ in range(2):  # the same connection serves a second request
            sock.sendall(request)
            received = b""
            while not received.endswith(b"\r\n0\r\n\r\n"):
                chunk = sock.recv(65536)
                assert chunk, f"connection closed; got {received[-200:]!r}"
                received += chunk
            assert b"transfer-encoding: chunked" in received.lower()
            assert b"data: [DONE]" in received


def test_curl_gets_a_complete_transfer(proxies: dict[str, Mitmdump]) -> None:
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--no-buffer",
            "--max-time",
            "10",
            "-H",
            "accept: text/event-stream",
            "-d",
            "{}",
            f"{proxies['h1'].url}/s/cut/v1/responses",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr  # curl exits 18 on a partial transfer
    assert result.stdout.endswith(DONE)


def openai_client(proxies: dict[str, Mitmdump], protocol: str, name: str) -> openai.OpenAI:
    http2 = protocol == "h2"
    transport = openai_httpx.Client(
        http1=not http2, http2=http2, verify=tls_to(proxies["h2"]), timeout=TIMEOUT
    )
    return openai.OpenAI(
        base_url=f"{base_url(proxies, protocol)}/s/{name}/v1",
        api_key="sk-test",
        max_retries=0,
        http_client=transport,
    )


@pytest.mark.parametrize("name", ["healthy", "empty-output", "deltas-only", "no-id-partial-usage"])
def test_openai_stream_helper_gets_the_full_final_response(
    proxies: dict[str, Mitmdump], name: str
) -> None:
    client = openai_client(proxies, "h1", name)
    with client.responses.stream(model="gpt-5", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == streamed_text(FRAMES)
    assert final.id == CREATED_ID
    assert final.usage is not None and isinstance(final.usage.total_tokens, int)


@pytest.mark.parametrize("name", [n for n, f in FAULTS.items() if f.injected])
@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_openai_raw_iteration_ends_with_response_failed(
    proxies: dict[str, Mitmdump], protocol: str, name: str
) -> None:
    client = openai_client(proxies, protocol, name)
    events: list[Any] = list(client.responses.create(model="gpt-5", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert FAULTS[name].injected in events[-1].response.error.message


def test_summary_line_per_stream(proxies: dict[str, Mitmdump]) -> None:
    proxy = proxies["h1"]
    secrets = {"cookie": "session=sk-canary-cookie", "chatgpt-account-id": "sk-canary-account"}
    with httpx.Client(timeout=TIMEOUT, headers=secrets) as client:
        post_raw(client, f"{proxy.url}/s/healthy/v1/responses?key=sk-canary-query")
        post_raw(client, f"{proxy.url}/s/cut/v1/responses?summary=2")
    log = wait_for_log(proxy, "/s/cut/v1/responses 200")
    [healthy] = [
        line for line in log.splitlines() if "summary: POST" in line and "/s/healthy/" in line
    ][-1:]
    assert "outcome=completed" in healthy and "model=gpt-5-2025-08-07" in healthy
    assert "tokens=in:2239 cached:2176 out:15 reasoning:0" in healthy
    assert f"bytes={len(b''.join(FRAMES))}->{len(b''.join(FRAMES))}" in healthy
    cut = [line for line in log.splitlines() if "summary: POST" in line and "/s/cut/" in line][-1]
    assert "outcome=injected: truncated" in cut and "events=10" in cut
    ours = [line for line in log.splitlines() if re.search(r"\] \[[0-9a-f]{8} ", line)]
    assert len(ours) >= 2
    for secret in ("sk-test", "sk-canary-query", "sk-canary-cookie", "sk-canary-account"):
        assert not [line for line in ours if secret in line]  # never a secret in our lines


def test_unmatched_flows_are_untouched(proxies: dict[str, Mitmdump], backend: MockBackend) -> None:
    proxy = proxies["h1"]
    with httpx.Client(timeout=TIMEOUT) as client:
        response, body = post_raw(client, f"{proxy.url}/s/healthy/v1/embeddings")
    assert body == b"".join(FRAMES)
    assert response.headers["content-type"] == "text/event-stream"
    request = backend.requests_for("healthy")[-1]
    assert request.path == "/s/healthy/v1/embeddings"
    assert request.header("accept-encoding") != "identity"
    assert "/v1/embeddings 200" not in proxy.log_text()  # no summary: not ours


def test_bad_option_value_stops_startup_naming_the_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(mitmdump_executable()),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            f"confdir={tmp_path}",
            "-s",
            str(ADDON),
            "--set",
            "codexfix_idle_timeout=soon",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "codexfix_idle_timeout: expected seconds, got 'soon'" in result.stdout + result.stderr


def test_hot_reload_keeps_one_patch(tmp_path: Path, backend: MockBackend) -> None:
    script_dir = tmp_path / "addon"
    script_dir.mkdir()
    (script_dir / "codexfix").symlink_to(ADDON.parent / "codexfix")
    script = script_dir / "codex_fix.py"
    script.write_bytes(ADDON.read_bytes())
    with mitmdump(tmp_path, f"reverse:{backend.http_url}", script=script) as proxy:
        wait_for_log(proxy, "Loading script")
        later = time.time() + 5
        os.utime(script, (later, later))  # mitmproxy reloads a script whose mtime changed
        wait_until(lambda: proxy.log_text().count("Loading script") >= 2, proxy.log_tail, 15)
        time.sleep(0.5)
        with httpx.Client(timeout=TIMEOUT) as client:
            _, body = post_raw(client, f"{proxy.url}/s/cut/v1/responses")
        check_client_stream("cut", body)
        assert "Traceback" not in proxy.log_text()
