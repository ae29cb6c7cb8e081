"""End to end: the JavaScript clients people use, through a real mitmdump with codex-fix.

openai-node (`responses.stream()` + `finalResponse()`, raw `responses.create({stream:
true})`, `chat.completions.create({stream: true})`, `chat.completions.stream()` +
`finalChatCompletion()`) and the Vercel AI SDK (`streamText` over `openai.responses()` and
`openai.chat()`), pinned in tests/js, each driven by tests/js/client.mjs against the mock
backend (HTTP/1.1, reverse mode) for every fault. Each test asserts what the client
reports: the full text for a healthy stream, else the text that streamed and an API error
carrying codex-fix's message or the upstream's — never a hang, a schema or parse error of
the client's own, or a silent partial success. All runs of the module go at once, before
the first test, and each test reads its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.faults import (
    CUT,
    RATE_LIMIT_MESSAGE,
    chat_text,
    error_event,
    frame,
    payload,
    streamed_text,
)
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import Scenario

from support.transcripts import FIXTURES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not found"),
]

JS_DIR = Path(__file__).resolve().parent / "js"
CLIENT = JS_DIR / "client.mjs"
CLIENT_TIMEOUT_MS = 8000  # the driver's own bound: past it, it reports hung: true
RESPONSES_MODES = ("node-responses-stream", "node-responses-raw", "ai-responses")
CHAT_MODES = ("node-chat-raw", "node-chat-stream", "ai-chat")
# A client's complaint about the stream itself, which a well-formed stream never causes:
# the AI SDK's schema check (TypeValidationError) or JSON parse; openai-node's own checks
# throw a bare OpenAIError ("Lifecycle response identity changed"; its API errors are
# subclasses, APIError and the like, with other names).
SCHEMA_ERRORS = {"TypeValidationError", "JSONParseError", "ZodError", "OpenAIError", "TypeError"}


@dataclass(frozen=True)
class Case:
    """A fault: what the mock plays, the text that streams before it, and what the error
    the client reports must say (None: a healthy stream, no error)."""

    scenario: Scenario
    streamed: str
    error: str | None


def unnumbered(frames: list[bytes]) -> list[bytes]:
    """The frames without `sequence_number` (the Responses API's 2025-03 shape)."""
    return [frame({k: v for k, v in payload(f).items() if k != "sequence_number"}) for f in frames]


def cases(
    frames: list[bytes], cut: int, text: Any, ended: str, error: bytes, error_message: str
) -> dict[str, Case]:
    """The faults of one protocol, from its healthy `frames`; `ended` names its terminal in
    codex-fix's messages ("response.completed", "finish_reason")."""
    head = tuple(frames[:cut])
    streamed = text(frames[:cut])
    closed = f"codex-fix: upstream closed the stream before {ended} ("
    silent = f"codex-fix: upstream sent nothing for 1.5s before {ended}"
    return {
        "healthy": Case(Scenario(parts=tuple(frames)), text(frames), None),
        "clean-cut": Case(Scenario(parts=head), streamed, closed + "clean end of body"),
        "cut-at-boundary": Case(Scenario(parts=head, end="cut"), streamed, closed),
        "reset": Case(Scenario(parts=head, end="drop"), streamed, closed),
        "stall": Case(Scenario(parts=head, end="stall"), streamed, silent),
        "stall-in-first-event": Case(
            Scenario(parts=(frames[0][: len(frames[0]) // 2],), end="stall"), "", silent
        ),
        "no-headers": Case(
            Scenario(parts=tuple(frames), headers_delay=None),
            "",
            "codex-fix: upstream sent no response headers within 1.5s",
        ),
        "error-then-eof": Case(Scenario(parts=(*head, error)), streamed, error_message),
    }


RESPONSES_FRAMES = sse_events(CODEX_TRANSCRIPT.read_bytes())
CHAT_FRAMES = sse_events((FIXTURES / "chat" / "openai-gpt4o-text-usage-DONE.sse").read_bytes())
CHAT_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
CHAT_ERROR = b'data: {"error":{"message":"%s","type":"server_error","param":null,"code":null}}\n\n'
RESPONSES_CASES = cases(
    RESPONSES_FRAMES,
    CUT,
    streamed_text,
    "response.completed",
    error_event("rate_limit_exceeded", RATE_LIMIT_MESSAGE),
    RATE_LIMIT_MESSAGE,
)
RESPONSES_CASES["clean-cut-unnumbered"] = Case(
    Scenario(parts=tuple(unnumbered(RESPONSES_FRAMES[:CUT]))),
    RESPONSES_CASES["clean-cut"].streamed,
    RESPONSES_CASES["clean-cut"].error,
)
CHAT_CASES = cases(
    CHAT_FRAMES,
    6,
    chat_text,
    "finish_reason",
    CHAT_ERROR % CHAT_ERROR_MESSAGE.encode(),
    CHAT_ERROR_MESSAGE,
)
SCENARIOS = {f"responses-{name}": case for name, case in RESPONSES_CASES.items()} | {
    f"chat-{name}": case for name, case in CHAT_CASES.items()
}


def params() -> Iterator[Any]:
    for name in SCENARIOS:
        for mode in RESPONSES_MODES if name.startswith("responses-") else CHAT_MODES:
            yield pytest.param(name, mode, id=f"{name}-{mode}")


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    return {name: case.scenario for name, case in SCENARIOS.items()}


@pytest.fixture(scope="module")
def proxy_modes(backend: MockBackend) -> dict[str, str]:
    return {"h1": f"reverse:{backend.http_url}"}


def run_client(mode: str, base_url: str, model: str) -> dict[str, Any]:
    """What the client of `mode` reported (tests/js/client.mjs's JSON line)."""
    result = subprocess.run(
        ["node", str(CLIENT), mode, base_url, model, str(CLIENT_TIMEOUT_MS)],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_MS / 1000 + 20,
        check=False,
    )
    assert result.returncode == 0 and result.stdout, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture(scope="module")
def reports(
    request: pytest.FixtureRequest, proxies: dict[str, Mitmdump]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every selected test's client run, all at once (most of the time is waiting)."""
    if not (JS_DIR / "node_modules" / "ai").is_dir():
        pytest.skip(f"JavaScript clients not installed in {JS_DIR} (scripts/test runs npm ci)")
    wanted = [
        (item.callspec.params["name"], item.callspec.params["mode"])
        for item in request.session.items
        if item.path == request.path and hasattr(item, "callspec")
    ]
    proxy = proxies["h1"]

    def run(key: tuple[str, str]) -> dict[str, Any]:
        name, mode = key
        model = "gpt-5" if name.startswith("responses-") else "gpt-4o"
        return run_client(mode, f"{proxy.url}/s/{name}/v1", model)

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip(wanted, pool.map(run, wanted), strict=True))


def errors_reported(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every error the client raised or reported: thrown, in the stream, to onError, by
    the final helper."""
    final = report["final"] or {}
    found = [report["error"], *report.get("on_error", []), final.get("error")]
    return [error for error in found if isinstance(error, dict) and "class" in error]


def failure_of(report: dict[str, Any]) -> str | None:
    """The message of the failed response a Responses client resolved with (openai-node
    resolves `finalResponse()` and iterates `response.failed` without throwing)."""
    final = report["final"] or {}
    if final.get("status") != "failed" or not isinstance(final.get("error"), dict):
        return None
    return str(final["error"]["message"])


@pytest.mark.parametrize(("name", "mode"), params())
def test_js_client_reports_the_text_or_the_error(
    reports: dict[tuple[str, str], dict[str, Any]], name: str, mode: str
) -> None:
    case, report = SCENARIOS[name], reports[(name, mode)]
    shown = json.dumps(report, indent=1)[:4000]
    assert not report["hung"], shown
    schema_errors = [e for e in errors_reported(report) if e["class"] in SCHEMA_ERRORS]
    assert not schema_errors, shown
    assert report["text"] == case.streamed, shown  # nothing lost, nothing twice
    final = report["final"] or {}
    if case.error is None:
        assert not errors_reported(report), shown
        check_healthy_final(mode, report, case.streamed)
        return
    messages = [e["message"] for e in errors_reported(report)] + [failure_of(report)]
    assert any(m and case.error in m for m in messages), shown  # never a silent success
    if mode.startswith("ai-"):
        assert report.get("finish_reason") in ("error", None), shown  # None: before output
        assert final.get("text", case.streamed) == case.streamed, shown
    if mode == "node-responses-stream" and report["final"] is not None:
        # finalResponse() resolved (status "failed"): the text that streamed is kept.
        assert final["output_text"] == case.streamed, shown


def check_healthy_final(mode: str, report: dict[str, Any], text: str) -> None:
    """The final helper's result, or the terminal the raw iteration saw, is a success."""
    final = report["final"]
    if mode == "node-responses-stream":
        assert final["status"] == "completed" and final["output_text"] == text
    elif mode == "node-responses-raw":
        assert final["status"] == "completed"
    elif mode == "node-chat-raw":
        assert final["finish_reason"] == "stop"
    elif mode == "node-chat-stream":
        assert final["finish_reason"] == "stop" and final["content"] == text
    else:
        assert final["text"] == text and report["finish_reason"] == "stop"
