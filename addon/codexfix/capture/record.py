"""The capture record, `<stem>.json`: one typed model that the writer writes and the
tools (summarize, replay) read back.

Schema version 1: request line, headers and decoded body, response status and headers,
timings, then what the stream's report says (protocol, outcome, model, counts, repairs,
warnings, notes, usage) and the names of the stream files beside it. A record is built
only from redacted values (`redact`), so no secret can reach it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..report import StreamReport, Usage
from .redact import redact_body, redact_headers, redact_text, redact_url, writable

VERSION: Final = 1

Header = tuple[str, str]


class _Record(BaseModel):
    # Unknown keys are ignored: a reader of version 1 reads a record that has more.
    model_config = ConfigDict(frozen=True)


class RequestRecord(_Record):
    method: str
    url: str
    http_version: str
    headers: list[Header]
    # Decoded JSON, text, a "[...]" note, or None. Not validated: a JSON body may nest
    # deeper than pydantic's parser goes, and it is data, not schema.
    body: Any = None


class ResponseRecord(_Record):
    status: int
    headers: list[Header]


class Timings(_Record):
    duration_s: float | None = None
    ttfb_s: float | None = None


class FilesRecord(_Record):
    upstream: str | None = None  # a file name next to the record; None: no byte came
    client: str | None = None


class FlowRecord(_Record):
    """`<stem>.json`, schema version 1 (the keys in this order)."""

    version: Literal[1] = VERSION
    flow_id: str
    started: str  # ISO 8601, UTC
    request: RequestRecord
    response: ResponseRecord | None
    protocol: str
    timings: Timings
    outcome: str | None
    model: str | None
    events: int
    bytes_in: int
    bytes_out: int
    repairs: list[str]
    warnings: list[str]
    notes: list[str]
    usage: Usage | None
    files: FilesRecord

    def to_json(self) -> str:
        """The record as written: indented UTF-8 JSON."""
        # json.dumps, not model_dump_json: pydantic's serializer stops at a nesting depth
        # that a request body may exceed.
        return json.dumps(self.model_dump(), ensure_ascii=False, indent=2, default=str) + "\n"


@dataclass(frozen=True)
class FlowFacts:
    """What the adapter knows of a flow that its StreamReport does not (not yet redacted)."""

    method: str
    url: str
    http_version: str
    request_headers: Sequence[Header]
    request_body: bytes | None  # as the client sent it (content-encoding still applied)
    response_status: int | None = None  # None: no response
    response_headers: Sequence[Header] = ()
    duration_s: float | None = None
    ttfb_s: float | None = None


def build_record(
    flow: FlowFacts,
    report: StreamReport,
    *,
    flow_id: str,
    started: float,
    files: FilesRecord,
    outcome: object = None,
    warnings: Sequence[str] | None = None,
) -> FlowRecord:
    """The redacted record of one flow and its stream's report.

    `outcome`: the outcome the summary line shows, if not the report's own; `warnings`:
    the warning lines logged, else the report's count makes one line.
    """
    if warnings is None:
        warnings = [f"{report.warnings} coercion warnings (see the log)"] if report.warnings else []
    headers = {name.lower(): value for name, value in flow.request_headers}
    response = None
    if flow.response_status is not None:
        response = ResponseRecord(
            status=flow.response_status, headers=redact_headers(flow.response_headers)
        )
    return FlowRecord(
        flow_id=writable(flow_id),
        started=iso_utc(started),
        request=RequestRecord(
            method=writable(flow.method, raw=True),
            url=redact_url(flow.url),
            http_version=writable(flow.http_version, raw=True),
            headers=redact_headers(flow.request_headers),
            body=redact_body(
                flow.request_body, headers.get("content-encoding"), headers.get("content-type")
            ),
        ),
        response=response,
        protocol=writable(report.protocol or "unknown"),
        timings=Timings(duration_s=flow.duration_s, ttfb_s=flow.ttfb_s),
        # The upstream's words (a model name, an error message) may hold lone surrogates.
        outcome=_optional(report.outcome if outcome is None else outcome),
        model=_optional(report.model),
        events=report.events,
        bytes_in=report.bytes_in,
        bytes_out=report.bytes_out,
        repairs=[_line(line) for line in report.repairs],
        warnings=[_line(line) for line in warnings],
        notes=[_line(line) for line in report.notes],
        usage=report.usage,
        files=files,
    )


def _line(value: object) -> str:
    """`str(value)` as the record keeps text: writable, redacted."""
    return redact_text(writable(str(value)))


def _optional(value: object) -> str | None:
    return None if value is None else _line(value)


class RecordError(ValueError):
    """A file that is not a readable capture record; the message says why."""


def read_record(path: Path) -> FlowRecord:
    """The record in `path`; RecordError (with the reason) if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"not JSON: {exc}") from None
    except RecursionError:
        raise RecordError("not JSON this reader can nest: too deep") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise RecordError(f"not a codex-fix capture record (version {VERSION})")
    try:
        return FlowRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise RecordError(f"invalid record: {where}: {first['msg']}{more}") from None


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")
