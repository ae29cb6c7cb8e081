#!/usr/bin/env python3
"""Benchmark codex-fix: core throughput, proxy CPU per streamed MB, peak RSS, WebSocket CPU.

What one run measures:

(i)   Core throughput. Every real Responses transcript in
      ``tests/fixtures/real/responses/*.sse`` is fed to a fresh ``StreamFixer`` in
      1024-byte pieces plus ``finish()``; best (minimum) time of several repetitions,
      as MB/s and events/s. Next to it, ``json.loads`` of every event's data payload
      of the same transcripts (pre-extracted, ``[DONE]`` excluded): the floor any
      JSON-aware proxy pays. Goal: core / json.loads >= 1.0. Also a pathological case:
      the transcript with the longest lines (~13 KB) fed in 100-byte pieces vs in one
      piece, LF and CRLF (the framer should be O(n): ratio near 1).
(ii)  Proxy CPU per streamed MB. A MockBackend streams one healthy transcript in
      ~1 KB parts; two real mitmdump processes in reverse mode, one after the other,
      carry identical sequential traffic from an httpx client: (a) ``-s
      addon/codex_fix.py``, (b) a minimal addon that only sets
      ``flow.response.stream = True``. The process's user+sys CPU seconds
      (``/proc/<pid>/stat``) consumed by the traffic (after a warm-up) are divided by
      the MB streamed. Every body is checked to equal the transcript byte for byte.
      Goal: codex-fix / baseline <= 1.05.
      Next to it, the floor that validating every event puts under this ratio: the
      time pydantic-core's ``validate_json`` alone takes for the transcript's events
      (in this process, warm: the proxy pays more), over the baseline's CPU per request.
(iii) Peak RSS (``VmHWM`` in ``/proc/<pid>/status``) of both mitmdump processes after
      the traffic, and their ratio (reported; no target).
(iv)  WebSocket proxy CPU per relayed MB. The MockBackend answers each ``response.create``
      on ``/backend-api/codex/responses`` with the events of a healthy Codex transcript
      (``codexfix.testing.bodies.CODEX_TRANSCRIPT``), one text message per event (its
      data payload, unchanged). A wsproto client opens sockets one after the other and
      sends many requests on each (by default 40 sockets x 100 requests, 153 MB), through
      two real mitmdump processes in reverse mode, one after the other, with identical
      traffic: (a) ``-s addon/codex_fix.py`` (``codexfix_websocket=repair``, the default:
      every server message goes through the Responses dialect), (b) plain mitmdump, no
      addon (mitmproxy's own WebSocket relay). CPU per MB as in (ii), MB being the
      server messages' payload bytes the client received; every request's messages are
      checked to equal what the backend sent. Goal: codex-fix / baseline <= 1.05.
      No permessage-deflate (the client does not offer
      it): compressing and decompressing on both sides would swamp what codex-fix adds.
      Both run with ``--set flow_detail=0``: at its default (1) mitmdump's dumper prints a
      line per WebSocket message, in both runs, a cost that is not codex-fix's and would
      pull the ratio towards 1 (and fill the log the summaries are read from); at 0 the
      dumper prints nothing in either (its hook returns at once), while codex-fix's own
      lines (a summary per request and per socket, part of its cost) are still written.
      ((ii) keeps the default: one line per HTTP flow, in both runs.) Peak RSS of both is
      shown too.

MB means 10^6 bytes. Linux only (``/proc``). The exit status is 0 whether or not a
goal is met (it is a measurement, not a test); 1 only if a streamed body or a WebSocket
message was altered or a request failed, which makes the numbers meaningless.

Reproduce (from the repository root, in a mitmproxy virtualenv with httpx)::

    python scripts/bench.py                 # full run, about 2-3 minutes
    python scripts/bench.py --quick         # smoke run, a few seconds
    python scripts/bench.py --profile       # plus a cProfile of the core path

Where the proxy's CPU goes: ``scripts/profile_proxy.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import os
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mitmproxy.version import VERSION
from wsproto.events import AcceptConnection

from codexfix import Limits, StreamFixer, UpstreamEnded
from codexfix.models.responses import RESPONSES_EVENT
from codexfix.sse import SSEFramer
from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import CODEX_TRANSCRIPT, split_bytes
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import Reply, Scenario, WebSocketScript
from codexfix.testing.websocket import WebSocketClient

REPO_ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPTS = REPO_ROOT / "tests/fixtures/real/responses"
PROXY_TRANSCRIPT = TRANSCRIPTS / "codex-backend-gpt5-reasoning-summary-long.sse"
ADDON_SCRIPT = REPO_ROOT / "addon/codex_fix.py"
SCENARIO = "bench"
WS_SCENARIO = "bench-websocket"
WS_PATH = f"/s/{WS_SCENARIO}/backend-api/codex/responses"
WS_REQUEST = '{"type":"response.create","model":"gpt-5","input":[]}'
WS_OPTIONS = {"flow_detail": "0"}  # both (iv) proxies: see the module docstring
CORE_CHUNK = 1024
PATHOLOGICAL_CHUNK = 100
BACKEND_PART = 1024
REQUEST_TIMEOUT = 30.0
MB = 1e6

GOAL_CORE = 1.0  # core / json.loads throughput, at least
GOAL_CPU = 1.05  # codex-fix / baseline CPU per MB, at most (ii and iv)

BASELINE_ADDON = '''\
"""Baseline for scripts/bench.py: stream every response, nothing else."""


def responseheaders(flow):
    flow.response.stream = True
'''


# --------------------------------------------------------------------------
# (i) core throughput
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """Work done in a (best) time."""

    seconds: float
    nbytes: int
    events: int

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / MB / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


def quiet_log() -> logging.LoggerAdapter[logging.Logger]:
    """A logger that discards the fixer's warnings (some transcripts trigger repairs)."""
    logger = logging.getLogger("codexfix.bench")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logging.LoggerAdapter(logger, {})


