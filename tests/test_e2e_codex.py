"""End to end with the real Codex CLI: `codex exec` -> mitmdump + codex-fix -> mock backend.

Two setups, as the README's "Use with the Codex CLI" section describes them:

* reverse mode: a custom provider whose `base_url` is the proxy (plain HTTP/1.1 to the
  proxy and from it to the mock);
* regular-proxy mode: the provider's `base_url` is the mock's TLS port, reached through
  `HTTPS_PROXY` with `CODEX_CA_CERTIFICATE` = mitmproxy's CA (HTTP/2 on both sides).

Each test asserts what the user sees (exit code, the answer on stdout, the `ERROR:` lines
on stderr) and what the mock received, for the pinned and the latest Codex CLI (test ids
`codex-<version>`). The README's Codex baseline table shows what the
same CLI does without codex-fix (scripts/fault_matrix.py --codex).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from codexfix.testing import codex
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.codex import CodexCli, CodexResult
from codexfix.testing.faults import (
    OVERLOADED_MESSAGE,
    SERVER_ERROR_MESSAGE,
    TOOL_CALL_ID,
    SequenceBackend,
    codex_faults,
    streamed_text,
)
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import RecordedRequest

from support.codex import requires_codex
from support.harness import wait_until

pytestmark = [pytest.mark.e2e, requires_codex]

ROOT = Path(__file__).resolve().parent.parent
ANSWER = streamed_text(sse_events(CODEX_TRANSCRIPT.read_bytes())) + "\n"
FAULTS = codex_faults()
MODES = ("reverse", "regular")
CODEX_IDLE_MS = 60_000  # Codex's own stream idle timeout in these tests (default 300 s)
INJECTED = "codex-fix: upstream"


@pytest.fixture(scope="module")
def backend(cli: CodexCli) -> Iterator[SequenceBackend]:
    """Every fault twice, as `<fault>.<mode>`: each mode counts its own requests; a new
    backend for each Codex CLI version, which counts its own requests too."""
    faults = {f"{name}.{mode}": fault for name, fault in FAULTS.items() for mode in MODES}
    with SequenceBackend(faults) as mock:
        yield mock


@pytest.fixture(scope="module")
def proxy_modes(backend: SequenceBackend) -> dict[str, str]:
    return {"reverse": f"reverse:{backend.http_url}", "regular": "regular"}


Run = Callable[..., tuple[CodexResult, list[RecordedRequest]]]


@pytest.fixture
def run(
    cli: CodexCli, backend: SequenceBackend, proxies: dict[str, Mitmdump], tmp_path: Path
) -> Run:
    """`run(fault, mode, **provider settings)`: codex exec of `cli` through codex-fix."""

    def run(fault: str, mode: str, **settings: int) -> tuple[CodexResult, list[RecordedRequest]]:
        name = f"{fault}.{mode}"
        proxy = proxies[mode]
        env: dict[str, str] = {}
        if mode == "reverse":
            base_url = f"{proxy.url}/s/{name}/v1"
        else:
            base_url = f"{backend.https_url}/s/{name}/v1"
            env = {"HTTPS_PROXY": proxy.url, "CODEX_CA_CERTIFICATE": str(proxy.ca_cert)}
        settings.setdefault("stream_idle_timeout_ms", CODEX_IDLE_MS)
        home = codex.make_home(tmp_path / "home", codex.provider_config(base_url, **settings))
        result = codex.run_codex(home, env=env, timeout=60, cli=cli)
        assert result.returncode is not None, f"codex hung:\n{result.describe()}"
        # Through the proxy, not around it: codex-fix logged this stream's summary.
        summary = f"summary: POST 127.0.0.1/s/{name}/v1/responses"
        wait_until(lambda: summary in proxy.log_text(), f"no {summary!r} in mitmdump's log")
        return result, backend.requests_for(name)

    return run


def assert_answered(result: CodexResult) -> None:
    assert result.returncode == 0, result.describe()
    assert result.stdout == ANSWER


def request_input(request: RecordedRequest) -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(request.body)["input"]
    return items


@pytest.mark.parametrize("mode", MODES)
def test_healthy_turn(run: Run, mode: str) -> None:
    result, requests = run("healthy", mode)
    assert_answered(result)
    assert len(requests) == 1
    assert requests[0].header("accept-encoding") == "identity"  # codex-fix asked for it
    assert requests[0].http_version == ("HTTP/1.1" if mode == "reverse" else "HTTP/2")


@pytest.mark.parametrize("mode", MODES)
def test_completed_without_output_item_done_prints_the_answer(run: Run, mode: str) -> None:
    """Without codex-fix the answer is empty (exit 0): Codex reads only output_item.done."""
    result, requests = run("deltas-only", mode)
    assert_answered(result)
    assert len(requests) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", ["no-id", "partial-usage", "no-id-partial-usage"])
def test_completed_without_id_or_with_partial_usage_succeeds_at_once(
    run: Run, mode: str, fault: str
) -> None:
    result, requests = run(fault, mode, stream_max_retries=1)
    assert_answered(result)
    assert "failed to parse ResponseCompleted" not in result.stderr
    assert result.errors == []  # no "Reconnecting..."
    assert len(requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_upstream_error_event_then_eof_shows_the_upstream_message(run: Run, mode: str) -> None:
    result, requests = run("server-error", mode)
    assert result.returncode == 1, result.describe()
    assert result.stdout == ""
    assert any(SERVER_ERROR_MESSAGE in line for line in result.errors), result.describe()
    assert "stream closed before response.completed" not in result.stderr
    assert len(requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_server_is_overloaded_stops_codex_at_once(run: Run, mode: str) -> None:
    result, requests = run("overloaded", mode, stream_max_retries=1)
    assert result.returncode == 1, result.describe()
    assert "Selected model is at capacity" in result.errors[-1]
    assert OVERLOADED_MESSAGE not in result.stderr  # Codex has its own words for it
    assert len(requests) == 1  # not retried although one retry was allowed


@pytest.mark.parametrize("mode", MODES)
def test_rate_limit_makes_codex_wait_the_given_time_and_retry(run: Run, mode: str) -> None:
    result, requests = run("rate-limit-then-ok", mode, stream_max_retries=1)
    assert_answered(result)
    assert result.errors == ["Reconnecting... 1/1"]
    assert len(requests) == 2
    assert result.duration >= 1.5  # "Please try again in 1.5s"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("eof-early", "(clean end of body without a terminal event)"),
        ("cut", "("),  # the transport's own words: h1 and h2 differ
    ],
)
def test_truncation_shows_the_injected_message_and_codex_retries(
    run: Run, mode: str, fault: str, reason: str
) -> None:
    result, requests = run(fault, mode, stream_max_retries=1)
    assert result.returncode == 1, result.describe()
    expected = f"{INJECTED} closed the stream before response.completed {reason}"
    assert result.errors[0] == "Reconnecting... 1/1"
    assert result.errors[-1].startswith(f"stream disconnected before completion: {expected}")
    assert len(requests) == 2  # Codex's own retry policy: one stream retry here


@pytest.mark.parametrize("mode", MODES)
def test_stall_ends_after_the_codexfix_idle_timeout(run: Run, mode: str) -> None:
    result, requests = run("stall", mode)
    assert result.returncode == 1, result.describe()
    assert result.errors[-1] == (
        f"stream disconnected before completion: {INJECTED} sent nothing for 1.5s "
        "before response.completed; request cancelled"
    )
    assert result.duration < CODEX_IDLE_MS / 1000 / 4  # far from Codex's own timeout
    wait_until(lambda: requests[0].abandoned, "upstream request not cancelled")


@pytest.mark.parametrize("mode", MODES)
def test_no_response_headers_gets_codex_an_error_instead_of_a_hang(run: Run, mode: str) -> None:
    result, requests = run("no-headers", mode)
    assert result.returncode == 1, result.describe()
    assert result.errors[-1] == (
        f"stream disconnected before completion: {INJECTED} sent no response headers "
        "within 1.5s; request cancelled"
    )
    assert result.duration < 15
    wait_until(lambda: requests[0].abandoned, "upstream request not cancelled")


@pytest.mark.parametrize("mode", MODES)
def test_tool_call_then_final_answer_completes(run: Run, mode: str) -> None:
    result, requests = run("tool-call", mode)
    assert_answered(result)
    assert len(requests) == 2
    outputs = [
        item
        for item in request_input(requests[1])
        if item.get("type") == "function_call_output" and item.get("call_id") == TOOL_CALL_ID
    ]
    assert len(outputs) == 1, request_input(requests[1])[-3:]


def run_regular(
    cli: CodexCli, backend: SequenceBackend, proxy: Mitmdump, home: Path, env: dict[str, str]
) -> CodexResult:
    config = codex.provider_config(f"{backend.https_url}/s/healthy.regular/v1")
    return codex.run_codex(
        codex.make_home(home, config), env={"HTTPS_PROXY": proxy.url, **env}, cli=cli
    )


def test_codex_ca_certificate_is_used_whatever_ssl_cert_file_says(
    cli: CodexCli, backend: SequenceBackend, proxies: dict[str, Mitmdump], tmp_path: Path
) -> None:
    proxy = proxies["regular"]
    env = {"CODEX_CA_CERTIFICATE": str(proxy.ca_cert), "SSL_CERT_FILE": str(backend.cert_path)}
    before = len(backend.requests_for("healthy.regular"))
    assert_answered(run_regular(cli, backend, proxy, tmp_path / "home", env))
    assert len(backend.requests_for("healthy.regular")) == before + 1


def test_no_proxy_covering_the_backend_bypasses_codexfix(
    cli: CodexCli, backend: SequenceBackend, proxies: dict[str, Mitmdump], tmp_path: Path
) -> None:
    """With NO_PROXY naming the backend Codex goes straight to it, where mitmproxy's CA
    proves nothing: the TLS handshake fails and no request arrives."""
    proxy = proxies["regular"]
    before = len(backend.requests_for("healthy.regular"))
    env = {"CODEX_CA_CERTIFICATE": str(proxy.ca_cert), "NO_PROXY": "127.0.0.1"}
    result = run_regular(cli, backend, proxy, tmp_path / "home", env)
    assert result.returncode == 1, result.describe()
    assert result.errors[-1] == "Connection failed: error sending request"
    assert len(backend.requests_for("healthy.regular")) == before


def test_demo_shows_the_fix_in_one_command(tmp_path: Path) -> None:
    """scripts/demo.py: mock, mitmdump and codex exec in one command, as the README says
    (with the pinned Codex CLI only)."""
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "deltas-only"]
    fixed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "codex exit code: 0" in fixed.stdout
    assert f"answer on stdout: {ANSWER.strip()!r}" in fixed.stdout
    assert "summary: POST" in fixed.stdout and "repairs=" in fixed.stdout
    baseline = subprocess.run(
        [*command, "--without-fix"], capture_output=True, text=True, timeout=120, check=False
    )
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    assert "answer on stdout: ''" in baseline.stdout
