"""Coerce event payloads into pydantic models; a failure is a warning, never fatal.

Schema drift must be visible, not swallowed: every failure is reported with the event
type, sequence number, field path, reason and a short excerpt, and the event still
passes through unchanged. Warnings are rate-limited per stream so a broken upstream
cannot flood the log; unknown event types are reported once per process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from .report import StreamReport, printable

M = TypeVar("M")

_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')
_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,100})"')
_EXCERPT = 120


class WarningBudget:
    """Per-stream warning counter: the first `limit` are logged, then one notice."""

    def __init__(
        self,
        log: logging.LoggerAdapter[logging.Logger],
        limit: int,
        report: StreamReport | None = None,
    ) -> None:
        self.log = log
        self.limit = limit
        self.report = report  # whose `warnings` count this keeps current
        self.count = 0
        self.lines: list[str] = []  # the ones logged, for the flow's inspection

    def warn(self, msg: str, *args: object) -> None:
        self.count += 1
        if self.report is not None:
            self.report.warnings = self.count
        if self.count <= self.limit:
            self.log.warning(msg, *args)
            self.lines.append(msg % args)
        if self.count == self.limit:
            self.log.warning("further coercion warnings for this stream are counted, not logged")


class UnknownTypes:
    """Event types without a model, reported once per process (at INFO).

    At most `limit` are remembered: an upstream inventing a new type per event must not
    grow the process; past the limit each is reported at DEBUG only.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.seen: set[str] = set()
        self.limit = limit

    def note(self, log: logging.LoggerAdapter[logging.Logger], event_type: str) -> None:
        if event_type in self.seen:
            return
        if len(self.seen) >= self.limit:
            log.debug("unknown event type %r passed through (no model for it)", event_type)
            return
        self.seen.add(event_type)
        log.info("unknown event type %r passed through (no model for it)", event_type)


class Coercer(Generic[M]):
    """Validate JSON payloads against one discriminated union of event models."""

    def __init__(
        self,
        adapter: TypeAdapter[M],
        budget: WarningBudget,
        unknown: UnknownTypes,
    ) -> None:
        # The compiled validator itself: TypeAdapter.validate_json adds a Python-level
        # wrapper per call, a measurable cost at one call per event.
        # Raises ValidationError (also for invalid JSON); the dialects' fast paths call it.
        self.validate: Callable[[bytes], M] = adapter.validator.validate_json
        self.budget = budget
        self.unknown = unknown

    def coerce(self, data: bytes, event_name: str | None) -> M | None:
        """The model for `data`, or None (after a warning or an unknown-type note)."""
        try:
            return self.validate(data)
        except ValidationError as exc:
            self.warn(data, event_name, exc)
            return None

    def warn(self, data: bytes, event_name: str | None, exc: ValidationError) -> None:
        """The warning for an event that failed its model (an unknown type: a note)."""
        error = exc.errors(include_url=False)[0]
        type_match = _TYPE.search(data)
        event_type = printable(
            type_match.group(1).decode("utf-8", "replace") if type_match else event_name or "?"
        )
        if error["type"] == "union_tag_invalid":
            self.unknown.note(self.budget.log, event_type)
            return
        seq = _SEQUENCE.search(data)
        self.budget.warn(
            "coercion failed: event %s seq %s at %s: %s; excerpt %r",
            event_type,
            seq.group(1).decode() if seq else "-",
            ".".join(str(part) for part in error["loc"]) or "(root)",
            error["msg"],
            data[:_EXCERPT],
        )
