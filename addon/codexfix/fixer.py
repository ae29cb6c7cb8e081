"""StreamFixer: framer + dialect + report, the one object the proxy installs per stream.

Sans-I/O: the caller passes bytes and the current (monotonic) time in and sends the
bytes that come out; `deadline()` says when to call back if nothing arrives, and
`expiry_cause()` why the stream must end then. The clock is a parameter so tests
control it.

Fail-open: an exception inside the fixer switches the stream to raw passthrough. No
byte is lost in the switch: frames are forwarded in order and the framer keeps every
byte it has not yet returned, so the raw remainder is exactly what was not sent.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .coercion import Coercer, UnknownTypes, WarningBudget
from .dialects import Dialect
from .dialects.base import DialectBase
from .failures import EndCause, GraceExpired, UpstreamIdle
from .protocols import SPECS, Protocol, Sniffed, sniff
from .report import PASSTHROUGH, StreamReport, printable
from .sse import BOM, Frame, SSEFramer, foreign_lines, foreign_start, simple_fields


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-stream bounds and timeouts (seconds; 0 turns a timeout off)."""

    max_event_size: int = 16 * 1024 * 1024
    idle_timeout: float = 240.0
    terminal_grace: float = 1.0
    warning_limit: int = 20


_HEAD = len(BOM) + 8  # enough of a line to tell an SSE field name ("retry:", a BOM)


class _Undetected(DialectBase):
    """The dialect of a stream whose protocol is not known yet: frames pass unchanged."""

    terminal_seen = False
    error_pending = False

    def on_frame(self, frame: Frame) -> bytes:
        return frame.raw

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        return 0

    def finish(self, cause: EndCause) -> bytes:
        return b""


