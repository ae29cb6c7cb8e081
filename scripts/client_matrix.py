"""Print what each LLM client reports for each upstream fault, through plain mitmdump and codex-fix.

    python scripts/client_matrix.py              # markdown tables for the README
    python scripts/client_matrix.py --timeout 5  # the clients' own bound, in seconds

Starts the mock backend (codexfix.testing.backend) and two real mitmdump processes in
reverse mode on 127.0.0.1 (plain HTTP/1.1 upstream): one plain (the baseline), one with
addon/codex_fix.py. For each Responses and Chat Completions fault, each client makes one
streaming request through each: openai-python (raw iteration and the stream helper, in this
interpreter), openai-node and the Vercel AI SDK (tests/js/client.mjs; `scripts/test`
installs them). No client retries. A cell says how the call ended: the text it returned
(all, part, none), and the error it raised or reported — or that it hung until the
timeout. Bold marks what a user should never get: a hang, a schema error of the client's
own about the stream, or partial text reported as a success.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

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
from codexfix.testing.mitmdump import Mitmdump, with_and_without
from codexfix.testing.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
CHAT_TRANSCRIPT = ROOT / "tests" / "fixtures" / "real" / "chat" / "openai-gpt4o-text-usage-DONE.sse"
OPTIONS = {
    "codexfix_idle_timeout": "2",
    "codexfix_header_timeout": "2",
    "codexfix_terminal_grace": "0.5",
}
Report = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    description: str
    scenario: Scenario


def faults(frames: list[bytes], cut: int, error: bytes) -> dict[str, Fault]:
    """The faults of one protocol, made from its healthy `frames`."""
    head = tuple(frames[:cut])
    half = frames[0][: len(frames[0]) // 2]
    return {
        "healthy": Fault("healthy stream", Scenario(parts=tuple(frames))),
        "clean-cut": Fault("clean EOF before the terminal", Scenario(parts=head)),
        "cut": Fault("body cut between events", Scenario(parts=head, end="cut")),
        "reset": Fault("TCP reset", Scenario(parts=head, end="drop")),
        "stall": Fault("upstream silent after some text", Scenario(parts=head, end="stall")),
        "stall-first": Fault(
            "upstream silent inside the first event", Scenario(parts=(half,), end="stall")
        ),
        "no-headers": Fault(
            "no response headers ever", Scenario(parts=tuple(frames), headers_delay=None)
        ),
        "error": Fault("in-band error, then clean EOF", Scenario(parts=(*head, error))),
    }


def responses_faults() -> dict[str, Fault]:
    frames = sse_events(CODEX_TRANSCRIPT.read_bytes())
    found = faults(frames, CUT, error_event("rate_limit_exceeded", RATE_LIMIT_MESSAGE))
    unnumbered = [
        frame({k: v for k, v in payload(f).items() if k != "sequence_number"}) for f in frames[:CUT]
    ]
    found["clean-cut-unnumbered"] = Fault(
        "clean EOF before the terminal, events without `sequence_number`",
        Scenario(parts=tuple(unnumbered)),
    )
    return found


CHAT_ERROR = (
    b'data: {"error":{"message":"The server had an error while processing your request.",'
    b'"type":"server_error","param":null,"code":null}}\n\n'
)


def chat_faults() -> dict[str, Fault]:
    return faults(sse_events(CHAT_TRANSCRIPT.read_bytes()), 6, CHAT_ERROR)


# -- the clients ----------------------------------------------------------------------------


def describe(error: BaseException) -> dict[str, Any]:
    return {"class": type(error).__name__, "message": str(getattr(error, "message", error))}


def python_client(run: Callable[[openai.OpenAI, Report], None]) -> Callable[[str, float], Report]:
    """An openai-python call as a client of the matrix: what it streamed and raised."""

    def client(base_url: str, timeout: float) -> Report:
        sdk = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=timeout)
        report: Report = {"text": "", "final": None, "error": None, "hung": False}
        try:
            run(sdk, report)
        except openai.APITimeoutError:
            report["hung"] = True
        except Exception as error:  # what the client raised is the result
            report["error"] = describe(error)
        return report

    return client


def py_responses_raw(sdk: openai.OpenAI, report: Report) -> None:
    for event in sdk.responses.create(model="gpt-5", input="hi", stream=True):
        if event.type == "response.output_text.delta":
            report["text"] += event.delta
        if event.type == "error" and report["error"] is None:  # an event, not raised
            report["error"] = {"class": "an `error` event", "message": event.message}
        if event.type in ("response.completed", "response.failed", "response.incomplete"):
            error = event.response.error
            report["final"] = {
                "status": event.response.status,
                "error": error and {"class": "response.failed", "message": error.message},
            }


def py_responses_stream(sdk: openai.OpenAI, report: Report) -> None:
    with sdk.responses.stream(model="gpt-5", input="hi") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                report["text"] += event.delta
        final = stream.get_final_response()
    report["final"] = {"status": final.status, "output_text": final.output_text}


def py_chat_raw(sdk: openai.OpenAI, report: Report) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    for chunk in sdk.chat.completions.create(model="gpt-4o", messages=messages, stream=True):
        for choice in chunk.choices:
            report["text"] += choice.delta.content or ""
            if choice.finish_reason:
                report["final"] = {"finish_reason": choice.finish_reason}


def py_chat_stream(sdk: openai.OpenAI, report: Report) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with sdk.chat.completions.stream(model="gpt-4o", messages=messages) as stream:
        for event in stream:
            if event.type == "content.delta":
                report["text"] += event.delta
        final = stream.get_final_completion()
    report["final"] = {"finish_reason": final.choices[0].finish_reason}


def js_client(mode: str, model: str) -> Callable[[str, float], Report]:
    """A mode of tests/js/client.mjs as a client of the matrix."""

    def client(base_url: str, timeout: float) -> Report:
        command = ["node", str(JS_DIR / "client.mjs"), mode, base_url, model]
        result = subprocess.run(
            [*command, str(int(timeout * 1000))],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
        if result.returncode != 0 or not result.stdout:
            raise RuntimeError(f"{mode}: {result.stderr[-2000:]}")
        report: Report = json.loads(result.stdout)
        return report

    return client


def package_version(name: str) -> str:
    manifest = json.loads((JS_DIR / "node_modules" / name / "package.json").read_text())
    return str(manifest["version"])


def clients(protocol: str) -> dict[str, Callable[[str, float], Report]]:
    """The clients of a protocol, by column heading."""
    node, ai = f"openai-node {package_version('openai')}", f"AI SDK {package_version('ai')}"
    python = f"openai-python {openai.__version__}"
    if protocol == "responses":
        return {
            f"{python} raw `responses.create(stream=True)`": python_client(py_responses_raw),
            f"{python} `responses.stream()` + `get_final_response()`": python_client(
                py_responses_stream
            ),
            f"{node} raw `responses.create({{stream: true}})`": js_client(
                "node-responses-raw", "gpt-5"
            ),
            f"{node} `responses.stream()` + `finalResponse()`": js_client(
                "node-responses-stream", "gpt-5"
            ),
            f"{ai} `streamText(openai.responses())`": js_client("ai-responses", "gpt-5"),
        }
    return {
        f"{python} raw `chat.completions.create(stream=True)`": python_client(py_chat_raw),
        f"{python} `chat.completions.stream()`": python_client(py_chat_stream),
        f"{node} raw `chat.completions.create({{stream: true}})`": js_client(
            "node-chat-raw", "gpt-4o"
        ),
        f"{node} `chat.completions.stream()`": js_client("node-chat-stream", "gpt-4o"),
        f"{ai} `streamText(openai.chat())`": js_client("ai-chat", "gpt-4o"),
    }


# -- one cell ---------------------------------------------------------------------------------

SCHEMA_ERRORS = {"TypeValidationError", "JSONParseError", "ZodError", "OpenAIError", "TypeError"}


def errors_of(report: Report) -> list[dict[str, Any]]:
    final = report["final"] or {}
    found = [report["error"], *report.get("on_error", []), final.get("error")]
    return [e for e in found if isinstance(e, dict) and "class" in e]


def text_of(report: Report, full: str) -> str:
    if not report["text"]:
        return "no text"
    return "full text" if report["text"] == full else "part of the text"


def short(message: str, length: int = 70) -> str:
    if "<html" in message:  # plain mitmdump's 502 page
        message = message.split("<html", 1)[0] + "(an HTML page)"
    message = " ".join(message.split())
    return message if len(message) <= length else message[: length - 1] + "…"


def cell(report: Report, full: str, timeout: float) -> str:
    """What the user of the client got, in a line."""
    if report["hung"]:
        return f"**hang** ({timeout:g} s timeout), {text_of(report, full)}"
    text = text_of(report, full)
    final = report["final"] or {}
    schema = [e for e in errors_of(report) if e["class"] in SCHEMA_ERRORS]
    if schema:
        rejected = f" on `{schema[0]['rejected']}`" if schema[0].get("rejected") else ""
        said = "" if rejected else f": {short(schema[0]['message'], 50)}"
        return f"{text}, **{schema[0]['class']}**{rejected}{said}"
    raised = report["error"] or next(iter(report.get("on_error", [])), None)
    if raised is not None:
        return f"{text}, {raised['class']}: {short(raised['message'])}"
    if final.get("status") == "failed" and final.get("error"):
        message = short(final["error"]["message"])
        if "output_text" not in final:  # raw iteration: the terminal event it saw
            return f"{text}, ends with `response.failed`: {message}"
        kept = short(final["output_text"], 20)
        return f"{text}, resolves `status: failed`, `output_text` {kept!r}: {message}"
    if isinstance(final.get("error"), dict):  # the AI SDK's `result.text` rejected
        return f"{text}, `result.text` rejects: {final['error']['class']}"
    if report["text"] != full:
        return f"**{text}, no error**"
    return text


# -- the tables --------------------------------------------------------------------------------


def table(
    protocol: str, found: dict[str, Fault], full: str, proxies: dict[str, Mitmdump], timeout: float
) -> str:
    columns = clients(protocol)
    runs = [
        (name, label, heading)
        for name in found
        for label in ("plain", "codex-fix")
        for heading in columns
    ]

    def run(key: tuple[str, str, str]) -> str:
        name, label, heading = key
        url = f"{proxies[label].url}/s/{protocol}-{name}/v1"
        return cell(columns[heading](url, timeout), full, timeout)

    with ThreadPoolExecutor(max_workers=6) as pool:
        cells = dict(zip(runs, pool.map(run, runs), strict=True))
    lines = [
        "| upstream fault | through | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for name, fault in found.items():
        for label in ("plain", "codex-fix"):
            row = [cells[(name, label, heading)] for heading in columns]
            first = fault.description if label == "plain" else ""
            lines.append(f"| {first} | {label} | " + " | ".join(row) + " |")
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--timeout", type=float, default=5.0, help="each client's bound (s)")
    args = parser.parse_args()
    if not (JS_DIR / "node_modules" / "ai").is_dir():
        print(f"JavaScript clients not found in {JS_DIR}: run scripts/test once")
        return 2
    protocols = {
        "responses": (
            responses_faults(),
            streamed_text(sse_events(CODEX_TRANSCRIPT.read_bytes())),
        ),
        "chat": (chat_faults(), chat_text(sse_events(CHAT_TRANSCRIPT.read_bytes()))),
    }
    scenarios = {
        f"{protocol}-{name}": fault.scenario
        for protocol, (found, _) in protocols.items()
        for name, fault in found.items()
    }
    with tempfile.TemporaryDirectory() as tmp, MockBackend(scenarios) as backend:
        proxies = with_and_without(
            f"reverse:{backend.http_url}", Path(tmp), ROOT / "addon/codex_fix.py", OPTIONS
        )
        try:
            for protocol, (found, full) in protocols.items():
                print(f"**{protocol.capitalize()}**\n")
                print(table(protocol, found, full, proxies, args.timeout))
        finally:
            for proxy in proxies.values():
                proxy.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
