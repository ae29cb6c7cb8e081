#!/usr/bin/env python3
"""Profile both mitmdump processes of ``scripts/bench.py`` part (ii): where the CPU goes.

The traffic of the bench's part (ii) (a 110 KB Codex transcript in 1 KB parts, sequential
requests, HTTP/1.1 reverse proxy), through mitmdump with codex-fix and through mitmdump
with the baseline addon that only streams. Each mitmdump runs under cProfile (its default
wall clock; the event loop's idle wait in ``epoll.poll`` is left out of the sums). After
the warm-up, ``--requests`` requests run unprofiled (CPU from ``/proc``), then as many
again profiled: a signal (SIGRTMIN+1) enables the profiler, another (SIGRTMIN+2), after a
pause for the pending wake-ups, dumps it.

It prints each run's top functions by tottime and by cumtime, then per request: own time
per source file and per function for both runs and their difference, and every codexfix
function. cProfile costs about 0.2-0.25 us per call, which inflates the profile 2-3 times
and mostly where calls are many and small; the '~real' column subtracts that overhead,
estimated from the unprofiled CPU (an estimate, not a measurement).

Reproduce (from the repository root, in a mitmproxy virtualenv with httpx)::

    python scripts/profile_proxy.py                      # 300 requests, about 20 s
    python scripts/profile_proxy.py --dir /tmp/prof      # keep the .prof files and logs
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import pstats
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mitmproxy.version import VERSION

from codexfix.testing.backend import MockBackend
from codexfix.testing.mitmdump import Mitmdump, mitmdump_executable

# Run as a script, this file's folder is on sys.path: scripts/bench.py imports as `bench`.
from bench import (
    ADDON_SCRIPT,
    BACKEND_PART,
    PROXY_TRANSCRIPT,
    REQUEST_TIMEOUT,
    cpu_seconds,
    drive,
    proxy_options,
    proxy_setting,
    traffic_url,
)

SETTLE = 1.0  # seconds after the traffic: the shim's pending wake-ups fire (<= 0.25 s)
DUMP_TIMEOUT = 30.0
# mitmdump under cProfile (its default wall clock: a CPU-time clock costs a system call per
# event and inflated the profile ten times). argv: stats file, then mitmdump's arguments.
# START starts the profile, STOP stops it and writes the stats (atomically:
# the bench polls for the file). Not SIGUSR1/2: mitmdump uses those to dump debug info.
BOOTSTRAP = """\
import cProfile, os, signal, sys
out, args = sys.argv[1], sys.argv[2:]
profiler = cProfile.Profile()
def start(*_):
    profiler.enable()
def stop(*_):
    profiler.disable()
    profiler.dump_stats(out + ".tmp")
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGRTMIN + 1, start)
signal.signal(signal.SIGRTMIN + 2, stop)
from mitmproxy.tools.main import mitmdump
mitmdump(args)
"""
START = signal.SIGRTMIN + 1
STOP = signal.SIGRTMIN + 2
# The event loop waiting for sockets and timers: wall time, not CPU; left out of every sum.
IDLE = ("~", 0, "<method 'poll' of 'select.epoll' objects>")

FuncKey = tuple[str, int, str]  # pstats: (file, line, function)
FuncStat = tuple[int, float, float]  # calls, tottime, cumtime
NO_STAT: FuncStat = (0, 0.0, 0.0)


class ProfiledMitmdump(Mitmdump):
    """The harness's mitmdump, run as ``python -c BOOTSTRAP stats mitmdump-args``."""

    def __init__(self, stats_path: Path, **options: Any) -> None:
        super().__init__(**options)
        self.stats_path = stats_path

    def command(self) -> list[str]:
        cmd = super().command()
        assert cmd[0] == str(mitmdump_executable())
        return [sys.executable, "-c", BOOTSTRAP, str(self.stats_path), *cmd[1:]]


