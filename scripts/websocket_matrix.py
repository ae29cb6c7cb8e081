"""Print what the Codex CLI gets for each fault of its WebSocket transport: straight at the
backend, through plain mitmdump, and through codex-fix.

    python scripts/websocket_matrix.py                  # markdown table for the README
    python scripts/websocket_matrix.py --timeout 30     # cut hangs after 30 s
    python scripts/websocket_matrix.py --cli 0.171.0 --faults healthy,stall

Starts the mock ChatGPT backend (codexfix.testing.chatgpt.ChatGptBackend, TLS, one endpoint
per fault of `chatgpt.websocket_faults()`) and two real mitmdump processes in regular-proxy
mode on 127.0.0.1: one plain, one with addon/codex_fix.py (`codexfix_websocket=repair`).
For every fault, `codex exec` runs once per column with a fake ChatGPT login and Codex's
own provider, as a user runs it (its retries and its 300 s idle timeout untouched; the
proxy columns through `HTTPS_PROXY` with mitmproxy's CA). A cell shows the exit code,
whether the answer was printed (once), the duration, what the backend saw (WebSocket
handshakes, `response.create` messages on them, SSE POSTs), whether the CLI warned that
it fell back to HTTPS, and its last `ERROR:` line. A run still going after the timeout is
killed: a hang.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from codexfix.testing import chatgpt, codex
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.chatgpt import ChatGptBackend, ChatGptCase
from codexfix.testing.codex import CodexCli, CodexResult
from codexfix.testing.faults import streamed_text
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import RecordedRequest

ROOT = Path(__file__).resolve().parent.parent
CLIS = codex.npm_clis(ROOT / "tests" / "codex")
ADDON = ROOT / "addon" / "codex_fix.py"
COLUMNS = {
    "straight": "Codex CLI straight at the backend",
    "plain": "through plain mitmdump",
    "codex-fix": "through codex-fix",
}
OPTIONS = {
    "codexfix_websocket": "repair",
    "codexfix_idle_timeout": "2",
    "codexfix_header_timeout": "2",
    "codexfix_terminal_grace": "0.5",
}
# The mock's CA is not in mitmproxy's trust store.
PLAIN_OPTIONS = {"ssl_insecure": "true"}
ANSWER = streamed_text(sse_events(CODEX_TRANSCRIPT.read_bytes()))
FALLBACK = "Falling back from WebSockets to HTTPS transport"


def proxy(target: str, directory: Path) -> Mitmdump:
    """A started mitmdump in regular-proxy mode: plain, or with codex-fix."""
    fixed = target == "codex-fix"
    return Mitmdump(
        (),
        mode="regular",
        confdir=directory / target / "conf",
        script=ADDON if fixed else None,
        options={**PLAIN_OPTIONS, **OPTIONS} if fixed else PLAIN_OPTIONS,
        log_path=directory / target / "mitmdump.log",
    ).start()


def run(
    cli: CodexCli,
    backend: ChatGptBackend,
    name: str,
    via: Mitmdump | None,
    home: Path,
    timeout: float,
) -> CodexResult:
    """`codex exec` against the case `name`, straight or through `via`."""
    config = codex.chatgpt_config(f"{backend.https_url}/s/{name}")
    env = {"CODEX_CA_CERTIFICATE": str(backend.cert_path)}
    if via is not None:
        env = {"HTTPS_PROXY": via.url, "CODEX_CA_CERTIFICATE": str(via.ca_cert)}
    home = codex.make_home(home, config, codex.chatgpt_auth())
    return codex.run_codex(home, env=env, timeout=timeout, cli=cli)


def seen(requests: list[RecordedRequest]) -> str:
    """What the backend saw: handshakes (and the requests on them), SSE POSTs."""
    responses = [r for r in requests if r.path.endswith("/codex/responses")]
    sockets = [r for r in responses if r.is_websocket_upgrade()]
    creates = sum(len(r.response_creates()) for r in sockets)
    posts = sum(r.method == "POST" for r in responses)
    said = f"{len(sockets)} handshake{'s' * (len(sockets) != 1)} ({creates} req.)"
    return said + (f" + {posts} SSE" if posts else "")


def cell(result: CodexResult, requests: list[RecordedRequest], timeout: float) -> str:
    """What the user of `codex exec` sees, in one cell."""
    if result.returncode is None:
        return f"**hang**: killed after {timeout:g}s; {seen(requests)}"
    printed = result.stdout.strip()
    answer = (
        "answer printed"
        if printed == ANSWER
        else ("**no answer**" if not printed else f"**{printed[:30]!r}**")
    )
    text = f"exit {result.returncode} after {result.duration:.1f}s, {answer}; {seen(requests)}"
    if FALLBACK in result.stderr:
        text += ", fallback warning"
    errors = [e for e in result.errors if not e.startswith("Reconnecting")]
    if errors:
        error = errors[-1].removeprefix("stream disconnected before completion: ")
        text += ": " + error[:100].replace("`", "'")
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def matrix(cli: CodexCli, faults: dict[str, ChatGptCase], timeout: float) -> str:
    cases = {f"{name}.{column}": case for name, case in faults.items() for column in COLUMNS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ChatGptBackend(cases=cases) as backend:
        proxies = {target: proxy(target, Path(tmp)) for target in ("plain", "codex-fix")}
        try:
            for name, case in faults.items():
                cells = []
                for column in COLUMNS:
                    key = f"{name}.{column}"
                    home = Path(tmp) / "homes" / key
                    result = run(cli, backend, key, proxies.get(column), home, timeout)
                    cells.append(cell(result, backend.requests_for(key), timeout))
                rows.append(f"| {case.description} | " + " | ".join(cells) + " |")
        finally:
            for running in proxies.values():
                running.stop()
    header = "| upstream fault | " + " | ".join(COLUMNS.values()) + " |"
    return "\n".join([header, "|---" * (len(COLUMNS) + 1) + "|", *rows]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--timeout", type=float, default=20.0, help="cut a hang after (s)")
    parser.add_argument(
        "--cli", default=CLIS[0].version, help="Codex CLI version (default: the pinned one)"
    )
    parser.add_argument("--faults", help="comma-separated fault names (default: all)")
    args = parser.parse_args()
    cli = next((c for c in CLIS if c.version == args.cli), None)
    if cli is None or not cli.installed():
        print(f"Codex CLI {args.cli} not installed in tests/codex: run scripts/test once")
        return 2
    faults = chatgpt.websocket_faults()
    if args.faults:
        faults = {name: faults[name] for name in args.faults.split(",")}
    print(matrix(cli, faults, args.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
