"""The one way tests start mitmdump, and waiting for what it does.

`mitmdump()` makes a `codexfix.testing.mitmdump.Mitmdump` (not started: use it as a
context manager) with codex-fix and the end-to-end options; conftest's `proxies` fixture
starts the module's proxies with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from codexfix.testing.mitmdump import Mitmdump

ADDON = Path(__file__).resolve().parents[2] / "addon" / "codex_fix.py"
# codex-fix's timeouts in the end-to-end tests: a stall or a missing response ends within
# seconds; the mock backend's CA is not in mitmproxy's trust store.
E2E_OPTIONS = {
    "codexfix_idle_timeout": "1.5",
    "codexfix_terminal_grace": "0.3",
    "codexfix_header_timeout": "1.5",
    "ssl_insecure": "true",
}


def mitmdump(
    directory: Path,
    mode: str,
    *,
    script: Path | None = ADDON,
    options: Mapping[str, str] = E2E_OPTIONS,
    args: Sequence[str] = (),
) -> Mitmdump:
    """mitmdump in `mode` with `script` (None: plain mitmdump) and `options`, its confdir
    and its log in `directory`."""
    return Mitmdump(
        args,
        mode=mode,
        confdir=directory / "conf",
        script=script,
        options=options,
        log_path=directory / "mitmdump.log",
    )


def wait_until(
    condition: Callable[[], bool], message: str | Callable[[], str], timeout: float = 5.0
) -> None:
    """Poll `condition` until it holds; fail with `message` (or what it returns, when it is
    a function: e.g. the log's tail at that moment) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(message if isinstance(message, str) else message())
        time.sleep(0.02)


def wait_for_log(proxy: Mitmdump, needle: str, timeout: float = 10.0) -> str:
    """mitmdump's log once it holds `needle`."""
    wait_until(
        lambda: needle in proxy.log_text(),
        lambda: f"{needle!r} not in log:\n{proxy.log_tail()}",
        timeout,
    )
    return proxy.log_text()