@dataclass(frozen=True)
class ProfiledRun:
    """One mitmdump: the same number of requests without, then with the profiler."""

    name: str
    requests: int
    stats: pstats.Stats
    plain_cpu_s: float  # the unprofiled requests, /proc
    profiled_cpu_s: float  # the profiled requests and the settling pause, /proc
    bad_bodies: int

    def funcs(self) -> dict[FuncKey, FuncStat]:
        raw: dict[FuncKey, tuple[int, int, float, float, object]]
        raw = self.stats.stats  # type: ignore[attr-defined]
        return {key: (nc, tt, ct) for key, (_, nc, tt, ct, _) in raw.items() if key != IDLE}

    def busy_s(self) -> float:
        """Profiled time but the idle wait."""
        return sum(tt for _, tt, _ in self.funcs().values())

    def calls(self) -> int:
        return sum(nc for nc, _, _ in self.funcs().values())

    def overhead_per_call(self) -> float:
        """cProfile's cost per profiled call, estimated: what the profiled time exceeds the
        unprofiled CPU by, spread evenly over the calls."""
        return max(self.busy_s() - self.plain_cpu_s, 0.0) / self.calls()

    def per_req_us(self, seconds: float) -> float:
        return seconds / self.requests * 1e6

    def corrected_us(self, stat: FuncStat) -> float:
        """A function's own time per request less the estimated profiler overhead."""
        return self.per_req_us(stat[1] - stat[0] * self.overhead_per_call())


def profile_proxy(
    name: str, script: Path, backend: MockBackend, workdir: Path, requests: int, warmup: int
) -> ProfiledRun:
    """Run mitmdump with ``script`` under cProfile (not yet enabled); after the warm-up,
    ``requests`` requests unprofiled then ``requests`` profiled."""
    expected = PROXY_TRANSCRIPT.read_bytes()
    stats_path = workdir / name / "mitmdump.prof"
    stats_path.unlink(missing_ok=True)
    proxy = ProfiledMitmdump(stats_path, **proxy_options(name, script, backend, workdir))
    with proxy, httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False) as client:
        assert proxy.proc is not None
        pid = proxy.proc.pid
        url = traffic_url(proxy)
        _, bad_warmup = drive(client, url, warmup, expected)
        time.sleep(SETTLE)  # like the profiled part: pending wake-ups included
        cpu_0 = cpu_seconds(pid)
        _, bad_plain = drive(client, url, requests, expected)
        time.sleep(SETTLE)
        cpu_1 = cpu_seconds(pid)
        proxy.proc.send_signal(START)
        _, bad = drive(client, url, requests, expected)
        time.sleep(SETTLE)
        cpu_2 = cpu_seconds(pid)
        proxy.proc.send_signal(STOP)
        deadline = time.monotonic() + DUMP_TIMEOUT
        while not stats_path.exists():
            if time.monotonic() > deadline or proxy.proc.poll() is not None:
                raise RuntimeError(f"{name}: no profile written:\n{proxy.log_tail()}")
            time.sleep(0.05)
    stats = pstats.Stats(str(stats_path), stream=io.StringIO())
    return ProfiledRun(
        name,
        requests,
        stats,
        plain_cpu_s=cpu_1 - cpu_0,
        profiled_cpu_s=cpu_2 - cpu_1,
        bad_bodies=bad_warmup + bad_plain + bad,
    )


def profile_proxies(
    requests: int, warmup: int, keep_dir: Path | None = None
) -> tuple[ProfiledRun, ProfiledRun]:
    """The codex-fix run, then the baseline run, each under cProfile, one mock backend.

    With ``keep_dir``, each run's files (``<name>/mitmdump.prof``, its log) stay there.
    """
    with proxy_setting(keep_dir) as (backend, workdir, baseline_script):
        fixed = profile_proxy("codex-fix", ADDON_SCRIPT, backend, workdir, requests, warmup)
        base = profile_proxy("baseline", baseline_script, backend, workdir, requests, warmup)
    return fixed, base


