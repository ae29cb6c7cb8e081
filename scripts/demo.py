"""See codex-fix repair a broken stream for the real Codex CLI, without any account.

    python scripts/demo.py --list                  # the fault scenarios
    python scripts/demo.py deltas-only             # codex exec through codex-fix
    python scripts/demo.py deltas-only --without-fix   # the same through plain mitmdump

Starts the mock backend (codexfix.testing.backend) playing the chosen fault
(codexfix.testing.faults), mitmdump in reverse mode on 127.0.0.1 (with addon/codex_fix.py,
or plain), and `codex exec` with a custom provider pointing at the proxy, in a throwaway
CODEX_HOME (codexfix.testing.codex: offline settings, stdin /dev/null, a time limit).
Prints what the user sees and what codex-fix logged. Needs the pinned Codex CLI:
`scripts/test` installs it with npm into tests/codex/node_modules.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from codexfix.testing import codex
from codexfix.testing.faults import SequenceBackend, codex_faults
from codexfix.testing.mitmdump import Mitmdump

ROOT = Path(__file__).resolve().parent.parent
# The pinned Codex CLI, as the tests install it (`@openai/codex` in tests/codex).
PINNED = codex.npm_clis(ROOT / "tests" / "codex")[0]

# Short codex-fix timeouts, so that a stall or a silent upstream ends within seconds.
OPTIONS = {
    "codexfix_idle_timeout": "3",
    "codexfix_header_timeout": "3",
    "codexfix_terminal_grace": "0.5",
}
CODEXFIX_LINE = re.compile(r"\] \[[0-9a-f]{8} [^]]*\] (.*)$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    faults = codex_faults()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + ", ".join(faults),
    )
    parser.add_argument("scenario", nargs="?", choices=list(faults), metavar="SCENARIO")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--without-fix", action="store_true", help="plain mitmdump: what happens today"
    )
    parser.add_argument(
        "--retries", type=int, default=1, help="Codex's stream_max_retries (default 1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before codex is killed (30)"
    )
    args = parser.parse_args(argv)
    if not args.list and args.scenario is None:
        parser.error("name a scenario (see --list)")
    return args


def run(scenario: str, with_fix: bool, retries: int, timeout: float) -> int:
    fault = codex_faults()[scenario]
    label = "codex-fix" if with_fix else "plain mitmdump (no codex-fix)"
    print(f"scenario: {scenario}: {fault.description}")
    with (
        tempfile.TemporaryDirectory(prefix="codexfix-demo-") as tmp,
        SequenceBackend({scenario: fault}) as backend,
    ):
        proxy = Mitmdump(
            (),
            mode=f"reverse:{backend.http_url}",
            confdir=Path(tmp) / "mitmproxy",
            script=ROOT / "addon" / "codex_fix.py" if with_fix else None,
            options=OPTIONS if with_fix else {},
            log_path=Path(tmp) / "mitmdump.log",
        ).start()
        try:
            config = codex.provider_config(
                f"{proxy.url}/s/{scenario}/v1", stream_max_retries=retries
            )
            home = codex.make_home(Path(tmp) / "codex-home", config)
            print(f"proxy:    {label}, {proxy.url} -> mock backend {backend.http_url}")
            print(f"running:  codex {' '.join(codex.EXEC_ARGS)} 'Say hello'")
            result = codex.run_codex(home, env={}, timeout=timeout, cli=PINNED)
            time.sleep(0.5)  # codex-fix writes a stream's summary as the flow ends
        finally:
            proxy.stop()
        report(result, len(backend.requests_for(scenario)), proxy.log_text(), timeout)
    return 0


def report(result: codex.CodexResult, requests: int, log: str, timeout: float) -> None:
    if result.returncode is None:
        print(f"codex exit code: none: still running after {timeout:g}s, killed (a hang)")
    else:
        print(f"codex exit code: {result.returncode} after {result.duration:.1f}s")
    print(f"answer on stdout: {result.stdout.strip()!r}")
    for line in result.errors:
        print(f"codex error: {line}")
    print(f"requests the backend received: {requests}")
    for line in log.splitlines():
        match = CODEXFIX_LINE.search(line)
        if match:
            print(f"codex-fix: {match.group(1)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, fault in codex_faults().items():
            print(f"{name:22} {fault.description}")
        return 0
    if not PINNED.installed():
        print(f"Codex CLI not found at {PINNED.bin}: run scripts/test once (npm ci)")
        return 2
    return run(args.scenario, not args.without_fix, args.retries, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
