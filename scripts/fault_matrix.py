"""Print what a client gets for each Responses fault, through plain mitmdump and codex-fix.

    python scripts/fault_matrix.py            # markdown table for the README
    python scripts/fault_matrix.py --timeout 5
    python scripts/fault_matrix.py --codex    # the same for the real Codex CLI

Starts the mock backend (codexfix.testing.backend) and two real mitmdump processes in
reverse mode on 127.0.0.1: one plain (today's baseline), one with addon/codex_fix.py.
For every fault of codexfix.testing.faults, httpx (HTTP/1.1) and openai-python's raw
`responses.create(stream=True)` iteration read the stream; the table shows how the
body ended and how the stream ended. With `--codex`, `codex exec` (codexfix.testing.codex:
the pinned Codex CLI, a custom provider, one stream retry, no request retry) runs once per
Codex fault (`codex_faults`) straight at the mock, through plain mitmdump and through
codex-fix; the table shows its exit code, its answer on stdout, the requests the mock
received and its last `ERROR:` line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
import openai

from codexfix.testing import codex
from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.faults import (
    CodexFault,
    SequenceBackend,
    codex_faults,
    responses_faults,
    streamed_text,
)
from codexfix.testing.mitmdump import Mitmdump, with_and_without

ROOT = Path(__file__).resolve().parent.parent
# The pinned Codex CLI, as the tests install it (`@openai/codex` in tests/codex).
PINNED = codex.npm_clis(ROOT / "tests" / "codex")[0]

OPTIONS = {
    "codexfix_idle_timeout": "2",
    "codexfix_header_timeout": "2",
    "codexfix_terminal_grace": "0.5",
}


def httpx_outcome(url: str, timeout: float) -> str:
    """How the body ended, and the last event the client saw."""
    start = time.monotonic()
    body = b""
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream(
                "POST", url, json={"stream": True}, headers={"accept": "text/event-stream"}
            ) as response,
        ):
            if response.status_code != 200:
                return f"HTTP {response.status_code}"
            for chunk in response.iter_raw():
                body += chunk
    except httpx.ReadTimeout:
        return f"hang: nothing for {timeout:g}s (ReadTimeout), last event {last_event(body)}"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}, last event {last_event(body)}"
    return f"clean end after {time.monotonic() - start:.1f}s, last event {last_event(body)}"


def last_event(body: bytes) -> str:
    events = sse_events(body)
    if not events:
        return "none"
    if events[-1].startswith(b"data: [DONE]"):
        before = last_event(b"".join(events[:-1]))
        return f"{before} + [DONE]"
    line = events[-1].split(b"\n", 1)[0].decode(errors="replace")
    return line.removeprefix("event: ") if line.startswith("event:") else "data-only"


def openai_outcome(base_url: str, timeout: float) -> str:
    """openai-python's stream helper: the final answer, or what it raised."""
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=timeout)
    last = "none"
    try:
        with client.responses.stream(model="gpt-5", input="hi") as stream:
            for event in stream:
                last = event.type
            final = stream.get_final_response()
    except openai.APITimeoutError:
        return f"hang ({timeout:g}s timeout), last event {last}"
    except (openai.APIError, httpx.HTTPError, RuntimeError, ValueError) as exc:
        return f"{type(exc).__name__} after {last}: {str(exc)[:70]}"
    return f"output_text {final.output_text[:24]!r}, {len(final.output)} items"


def run(timeout: float) -> list[tuple[str, str, str, str, str]]:
    faults = responses_faults()
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        MockBackend({name: fault.scenario for name, fault in faults.items()}) as backend,
    ):
        proxies = with_and_without(
            f"reverse:{backend.http_url}", Path(tmp), ROOT / "addon/codex_fix.py", OPTIONS
        )
        try:
            for name, fault in faults.items():
                row: list[str] = [fault.description]
                for label in ("plain", "codex-fix"):
                    base = f"{proxies[label].url}/s/{name}"
                    row.append(httpx_outcome(f"{base}/v1/responses", timeout))
                    row.append(openai_outcome(f"{base}/v1", timeout))
                rows.append((row[0], row[1], row[2], row[3], row[4]))
        finally:
            for proxy in proxies.values():
                proxy.stop()
    return rows


def markdown(rows: list[tuple[str, str, str, str, str]]) -> str:
    header = (
        "| upstream fault | plain mitmdump: httpx | plain: openai `responses.stream()` | "
        "codex-fix: httpx | codex-fix: openai `responses.stream()` |\n|---|---|---|---|---|\n"
    )
    return header + "".join("| " + " | ".join(row) + " |\n" for row in rows)


def codex_outcome(result: codex.CodexResult, requests: int, timeout: float) -> str:
    """What the user of `codex exec` sees, in one cell."""
    if result.returncode is None:
        return f"**hang**: killed after {timeout:g}s, {requests} req."
    answer = streamed_text(sse_events(CODEX_TRANSCRIPT.read_bytes()))
    printed = "answer printed" if result.stdout.strip() == answer else "**no answer**"
    cell = f"exit {result.returncode} after {result.duration:.1f}s, {printed}, {requests} req."
    if result.errors:
        error = result.errors[-1].removeprefix("stream disconnected before completion: ")
        cell += ": " + error[:120].replace("`", "'")
    return cell.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def codex_column(
    faults: dict[str, CodexFault], target: str, tmp: Path, timeout: float
) -> list[str]:
    """One column: every fault against a fresh mock, `codex exec` straight at it (target
    "direct") or through mitmdump (target "plain" or "fixed")."""
    cells = []
    with SequenceBackend(faults) as backend:
        proxy = None
        if target != "direct":
            proxy = Mitmdump(
                (),
                mode=f"reverse:{backend.http_url}",
                confdir=tmp / target / "conf",
                script=ROOT / "addon/codex_fix.py" if target == "fixed" else None,
                options=OPTIONS if target == "fixed" else {},
                log_path=tmp / target / "mitmdump.log",
            ).start()
        try:
            base = proxy.url if proxy else backend.http_url
            for name in faults:
                config = codex.provider_config(f"{base}/s/{name}/v1", stream_max_retries=1)
                home = codex.make_home(tmp / target / name, config)
                result = codex.run_codex(home, timeout=timeout, cli=PINNED)
                cells.append(codex_outcome(result, len(backend.requests_for(name)), timeout))
        finally:
            if proxy:
                proxy.stop()
    return cells


def codex_markdown(timeout: float) -> str:
    faults = codex_faults()
    with tempfile.TemporaryDirectory() as tmp:
        columns = [
            codex_column(faults, target, Path(tmp), timeout)
            for target in ("direct", "plain", "fixed")
        ]
    header = (
        "| upstream fault | Codex CLI straight at the backend | through plain mitmdump | "
        "through codex-fix |\n|---|---|---|---|\n"
    )
    rows = zip(faults.values(), *columns, strict=True)
    return header + "".join(f"| {f.description} | {a} | {b} | {c} |\n" for f, a, b, c in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--timeout", type=float, default=5.0, help="client read timeout (s)")
    parser.add_argument(
        "--codex", action="store_true", help="the Codex CLI table (hangs are cut at 20 s)"
    )
    args = parser.parse_args()
    if args.codex:
        if not PINNED.installed():
            print(f"Codex CLI not found at {PINNED.bin}: run scripts/test once")
            return 2
        print(codex_markdown(max(args.timeout, 20.0)))
        return 0
    print(markdown(run(args.timeout)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