def func_label(key: FuncKey) -> str:
    """``file:line(function)`` with the file's directories stripped, as pstats prints."""
    file, line, func = key
    if file == "~":  # a builtin
        return func
    return f"{Path(file).name}:{line}({func})"


def file_label(file: str) -> str:
    """A source file by its package-relative path (``mitmproxy/proxy/layer.py``)."""
    if file == "~":
        return "(builtins: C functions and methods)"
    parts = Path(file).parts
    for anchor in ("site-packages", "addon"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    for i, part in enumerate(parts):  # the standard library: from its python3.N folder
        if part.startswith("python3"):
            return "stdlib/" + "/".join(parts[i + 1 :])
    return file


def stats_text(run: ProfiledRun, sort: str, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(stream=out).add(run.stats)  # a copy: strip_dirs merges entries
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    # Keep from pstats' "Ordered by" line on.
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "Ordered by" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


DiffRow = tuple[str, float, float, float, float, float, float]


def diff_row(
    label: str, fixed: ProfiledRun, base: ProfiledRun, f: FuncStat, b: FuncStat
) -> DiffRow:
    """Per request: calls (codex-fix, baseline); own time (both); corrected own-time delta;
    codex-fix cumulative time."""
    return (
        label,
        f[0] / fixed.requests,
        b[0] / base.requests,
        fixed.per_req_us(f[1]),
        base.per_req_us(b[1]),
        fixed.corrected_us(f) - base.corrected_us(b),
        fixed.per_req_us(f[2]),
    )


def print_diff_table(title: str, rows: Sequence[DiffRow], cumulative: bool = True) -> None:
    print(f"\n== {title}")
    cum, cum_who = (f" {'cum us':>9}", f" {'codexfix':>9}") if cumulative else ("", "")
    print(
        f"  {'':<60} {'calls/req':>9} {'':>8} {'own us/req':>10} {'':>8} {'delta':>8} "
        f"{'~real':>7}{cum}"
    )
    print(
        f"  {'function':<60} {'codexfix':>9} {'base':>8} {'codexfix':>10} {'base':>8} "
        f"{'':>8} {'delta':>7}{cum_who}"
    )
    for label, calls_f, calls_b, tt_f, tt_b, real, ct_f in rows:
        cum = f" {ct_f:>9.1f}" if cumulative else ""
        print(
            f"  {label[:60]:<60} {calls_f:>9.1f} {calls_b:>8.1f} {tt_f:>10.1f} {tt_b:>8.1f} "
            f"{tt_f - tt_b:>+8.1f} {real:>+7.1f}{cum}"
        )


def by_file(funcs: dict[FuncKey, FuncStat]) -> dict[str, FuncStat]:
    files: dict[str, FuncStat] = {}
    for (file, _, _), (nc, tt, _) in funcs.items():
        calls, own, _ = files.get(file, NO_STAT)
        files[file] = (calls + nc, own + tt, 0.0)
    return files


def is_codexfix(file: str) -> bool:
    file = file.replace(os.sep, "/")
    return "/codexfix/" in file or file.endswith("/codex_fix.py")


def print_proxy_profiles(fixed: ProfiledRun, base: ProfiledRun, top: int) -> None:
    size = PROXY_TRANSCRIPT.stat().st_size
    print(
        f"proxy profile: {fixed.requests} sequential requests x {size:,} bytes "
        f"({PROXY_TRANSCRIPT.name}) in {BACKEND_PART}-byte parts, HTTP/1.1 reverse proxy; "
        "the same number unprofiled first"
    )
    print(
        f"  {'':<12} {'CPU ms/req':>10} {'CPU ms/req':>10} {'profiled':>9} {'calls/req':>9} "
        f"{'profiler overhead':>17}"
    )
    print(
        f"  {'':<12} {'unprofiled':>10} {'profiled':>10} {'ms/req':>9} {'':>9} "
        f"{'us/call (est.)':>17}"
    )
    for run in (fixed, base):
        print(
            f"  {run.name:<12} {run.plain_cpu_s / run.requests * 1e3:>10.3f} "
            f"{run.profiled_cpu_s / run.requests * 1e3:>10.3f} "
            f"{run.busy_s() / run.requests * 1e3:>9.3f} {run.calls() / run.requests:>9.0f} "
            f"{run.overhead_per_call() * 1e6:>17.3f}"
        )
    print(
        "  (profiled ms/req: cProfile's own sum, its idle selector wait left out. '~real': own "
        "time less the estimated overhead per call, an estimate.)"
    )
    print(
        f"  sanity: bodies differing from the transcript: codex-fix {fixed.bad_bodies}, "
        f"baseline {base.bad_bodies}"
    )
    for run in (fixed, base):
        for sort in ("tottime", "cumulative"):
            print(f"\n== {run.name}: top {top} by {sort} (whole run: {run.requests} requests)")
            print(stats_text(run, sort, top))

    f, b = fixed.funcs(), base.funcs()
    ff, bf = by_file(f), by_file(b)
    files = sorted(
        set(ff) | set(bf),
        key=lambda k: (
            -abs(fixed.corrected_us(ff.get(k, NO_STAT)) - base.corrected_us(bf.get(k, NO_STAT)))
        ),
    )
    print_diff_table(
        "own time per source file, by |~real delta| (codex-fix - baseline)",
        [
            diff_row(file_label(k), fixed, base, ff.get(k, NO_STAT), bf.get(k, NO_STAT))
            for k in files[:top]
        ],
        cumulative=False,
    )
    keys = set(f) | set(b)

    def real_delta(key: FuncKey) -> float:
        return fixed.corrected_us(f.get(key, NO_STAT)) - base.corrected_us(b.get(key, NO_STAT))

    print_diff_table(
        f"top {top} functions by |~real delta| of own time per request",
        [
            diff_row(func_label(k), fixed, base, f.get(k, NO_STAT), b.get(k, NO_STAT))
            for k in sorted(keys, key=lambda k: -abs(real_delta(k)))[:top]
        ],
    )
    ours = sorted((k for k in f if is_codexfix(k[0])), key=lambda k: -f[k][2])
    print_diff_table(
        "codexfix functions (addon/codexfix: adapter and core) by cumulative time per request",
        [diff_row(func_label(k), fixed, base, f[k], NO_STAT) for k in ours],
    )
    busy = fixed.per_req_us(fixed.busy_s()) - base.per_req_us(base.busy_s())
    plain = fixed.per_req_us(fixed.plain_cpu_s) - base.per_req_us(base.plain_cpu_s)
    own = sum(fixed.corrected_us(f[k]) for k in ours)
    print(
        f"  codex-fix - baseline per request: unprofiled CPU {plain:+.0f} us; profiled "
        f"{busy:+.0f} us; ~real own time in codexfix functions {own:.0f} us"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See the module docstring for what is measured and how.",
    )
    parser.add_argument("--requests", type=int, default=300, help="profiled requests per proxy")
    parser.add_argument("--warmup", type=int, default=10, help="requests before measuring")
    parser.add_argument(
        "--dir", type=Path, default=None, help="keep the .prof files and logs there"
    )
    parser.add_argument("--top", type=int, default=30, help="functions listed per table")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0 or args.top < 1:
        parser.error("--requests and --top must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"codex-fix proxy profile: Python {platform.python_version()}, mitmproxy {VERSION}, "
        f"{os.cpu_count()} CPUs"
    )
    fixed, base = profile_proxies(args.requests, args.warmup, args.dir)
    print_proxy_profiles(fixed, base, args.top)
    return 1 if fixed.bad_bodies or base.bad_bodies else 0


if __name__ == "__main__":
    sys.exit(main())