LOG = quiet_log()


def load_transcripts() -> list[bytes]:
    """All real Responses transcripts, in name order."""
    return [p.read_bytes() for p in sorted(TRANSCRIPTS.glob("*.sse"))]


def data_payloads(transcripts: Sequence[bytes]) -> list[bytes]:
    """Every event's data payload, ``[DONE]`` excluded."""
    payloads = []
    for transcript in transcripts:
        framer = SSEFramer()
        for frame in framer.feed(transcript) + framer.close():
            if frame.data is not None and frame.data != b"[DONE]":
                payloads.append(frame.data)
    return payloads


def fix_transcript(transcript: bytes, chunk: int) -> int:
    """Feed one transcript to a fresh fixer in ``chunk``-byte pieces; its event count."""
    fixer = StreamFixer("responses", Limits(), LOG, now=0.0)
    for i in range(0, len(transcript), chunk):
        fixer.feed(transcript[i : i + chunk], 0.0)
    fixer.finish(UpstreamEnded())
    return fixer.report.events


def fix_all(transcripts: Sequence[bytes], chunk: int = CORE_CHUNK) -> int:
    """The core workload: every transcript through its own fixer; total events."""
    return sum(fix_transcript(t, chunk) for t in transcripts)


def parse_all(payloads: Sequence[bytes]) -> int:
    """The json.loads workload; number of payloads."""
    for payload in payloads:
        json.loads(payload)
    return len(payloads)


