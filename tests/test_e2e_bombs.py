"""End to end: decompression bombs in both directions through a real mitmdump with codex-fix.

An upstream that compresses despite `accept-encoding: identity` sends a body of some
kilobytes that decodes to 1 GiB of SSE; a client sends a request body of some kilobytes
of zstd that decodes to 1 GiB of JSON. Both must leave mitmdump's memory bounded (its peak
RSS, from /proc), the first with the client's stream ending in the injected failure and
the upstream request cancelled, the second with the request forwarded as it came.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import compressed, sse_events
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import Scenario

from support.harness import wait_until
from support.transcripts import CODEX_BACKEND, events

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
# Generous: mitmdump itself takes ~100 MB; before the bounds, each bomb took it past 3 GB.
PEAK_RSS_BOUND = 600 * MB
EVENT = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","item_id":"msg_1","output_index":0,'
    b'"content_index":0,"delta":"bomb "}\n\n'
)
BLOCK = EVENT * (MB // len(EVENT))  # about 1 MiB of SSE
SSE_HEADERS = (("content-type", "text/event-stream"),)
FRAMES = sse_events(CODEX_BACKEND[0].read_bytes())


def response_bomb(encoding: str) -> Scenario:
    """1 GiB of deltas, then silence: only a cancel ends the upstream request."""
    body = compressed(BLOCK, encoding, 1024)
    headers = (*SSE_HEADERS, ("content-encoding", encoding))
    return Scenario(headers=headers, parts=(body,), end="stall")


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    bombs = {e: response_bomb(e) for e in ("zstd", "gzip")}
    return {**bombs, "healthy": Scenario(headers=SSE_HEADERS, parts=tuple(FRAMES))}


@pytest.fixture(scope="module")
def proxy_modes(backend: MockBackend) -> dict[str, str]:
    return {"h1": f"reverse:{backend.http_url}"}


def peak_rss(proxy: Mitmdump) -> int:
    """mitmdump's peak resident memory so far (VmHWM), in bytes."""
    assert proxy.proc is not None
    status = Path(f"/proc/{proxy.proc.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # in kB


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_a_response_bomb_ends_in_the_injected_failure_with_bounded_memory(
    proxies: dict[str, Mitmdump], backend: MockBackend, encoding: str
) -> None:
    mitmdump = proxies["h1"]
    started = time.monotonic()
    with (
        httpx.Client(timeout=30.0) as client,
        client.stream(
            "POST",
            f"{mitmdump.url}/s/{encoding}/v1/responses",
            json={"model": "gpt-5", "input": "hi", "stream": True},
            headers={"accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        assert "content-encoding" not in response.headers  # decoded for the client
        body = b"".join(response.iter_raw())  # raises on a body that does not end cleanly
    elapsed = time.monotonic() - started

    # Whole deltas as the upstream sent them, up to the bound (64 MiB by default)...
    deltas = body.rindex(EVENT) + len(EVENT)
    assert 60 * MB < deltas <= 64 * MB
    assert body[:deltas] == EVENT * (deltas // len(EVENT))
    # ...then the injected failure saying why, and [DONE].
    tail = events(body[deltas:])
    assert tail[-1] == "[DONE]"
    failed = tail[-2]
    assert isinstance(failed, dict) and failed["type"] == "response.failed"
    why = f"the {encoding} body decodes to more than {64 * MB} bytes (codexfix_max_decoded_size)"
    assert why in failed["response"]["error"]["message"]

    request = backend.requests_for(encoding)[-1]
    wait_until(lambda: request.abandoned, "the upstream request was not cancelled", 10.0)
    assert mitmdump.log_text().count(f"{why}: ending the stream") == 1
    assert peak_rss(mitmdump) < PEAK_RSS_BOUND, peak_rss(mitmdump)
    assert elapsed < 30.0


def test_a_request_bomb_is_forwarded_with_bounded_memory(
    proxies: dict[str, Mitmdump],
    backend: MockBackend,
) -> None:
    mitmdump = proxies["h1"]
    head, tail = b'{"model":"gpt-5","input":"', b'","stream":true}'
    content = compressed(b"x" * MB, "zstd", 1024, head=head, tail=tail)  # 1 GiB of JSON
    assert len(content) < 64 * 1024
    with httpx.Client(timeout=30.0) as client:
        response = client.post(  # no Accept: text/event-stream: the body would have to tell
            f"{mitmdump.url}/s/healthy/v1/responses",
            content=content,
            headers={"content-encoding": "zstd", "content-type": "application/json"},
        )
    # The body did not decide; the response's Content-Type did: a handled stream.
    assert response.status_code == 200
    assert response.content == b"".join(FRAMES)
    assert backend.requests_for("healthy")[-1].body == content  # forwarded as it came
    log = mitmdump.log_text()
    assert f"request body decodes to more than {64 * MB} bytes (codexfix_max_request_scan)" in log
    summary = "/s/healthy/v1/responses 200 responses"
    wait_until(lambda: summary in mitmdump.log_text(), f"no {summary!r} in the log", 5.0)
    assert "outcome=completed" in mitmdump.log_text().split(summary)[1].splitlines()[0]
    assert peak_rss(mitmdump) < PEAK_RSS_BOUND, peak_rss(mitmdump)
