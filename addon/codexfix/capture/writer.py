"""The capture writer: per flow, the SSE bodies exactly as they passed and the record.

Files (`codexfix_capture_dir`), named so that a directory listing sorts by time:
    <stem>.upstream.sse   the body as received from the upstream, byte for byte
    <stem>.client.sse     the body as sent to the client, byte for byte
    <stem>.json           the FlowRecord (record.py), secrets redacted
with <stem> = `YYYYmmddTHHMMSS.ffffffZ-<first 8 of the flow id>` (UTC); each request on
a Codex WebSocket is captured on its own, `<stem>-<n>`, its messages written as the SSE
frames the same events would be (one `data:` line per message line). Stream bodies are
model output and are written as they are.

A capture must never break the stream: a write error is logged once and ends the capture
of that flow. Sans-mitmproxy.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ..report import StreamReport
from .record import FilesRecord, FlowFacts, build_record

_log = logging.getLogger("codexfix")

_BUFFER = 64 * 1024


def capture_stem(started: float, flow_id: str, part: int | None = None) -> str:
    """`YYYYmmddTHHMMSS.ffffffZ-<flowid8>`: sortable by time, unique per flow; a
    WebSocket's requests are parts of its flow: `…-<flowid8>-<part>`."""
    when = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    stem = f"{when}-{re.sub(r'[^0-9A-Za-z]', '', flow_id)[:8] or 'flow'}"
    return stem if part is None else f"{stem}-{part}"


class Capture:
    """Writes one flow's capture as it streams; never raises on I/O errors."""

    def __init__(
        self,
        directory: str | Path,
        started: float,
        flow_id: str,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = _log,
        part: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.started = started
        self.flow_id = flow_id
        self.stem = capture_stem(started, flow_id, part)
        self.log = log
        self._files: dict[str, IO[bytes]] = {}
        self._failed = False
        self._closed = False

    @property
    def failed(self) -> bool:
        """A write failed: the capture stopped (and said so once)."""
        return self._failed

    def path(self, suffix: str) -> Path:
        return self.directory / f"{self.stem}.{suffix}"

    def append_upstream(self, data: bytes) -> None:
        self._append("upstream", data)

    def append_client(self, data: bytes) -> None:
        self._append("client", data)

    def _append(self, which: str, data: bytes) -> None:
        if self._failed or self._closed or not data:
            return
        try:
            file = self._files.get(which)
            if file is None:  # lazily: a flow that never streams leaves no empty files
                self.directory.mkdir(parents=True, exist_ok=True)
                # Kept open across calls, closed in close(): not a `with` block.
                file = open(self.path(f"{which}.sse"), "wb", _BUFFER)  # noqa: SIM115
                self._files[which] = file
            file.write(data)
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def close(
        self,
        flow: FlowFacts,
        report: StreamReport,
        *,
        outcome: object = None,
        warnings: Sequence[str] | None = None,
    ) -> Path | None:
        """Close the stream files and write the record of `flow` and its stream's `report`
        (`outcome` and `warnings` as `build_record` takes them); the record's path, or None
        if the capture failed."""
        if self._closed:
            return None
        self._closed = True
        files = FilesRecord(
            upstream=self.path("upstream.sse").name if "upstream" in self._files else None,
            client=self.path("client.sse").name if "client" in self._files else None,
        )
        self._close_files()
        if self._failed:
            return None
        path = self.path("json")
        partial = self.path("json.partial")
        try:
            record = build_record(
                flow,
                report,
                flow_id=self.flow_id,
                started=self.started,
                files=files,
                outcome=outcome,
                warnings=warnings,
            )
            self.directory.mkdir(parents=True, exist_ok=True)
            partial.write_text(record.to_json(), encoding="utf-8")
            # Readers (summarize.py) see a whole record or none.
            os.replace(partial, path)
        except (OSError, ValueError) as exc:  # a ValidationError is a ValueError
            self._fail(exc)
            return None
        return path

    def _close_files(self) -> None:
        for file in self._files.values():
            try:
                file.close()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            self.log.warning("capture %s stopped: %s", self.stem, exc)
        if not self._closed:
            self._closed = True
            self._close_files()