def best_time(work: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Minimum wall time of ``repeat`` runs of ``work`` (after one warm-up) and its result."""
    result = work()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_core(transcripts: Sequence[bytes], repeat: int) -> tuple[Rate, Rate]:
    """Rates of the fixer and of json.loads over the same transcripts."""
    nbytes = sum(len(t) for t in transcripts)
    payloads = data_payloads(transcripts)
    core_s, events = best_time(lambda: fix_all(transcripts), repeat)
    json_s, count = best_time(lambda: parse_all(payloads), repeat)
    return Rate(core_s, nbytes, events), Rate(json_s, nbytes, count)


def longest_line_transcript() -> tuple[str, bytes, int]:
    """Name, bytes and longest line length of the transcript with the longest line."""
    best = ("", b"", -1)
    for path in sorted(TRANSCRIPTS.glob("*.sse")):
        data = path.read_bytes()
        longest = max(len(line) for line in data.splitlines())
        if longest > best[2]:
            best = (path.name, data, longest)
    return best


def bench_pathological(transcript: bytes, repeat: int) -> tuple[Rate, Rate]:
    """Rates of one transcript fed in 100-byte pieces and in one piece."""
    events = fix_transcript(transcript, len(transcript))
    small_s, _ = best_time(lambda: fix_transcript(transcript, PATHOLOGICAL_CHUNK), repeat)
    whole_s, _ = best_time(lambda: fix_transcript(transcript, len(transcript)), repeat)
    return Rate(small_s, len(transcript), events), Rate(whole_s, len(transcript), events)


def profile_core(transcripts: Sequence[bytes], repeat: int, top: int = 18) -> str:
    """cProfile of the core workload, sorted by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        fix_all(transcripts)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --------------------------------------------------------------------------
# (ii) + (iii) + (iv) proxy CPU and memory
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyRun:
    """What one mitmdump process consumed while carrying the measured traffic."""

    name: str
    cpu_s: float
    nbytes: int
    wall_s: float
    warm_rss_kb: int  # peak RSS after the warm-up, before the measured traffic
    peak_rss_kb: int
    bad_answers: int  # HTTP bodies or WebSocket requests' messages not as sent, or failed
    summaries: int  # codex-fix summary lines with outcome=completed

    @property
    def cpu_per_mb(self) -> float:
        return self.cpu_s / (self.nbytes / MB)


@dataclass(frozen=True)
class ProxyRuns:
    """Each measured proxy pair: codex-fix, then its baseline."""

    http: tuple[ProxyRun, ProxyRun]
    websocket: tuple[ProxyRun, ProxyRun]


@dataclass(frozen=True)
class SocketPlan:
    """The (iv) traffic: ``sockets`` measured after ``warmup`` more, ``requests`` each."""

    sockets: int
    requests: int
    warmup: int

    @property
    def total(self) -> int:
        """Requests measured."""
        return self.sockets * self.requests


# Carries ``count`` units of traffic (requests, sockets) through the started proxy;
# (bytes relayed, answers not as the backend sent them).
Traffic = Callable[[int], tuple[int, int]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb(pid: int) -> int:
    """Peak resident set size in kB (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def drive(client: httpx.Client, url: str, count: int, expected: bytes) -> tuple[int, int]:
    """POST ``count`` streaming requests one after the other; (bytes read, bad bodies)."""
    nbytes = bad = 0
    for _ in range(count):
        response = client.post(
            url,
            headers={"accept": "text/event-stream", "content-type": "application/json"},
            content=b'{"model":"bench","stream":true}',
        )
        nbytes += len(response.content)
        if response.status_code != 200 or response.content != expected:
            bad += 1
    return nbytes, bad


def websocket_messages() -> tuple[str, ...]:
    """What the (iv) backend answers each request with: the transcript's events, one text
    message per event (its data payload)."""
    return tuple(p.decode() for p in data_payloads([CODEX_TRANSCRIPT.read_bytes()]))


def drive_websocket(port: int, sockets: int, requests: int) -> tuple[int, int]:
    """Open ``sockets`` WebSockets one after the other, ``requests`` requests one after the
    other on each; (payload bytes of the messages received, requests answered otherwise
    than the backend sent: a refused socket counts all of its requests)."""
    expected = list(websocket_messages())
    nbytes = bad = 0
    for _ in range(sockets):
        client = WebSocketClient.open(port, timeout=REQUEST_TIMEOUT)
        try:
            if not isinstance(client.connect(WS_PATH), AcceptConnection):
                bad += requests
                continue
            for _ in range(requests):
                client.send_text(WS_REQUEST)
                received = client.receive(len(expected))
                nbytes += sum(len(m.encode() if isinstance(m, str) else m) for m in received)
                bad += received != expected
        finally:
            client.close()
    return nbytes, bad


@contextmanager
def proxy_setting(keep_dir: Path | None = None) -> Iterator[tuple[MockBackend, Path, Path]]:
    """The mock backend that plays the (ii) transcript and the (iv) WebSocket, a work
    directory (``keep_dir`` or a temporary one) and the baseline addon script in it."""
    reply = Reply(messages=websocket_messages())
    scenarios = {
        SCENARIO: Scenario(parts=split_bytes(PROXY_TRANSCRIPT.read_bytes(), BACKEND_PART)),
        WS_SCENARIO: Scenario(websocket_script=WebSocketScript(replies=(reply,))),
    }
    with (
        MockBackend(scenarios) as backend,
        tempfile.TemporaryDirectory(prefix="codexfix-bench-") as tmp,
    ):
        workdir = Path(tmp) if keep_dir is None else keep_dir
        workdir.mkdir(parents=True, exist_ok=True)
        baseline_script = workdir / "stream_only.py"
        baseline_script.write_text(BASELINE_ADDON)
        yield backend, workdir, baseline_script


def proxy_options(
    name: str, script: Path | None, backend: MockBackend, workdir: Path
) -> dict[str, Any]:
    """Mitmdump's arguments for one measured proxy: reverse mode, its own folder."""
    return {
        "mode": f"reverse:{backend.http_url}",
        "confdir": workdir / name / "conf",
        "script": script,
        "log_path": workdir / name / "mitmdump.log",
    }


def traffic_url(proxy: Mitmdump) -> str:
    return f"{proxy.url}/s/{SCENARIO}/v1/responses"


def measure_traffic(
    name: str, proxy: Mitmdump, traffic: Traffic, count: int, warmup: int, summaries: int
) -> ProxyRun:
    """Start ``proxy``, warm it up with ``warmup`` units of ``traffic``, then measure
    ``count`` units; then wait (bounded) until it has logged ``summaries`` completed
    codex-fix summaries (0 for a baseline)."""
    with proxy:
        assert proxy.proc is not None
        pid = proxy.proc.pid
        _, bad_warmup = traffic(warmup)
        warm_rss = peak_rss_kb(pid)
        cpu_before, start = cpu_seconds(pid), time.perf_counter()
        nbytes, bad = traffic(count)
        wall, cpu_after = time.perf_counter() - start, cpu_seconds(pid)
        rss = peak_rss_kb(pid)
        seen = wait_for_summaries(proxy, summaries)
    cpu = cpu_after - cpu_before
    return ProxyRun(name, cpu, nbytes, wall, warm_rss, rss, bad + bad_warmup, seen)


def measure_proxy(
    name: str, script: Path, backend: MockBackend, workdir: Path, requests: int, warmup: int
) -> ProxyRun:
    """(ii): mitmdump with ``script``, ``requests`` HTTP requests after ``warmup``."""
    expected = PROXY_TRANSCRIPT.read_bytes()
    proxy = Mitmdump(**proxy_options(name, script, backend, workdir))
    with httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False) as client:

        def traffic(count: int) -> tuple[int, int]:
            return drive(client, traffic_url(proxy), count, expected)

        summaries = warmup + requests if script == ADDON_SCRIPT else 0
        return measure_traffic(name, proxy, traffic, requests, warmup, summaries)


def measure_websocket(
    name: str, script: Path | None, backend: MockBackend, workdir: Path, plan: SocketPlan
) -> ProxyRun:
    """(iv): mitmdump with ``script`` (None: no addon), quiet, carrying ``plan``."""
    proxy = Mitmdump(**proxy_options(name, script, backend, workdir), options=WS_OPTIONS)

    def traffic(sockets: int) -> tuple[int, int]:
        return drive_websocket(proxy.port, sockets, plan.requests)

    summaries = (plan.warmup + plan.sockets) * plan.requests if script == ADDON_SCRIPT else 0
    return measure_traffic(name, proxy, traffic, plan.sockets, plan.warmup, summaries)


def wait_for_summaries(proxy: Mitmdump, expected: int, timeout: float = 5.0) -> int:
    """codex-fix's completed-stream summaries in the log, once all are there or at timeout.

    They prove the addon handled the streams (the baseline writes none: expect 0).
    """
    deadline = time.monotonic() + timeout
    while (count := proxy.log_text().count("outcome=completed")) < expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return count


def bench_proxy(requests: int, warmup: int, plan: SocketPlan) -> ProxyRuns:
    """(ii) then (iv), each the codex-fix run then the baseline run, one mock backend."""
    with proxy_setting() as (backend, workdir, baseline_script):
        http = (
            measure_proxy("codex-fix", ADDON_SCRIPT, backend, workdir, requests, warmup),
            measure_proxy("baseline", baseline_script, backend, workdir, requests, warmup),
        )
        ws_dir = workdir / "websocket"
        websocket = (
            measure_websocket("codex-fix", ADDON_SCRIPT, backend, ws_dir, plan),
            measure_websocket("baseline", None, backend, ws_dir, plan),
        )
    return ProxyRuns(http, websocket)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def rate_row(label: str, rate: Rate) -> str:
    return f"  {label:<44} {rate.mb_per_s:>9.1f} {rate.events_per_s:>12,.0f}"


def goal_line(label: str, value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"goal {label} {sign} {target:.2f}: {'MET' if met else 'NOT MET'} ({value:.2f})"


def print_core(core: Rate, parse: Rate, repeat: int, transcripts: int) -> None:
    print(
        f"(i) core throughput: {transcripts} transcripts, {core.nbytes:,} bytes, "
        f"{core.events:,} events; best of {repeat}"
    )
    print(f"  {'':<44} {'MB/s':>9} {'events/s':>12}")
    print(rate_row(f"StreamFixer, {CORE_CHUNK}-byte pieces + finish", core))
    print(rate_row("json.loads of each data payload", parse))
    print(f"  {'ratio core / json.loads':<44} {core.mb_per_s / parse.mb_per_s:>9.2f}")


def per_call_us(small: Rate, whole: Rate) -> float:
    """Extra microseconds per feed() call: what separates the rates if the framer is O(n)."""
    calls = -(-small.nbytes // PATHOLOGICAL_CHUNK)
    return (small.seconds - whole.seconds) / (calls - 1) * 1e6


def print_pathological(name: str, longest: int, rates: dict[str, tuple[Rate, Rate]]) -> None:
    print(f"  pathological: {name} (longest line {longest:,} bytes)")
    for ending, (small, whole) in rates.items():
        print(rate_row(f"  {ending}, {PATHOLOGICAL_CHUNK}-byte pieces", small))
        print(rate_row(f"  {ending}, one piece", whole))
        ratio = small.mb_per_s / whole.mb_per_s
        print(f"  {f'  {ending} ratio {PATHOLOGICAL_CHUNK}-byte / one piece':<44} {ratio:>9.2f}")
        print(f"      = {per_call_us(small, whole):.2f} us fixed cost per extra feed() call")


def validation_seconds(transcript: bytes, repeat: int) -> float:
    """Best time to validate every event of `transcript` once, as the core does."""
    validate = RESPONSES_EVENT.validator.validate_json
    payloads = data_payloads([transcript])

    def work() -> int:
        for payload in payloads:
            validate(payload)
        return len(payloads)

    return best_time(work, repeat)[0]


def print_floor(base: ProxyRun, requests: int, validation_s: float) -> None:
    """What validating every event alone adds to the baseline's CPU: a floor for (ii)."""
    base_us = base.cpu_s / requests * 1e6
    floor = 1 + validation_s * 1e6 / base_us
    budget = (GOAL_CPU - 1) * base_us
    print(
        f"  floor: validating the {len(data_payloads([PROXY_TRANSCRIPT.read_bytes()]))} events "
        f"of one request (validate_json alone, warm, in this process) takes "
        f"{validation_s * 1e6:.0f} us, against the baseline's {base_us:.0f} us of CPU per "
        f"request: (ii) >= {floor:.2f} while every event is validated (the goal leaves "
        f"{budget:.0f} us for all of codex-fix)"
    )


def print_runs(fixed: ProxyRun, base: ProxyRun) -> None:
    """The CPU and RSS table of a codex-fix run and its baseline, and their ratios."""
    print(
        f"  {'':<24} {'MB':>7} {'CPU s':>7} {'CPU s/MB':>9} {'wall s':>7} "
        f"{'peak RSS MB (warm-up / end)':>28}"
    )
    for run in (fixed, base):
        print(
            f"  {run.name:<24} {run.nbytes / MB:>7.1f} {run.cpu_s:>7.2f} {run.cpu_per_mb:>9.4f} "
            f"{run.wall_s:>7.2f} {run.warm_rss_kb / 1024:>19.1f} {run.peak_rss_kb / 1024:>8.1f}"
        )
    cpu_ratio = fixed.cpu_per_mb / base.cpu_per_mb
    rss_ratio = fixed.peak_rss_kb / base.peak_rss_kb
    label = "ratio codex-fix/baseline"
    print(f"  {label:<24} {'':>7} {'':>7} {cpu_ratio:>9.2f} {'':>7} {'':>19} {rss_ratio:>8.2f}")


def print_sanity(fixed: ProxyRun, base: ProxyRun, what: str) -> None:
    print(
        f"  sanity: {what} differing from what the backend sent: codex-fix "
        f"{fixed.bad_answers}, baseline {base.bad_answers}; codex-fix summaries with "
        f"outcome=completed: {fixed.summaries}"
    )


def print_proxy(fixed: ProxyRun, base: ProxyRun, requests: int) -> None:
    size = PROXY_TRANSCRIPT.stat().st_size
    print(
        f"(ii) proxy CPU per streamed MB and (iii) peak RSS: {requests} sequential requests x "
        f"{size:,} bytes ({PROXY_TRANSCRIPT.name}) in {BACKEND_PART}-byte parts, "
        "HTTP/1.1 reverse proxy"
    )
    print_runs(fixed, base)
    print_sanity(fixed, base, "bodies")


def print_websocket(fixed: ProxyRun, base: ProxyRun, plan: SocketPlan) -> None:
    messages = websocket_messages()
    size = sum(len(m.encode()) for m in messages)
    print(
        f"(iv) WebSocket proxy CPU per relayed MB: {plan.sockets} sockets one after the "
        f"other x {plan.requests} requests, each answered by {len(messages)} text messages "
        f"({size:,} bytes: the events of {CODEX_TRANSCRIPT.name}), reverse proxy, no "
        f"permessage-deflate, flow_detail=0; codex-fix (repair) vs. plain mitmdump"
    )
    print_runs(fixed, base)
    print_sanity(fixed, base, "requests' messages")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="See the module docstring for what is measured and how.",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=4000,
        help="(ii): measured requests per proxy (default 4000, 443 MB each; --quick: 10)",
    )
    parser.add_argument(
        "--sockets",
        type=int,
        default=40,
        help="(iv): measured WebSockets per proxy (default 40; --quick: 2)",
    )
    parser.add_argument(
        "--socket-requests",
        type=int,
        default=100,
        help="(iv): requests on each WebSocket (default 100, 3.8 MB; --quick: 5)",
    )
    parser.add_argument(
        "--repeat", type=int, default=20, help="repetitions of each core measurement (best kept)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny run for a smoke test (a few seconds)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of the core workload"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.repeat = min(args.requests, 10), min(args.repeat, 2)
        args.sockets, args.socket_requests = min(args.sockets, 2), min(args.socket_requests, 5)
    if min(args.requests, args.repeat, args.sockets, args.socket_requests) < 1:
        parser.error("--requests, --sockets, --socket-requests and --repeat must be at least 1")
    return args


def print_goals(core: Rate, parse: Rate, runs: ProxyRuns) -> None:
    (fixed, base), (ws_fixed, ws_base) = runs.http, runs.websocket
    core_ratio = core.mb_per_s / parse.mb_per_s
    cpu_ratio = fixed.cpu_per_mb / base.cpu_per_mb
    rss_ratio = fixed.peak_rss_kb / base.peak_rss_kb
    ws_ratio = ws_fixed.cpu_per_mb / ws_base.cpu_per_mb
    print(goal_line("(i) core/json.loads", core_ratio, GOAL_CORE, at_least=True))
    print(goal_line("(ii) CPU/MB codex-fix/baseline", cpu_ratio, GOAL_CPU, at_least=False))
    print(f"goal (iii) peak RSS codex-fix/baseline: reported only, no target ({rss_ratio:.2f})")
    print(goal_line("(iv) WebSocket CPU/MB codex-fix/baseline", ws_ratio, GOAL_CPU, at_least=False))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quick = ", --quick" if args.quick else ""
    print(
        f"codex-fix bench: Python {platform.python_version()}, mitmproxy {VERSION}, "
        f"{os.cpu_count()} CPUs{quick}"
    )
    transcripts = load_transcripts()
    core, parse = bench_core(transcripts, args.repeat)
    print_core(core, parse, args.repeat, len(transcripts))
    name, data, longest = longest_line_transcript()
    rates = {
        "LF": bench_pathological(data, args.repeat),
        "CRLF": bench_pathological(data.replace(b"\n", b"\r\n"), args.repeat),
    }
    print_pathological(name, longest, rates)
    gc.collect()
    plan = SocketPlan(args.sockets, args.socket_requests, warmup=1 if args.quick else 2)
    runs = bench_proxy(args.requests, warmup=2 if args.quick else 10, plan=plan)
    print_proxy(*runs.http, args.requests)
    print_floor(
        runs.http[1], args.requests, validation_seconds(PROXY_TRANSCRIPT.read_bytes(), args.repeat)
    )
    print_websocket(*runs.websocket, plan)
    if args.profile:
        print(profile_core(transcripts, args.repeat))
    print_goals(core, parse, runs)
    return 0 if valid(runs, args.requests, plan) else 1


def valid(runs: ProxyRuns, requests: int, plan: SocketPlan) -> bool:
    """Whether the proxy numbers mean anything; says why not."""
    if any(run.bad_answers for run in (*runs.http, *runs.websocket)):
        print(
            "INVALID: a proxied body or WebSocket message differed from what the backend "
            "sent, or a request failed"
        )
        return False
    if runs.http[0].summaries < requests or runs.websocket[0].summaries < plan.total:
        print("INVALID: codex-fix did not handle every stream (too few summary lines)")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
