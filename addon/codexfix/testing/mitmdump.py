"""A real ``mitmdump`` subprocess on 127.0.0.1, for tests and scripts.

The proxy is the ``mitmdump`` of the running interpreter's virtualenv, so the
same code exercises whichever mitmproxy version the venv has installed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from .wire import HOST

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# mitmproxy 11 and 12 both log e.g. "HTTP(S) proxy listening at 127.0.0.1:8080."
# or "reverse proxy to http://x listening at 127.0.0.1:8080." once bound.
LISTENING_RE = re.compile(r"listening at (?:\[[^\]]*\]|[^\s:]+):(\d+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def mitmdump_executable() -> Path:
    """The ``mitmdump`` installed next to the current Python interpreter."""
    exe = Path(sys.executable).with_name("mitmdump")
    if not exe.exists():
        raise FileNotFoundError(f"mitmdump not found next to {sys.executable}")
    return exe


class Mitmdump:
    """A ``mitmdump`` subprocess bound to 127.0.0.1 on a free port.

    Use as a context manager or call :meth:`start` / :meth:`stop`.  All output
    goes to ``log_path`` so failures can show what the proxy said.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        mode: str,
        confdir: Path,
        script: Path | None = None,
        options: Mapping[str, str] | None = None,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self.mode = mode
        self.confdir = Path(confdir)
        self.script = script
        self.options = dict(options or {})
        self.log_path = Path(log_path)
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the proxy's listening socket."""
        return f"http://{HOST}:{self.port}"

    @property
    def ca_cert(self) -> Path:
        """mitmproxy's CA certificate (generated in ``confdir`` at start)."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def command(self) -> list[str]:
        """The full command line that :meth:`start` runs."""
        cmd = [str(mitmdump_executable()), "--listen-host", HOST]
        cmd += ["--listen-port", str(self.port), "--mode", self.mode]
        cmd += ["--set", f"confdir={self.confdir}"]
        if self.script is not None:
            cmd += ["-s", str(self.script)]
        for key, value in self.options.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd + self.args

    def log_text(self) -> str:
        """Everything mitmdump has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> Self:
        """Launch mitmdump and wait (bounded) until it is listening.

        If the port picked by :func:`free_port` was grabbed by someone else in
        the meantime, retry a couple of times with a fresh port.
        """
        for attempt in range(3):
            try:
                self._launch()
                self._wait_listening()
                return self
            except RuntimeError:
                if attempt == 2 or "address already in use" not in self.log_text():
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        """Spawn the mitmdump process with output going to the log file."""
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def _wait_listening(self) -> None:
        """Poll the log for the "listening at" line; raise on exit/timeout."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = LISTENING_RE.search(self.log_text())
            if match and int(match.group(1)) == self.port:
                return
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"mitmdump exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"mitmdump not listening after {START_TIMEOUT}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log (for error messages)."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate mitmdump (kill after a timeout) and close the log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def with_and_without(
    mode: str, directory: Path, script: Path, options: Mapping[str, str]
) -> dict[str, Mitmdump]:
    """Two started mitmdumps in `mode`, for a comparison: "plain" (no addon) and
    "codex-fix" (`script` with `options`), each with its own confdir and log under
    `directory`. The caller stops them."""
    proxies: dict[str, Mitmdump] = {}
    for label, addon in (("plain", None), ("codex-fix", script)):
        proxies[label] = Mitmdump(
            (),
            mode=mode,
            confdir=directory / label / "conf",
            script=addon,
            options=options if addon else {},
            log_path=directory / label / "mitmdump.log",
        ).start()
    return proxies