class StreamFixer:
    """`protocol` None: told by the first event; else confirmed by it."""

    def __init__(
        self,
        protocol: Protocol | str | None,
        limits: Limits,
        log: logging.LoggerAdapter[logging.Logger],
        now: float,
        unknown_types: UnknownTypes | None = None,
        requested_model: Callable[[], str | None] | None = None,
    ) -> None:
        protocol = None if protocol is None else Protocol(protocol)  # ValueError if unknown
        self.limits = limits
        self.log = log
        self._requested_model = requested_model
        self.report = StreamReport(protocol)
        self.budget = WarningBudget(log, limits.warning_limit, self.report)
        self._unknown_types = unknown_types or UnknownTypes()
        self.dialect: Dialect = (
            _Undetected(self.report, log) if protocol is None else self._dialect(protocol)
        )
        self._opened = False  # a data frame came: the body is an event stream
        self._tail_read = False  # the tail's first bytes were read, and are an SSE field's
        self._confirmed = False  # the first event agreed with the protocol
        self._framer = SSEFramer()
        self._stream_start = True  # the next block opens the stream (a BOM may lead it)
        self._last_activity = now
        self._terminal_at: float | None = None
        self._raw = False
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def passthrough(self) -> bool:
        """Raw passthrough after an internal error or an oversized event."""
        return self._raw

    def feed(self, data: bytes, now: float) -> bytes:
        """Upstream bytes in, client bytes out (possibly none yet)."""
        self.report.bytes_in += len(data)
        if self._raw or self._finished:
            return self._count(data)
        self._last_activity = now
        try:
            block = self._framer.push(data)
        except Exception as exc:
            return self._count(self._go_raw(exc, b""))
        out = b""
        if block:  # else the bytes only added to an incomplete event: no news
            out, error = self._forward(block)
            if error is not None:
                return self._count(self._go_raw(error, out))
            if self._raw:  # the first event showed another protocol
                return self._count(out)
            # Chat: a choice may start after the others finished, so this can turn back.
            if self.dialect.terminal_seen:
                if self._terminal_at is None:
                    self._terminal_at = now
            else:
                self._terminal_at = None
        if not self._opened and self._foreign_tail(renewed=bool(block)):
            return self._count(out + self._framer.take_tail())
        if self._framer.buffered > self.limits.max_event_size:
            self.log.warning(
                "an SSE event is larger than %d bytes: passing the rest of the stream through "
                "unchanged (no repair, no injected terminal)",
                self.limits.max_event_size,
            )
            return self._count(out + self._go_raw(None, b""))
        self.report.bytes_out += len(out)  # (self._count, inlined: once per chunk)
        return out

    def finish(self, cause: EndCause) -> bytes:
        """The end of the upstream body; idempotent (mitmproxy may signal the end twice)."""
        if self._finished:
            return b""
        self._finished = True
        if self._raw:
            return b""
        try:
            block = self._framer.push_final()
        except Exception as exc:
            return self._count(self._go_raw(exc, b""))
        out, error = self._forward(block)
        if error is not None:
            return self._count(self._go_raw(error, out))
        if self._raw:
            return self._count(out)
        self._drop_tail()
        if isinstance(self.dialect, _Undetected):
            self.log.warning("no event told the stream's protocol: it passed through untouched")
            self.report.outcome = PASSTHROUGH
        try:
            out += self.dialect.finish(cause)
        except Exception as exc:
            self._go_raw(exc, b"")
        return self._count(out)

    @property
    def in_grace(self) -> bool:
        """A terminal or an upstream error came: the stream ends within the grace."""
        return self._terminal_at is not None or self.dialect.error_pending

    def deadline(self) -> float | None:
        """When to give up waiting for upstream bytes (monotonic seconds), if ever."""
        if self._raw or self._finished:
            return None
        limits = self.limits
        candidates = []
        if limits.idle_timeout > 0:
            candidates.append(self._last_activity + limits.idle_timeout)
        if self._terminal_at is not None:
            candidates.append(self._terminal_at + limits.terminal_grace)
        elif self.dialect.error_pending:
            candidates.append(self._last_activity + limits.terminal_grace)
        return min(candidates, default=None)

    def expiry_cause(self, now: float) -> EndCause:
        """Why the stream ends at its deadline."""
        if self._terminal_at is not None:
            return GraceExpired(now - self._terminal_at)
        if self.dialect.error_pending:
            return GraceExpired(now - self._last_activity)
        return UpstreamIdle(now - self._last_activity)

    # -- internals --------------------------------------------------------------------

    def _dialect(self, protocol: Protocol) -> Dialect:
        spec = SPECS[protocol]
        coercer: Coercer[Any] = Coercer(spec.events, self.budget, self._unknown_types)
        dialect = spec.dialect(self.report, coercer, self.log)
        if self._requested_model is not None:
            dialect.requested_model = self._requested_model
        return dialect

    def _forward(self, block: bytes) -> tuple[bytes, Exception | None]:
        """The dialect's bytes for a block of frames; if it raises, the block's frames
        that were not forwarded yet, raw."""
        if not block:
            return b"", None
        stream_start, self._stream_start = self._stream_start, False
        handled = 0
        # The fast path: most blocks are simple frames that all leave unchanged, and go
        # out as the one bytes object they came in.
        fields = simple_fields(block)
        if fields is not None:
            if not self._confirmed:
                self._confirm(fields[1][0])
                if self._raw:
                    return block + self._framer.take_tail(), None
            if self._confirmed:
                try:
                    handled = self.dialect.on_events(*fields)
                except Exception as exc:
                    return block, exc
                if handled == len(fields[1]):
                    return block, None
        try:
            frames = self._framer.split(block, stream_start=stream_start)
        except Exception as exc:
            return block, exc
        out: list[bytes] = [f.raw for f in frames[:handled]]
        try:
            for frame in frames[handled:]:
                if not self._confirmed:
                    self._check_start(frame, stream_start and not out)
                    if self._raw:  # not the protocol we expected: untouched from here on
                        rest = b"".join(f.raw for f in frames[len(out) :])
                        return b"".join(out) + rest + self._framer.take_tail(), None
                out.append(self.dialect.on_frame(frame))
        except Exception as exc:
            failed_at = len(out)
            return b"".join(out) + b"".join(f.raw for f in frames[failed_at:]), exc
        return b"".join(out), None

    # Before the first data frame every dialect forwards frames unchanged, so giving up
    # on a body there leaves it exactly as it came, whatever the chunking.

    def _check_start(self, frame: Frame, first: bool) -> None:
        """A frame before the first event: give up on a body that is no event stream (a
        line that is no SSE field); the first data frame confirms the protocol."""
        if not self._opened and foreign_lines(frame.raw.removeprefix(BOM) if first else frame.raw):
            self._give_up("the body is not an event stream", frame.raw)
        elif frame.data is not None:
            self._confirm(frame.data)

    def _foreign_tail(self, renewed: bool) -> bool:
        """Whether the incomplete frame after the last complete one already begins with a
        line that is no SSE field (its first bytes tell): then give up on the body.

        Its first bytes are read once they are all there, not again per chunk (a 13 KB
        first event may come in many), until a complete frame makes a new tail (`renewed`).
        """
        if renewed:
            self._tail_read = False
        elif self._tail_read:
            return False
        head = self._framer.peek(_HEAD)
        tail = head
        if self._stream_start:  # a BOM may open the stream (and may not have come whole)
            if BOM.startswith(tail):
                return False
            tail = tail.removeprefix(BOM)
        if not foreign_start(tail):
            self._tail_read = len(head) == _HEAD
            return False
        self._give_up("the body is not an event stream", self._framer.peek(40))
        return True

    def _give_up(self, why: str, sample: bytes) -> None:
        self.log.warning("%s (it begins %r): passing it through untouched", why, sample[:40])
        self._raw = True
        self.report.outcome = PASSTHROUGH

    def _confirm(self, data: bytes) -> None:
        """Check the first event against the protocol: confirm it, tell it (a new
        dialect), or give up on the stream (raw passthrough)."""
        self._opened = True
        if data == b"[DONE]":
            return  # nothing to tell by yet
        self._confirmed = True
        if self.dialect.terminal_seen:
            return  # a [DONE] first, and the dialect ended the stream on it: it is the path's
        found = sniff(data)
        expected = None if isinstance(self.dialect, _Undetected) else self.report.protocol
        if found is Sniffed.ANY and expected is not None:
            return  # an `error` first, say: consistent with the request path
        if isinstance(found, Protocol) and expected in (None, found):
            if expected is None:
                self.report.protocol = found
                self.dialect = self._dialect(found)
            return
        self._give_up(f"the stream does not look like {expected or 'any known protocol'}", data)

    def _go_raw(self, exc: BaseException | None, pending: bytes) -> bytes:
        """Switch to raw passthrough; return every byte not forwarded yet."""
        self._raw = True
        self.report.outcome = PASSTHROUGH
        if exc is not None:
            log_internal_error(self.log, exc, "stream switched to raw passthrough")
        return pending + self._framer.take_tail()

    def _drop_tail(self) -> None:
        """At the end, an event without its blank line is discarded (as the SSE spec says)."""
        tail = self._framer.parse_tail()
        self._framer.take_tail()
        if tail is not None:
            self.report.notes.append(f"dropped incomplete trailing event ({len(tail.raw)} bytes)")
            self.log.warning(
                "dropped an incomplete trailing event (%d bytes, event %s): %r",
                len(tail.raw),
                printable(tail.event or "-"),
                tail.raw[:80],
            )

    def _count(self, out: bytes) -> bytes:
        self.report.bytes_out += len(out)
        return out


def log_internal_error(
    log: logging.LoggerAdapter[logging.Logger], exc: BaseException, consequence: str
) -> None:
    """The one ERROR line of a fail-open switch: what failed, where, and what follows."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    log.error(
        "internal error, %s: %r at %s:%s",
        consequence,
        exc,
        where.filename.rsplit("/", 1)[-1],
        where.lineno,
    )
    log.debug("traceback", exc_info=exc)
