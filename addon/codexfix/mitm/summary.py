"""What codex-fix tells of each stream: the log prefix naming its flow, the one summary
line, and the counts behind `codexfix.stats`."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from mitmproxy import http

from ..report import Outcome, StreamReport, printable
from .stream import FlowStream

log = logging.getLogger("codexfix")
UNKNOWN = "unknown"  # a stream no event of a known protocol told


class FlowLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the flow it is about."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['flow'] if self.extra else '?'}] {msg}", kwargs


def flow_log(flow: http.HTTPFlow) -> FlowLog:
    return FlowLog(log, {"flow": f"{flow.id[:8]} {where(flow.request)}"})


def where(request: http.Request) -> str:
    """Host and path, without the query: a query may carry a key (`?key=…`)."""
    return request.host + request.path.split("?", 1)[0]


class Stats:
    """What `codexfix.stats` tells: counts since start."""

    def __init__(self) -> None:
        self.streams = 0
        self.protocols: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.repairs: Counter[str] = Counter()
        self.warnings = 0

    def add(self, report: StreamReport, outcome: Outcome) -> None:
        self.streams += 1
        self.protocols[report.protocol or UNKNOWN] += 1
        self.outcomes[outcome.kind] += 1
        self.repairs.update(report.repairs)
        self.warnings += report.warnings

    def render(self) -> str:
        lines = [f"streams: {self.streams}", f"coercion warnings: {self.warnings}"]
        for title, counts in (
            ("protocol", self.protocols),
            ("outcome", self.outcomes),
            ("repair", self.repairs),
        ):
            lines += [f"{title} {name}: {n}" for name, n in counts.most_common()]
        return "\n".join(lines)


def summary(flow: http.HTTPFlow, stream: FlowStream, outcome: Outcome) -> str:
    """The one INFO line per matched stream."""
    request = flow.request
    status = flow.response.status_code if flow.response else "-"
    report = stream.fixer.report
    head = f"{request.method} {where(request)} {status} {report.protocol or UNKNOWN}"
    ttfb = stream.first_byte_at - request.timestamp_start if stream.first_byte_at else None
    duration = time.time() - request.timestamp_start
    return "summary: " + " ".join([head, *report_parts(report, outcome, duration, ttfb)])


def report_parts(
    report: StreamReport, outcome: Outcome, duration: float, ttfb: float | None
) -> list[str]:
    """What a summary line tells of one stream (an SSE body, a request on a WebSocket)."""
    parts = [
        f"model={printable(report.model or '-')}",  # upstream text: escaped
        f"events={report.events}",
        f"bytes={report.bytes_in}->{report.bytes_out}",
        f"duration={duration:.2f}s",
        f"ttfb={'-' if ttfb is None else f'{ttfb:.2f}s'}",
        f"outcome={outcome}",
        f"repairs={','.join(report.repairs) or '-'}",
        f"warnings={report.warnings}",
    ]
    if report.usage:
        u = report.usage
        parts.append(
            f"tokens=in:{u.input_tokens} cached:{u.cached_tokens} "
            f"out:{u.output_tokens} reasoning:{u.reasoning_tokens}"
        )
    return parts
