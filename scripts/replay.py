#!/usr/bin/env python3
"""Replay an SSE body through the codex-fix core, exactly as the proxy would run it.

The file (a transcript, or a capture's `<stem>.upstream.sse`) is fed to a `StreamFixer`
in chunks with the monotonic clock, then the stream is ended the way the chosen fault
ends it: a clean end of body, a transport break after `--cut-at N` bytes, or a stall
(`--stall`: the fixer's own deadline passes, as when the proxy's idle timer fires).

stdout gets the client stream, byte for byte; stderr gets codex-fix's log lines and the
summary (outcome, repairs, warnings, notes, usage). Attach both to a bug report, or use
it to check a new upstream shape offline:

    python scripts/replay.py tests/fixtures/real/responses/codex-backend-gpt5-text.sse \\
        --cut-at 5000 > client.sse
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import BinaryIO

from codexfix.capture import RecordError, read_record
from codexfix.failures import EndCause, UpstreamBroken, UpstreamEnded, UpstreamIdle
from codexfix.fixer import Limits, StreamFixer
from codexfix.protocols import Protocol
from codexfix.reassembly import detect_protocol

PROTOCOLS = [str(protocol) for protocol in Protocol]
CAPTURE_SUFFIXES = (".upstream.sse", ".client.sse")


def guess_protocol(path: Path, data: bytes) -> str | None:
    """A capture's record, else a folder named for a protocol, else the events."""
    for suffix in CAPTURE_SUFFIXES:
        if path.name.endswith(suffix):
            record = path.with_name(path.name.removesuffix(suffix) + ".json")
            try:
                return read_record(record).protocol
            except RecordError as exc:
                print(f"replay: protocol not from {record.name}: {exc}", file=sys.stderr)
                break
    for part in reversed(path.resolve().parent.parts):
        if part in PROTOCOLS:
            return part
    return detect_protocol(data)


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def replay(
    data: bytes,
    protocol: str,
    out: BinaryIO,
    *,
    chunk_size: int = 1024,
    cut_at: int | None = None,
    stall: bool = False,
    limits: Limits | None = None,
) -> StreamFixer:
    """Run `data` through a fixer, writing the client bytes to `out`."""
    log = logging.LoggerAdapter(logging.getLogger("codexfix"), {})
    limits = limits or Limits()
    fixer = StreamFixer(protocol, limits, log, time.monotonic())
    if cut_at is not None:
        data = data[:cut_at]
    for chunk in chunks(data, chunk_size):
        out.write(fixer.feed(chunk, time.monotonic()))
    cause: EndCause
    if stall:
        # As the proxy's timer does: wake at the deadline and ask the fixer why it ends.
        deadline = fixer.deadline()
        if deadline is None:
            cause = UpstreamIdle(limits.idle_timeout)
        else:
            cause = fixer.expiry_cause(deadline)
    elif cut_at is not None:
        cause = UpstreamBroken(f"replay cut at {cut_at}")
    else:
        cause = UpstreamEnded()
    out.write(fixer.finish(cause))
    out.flush()
    return fixer


def summary(fixer: StreamFixer) -> str:
    report = fixer.report
    parts = [
        f"protocol={report.protocol}",
        f"model={report.model or '-'}",
        f"events={report.events}",
        f"bytes={report.bytes_in}->{report.bytes_out}",
        f"outcome={report.outcome or '?'}",
        f"repairs={','.join(report.repairs) or '-'}",
        f"warnings={report.warnings}",
    ]
    if report.usage is not None:
        u = report.usage
        parts.append(
            f"tokens=in:{u.input_tokens} cached:{u.cached_tokens} "
            f"out:{u.output_tokens} reasoning:{u.reasoning_tokens}"
        )
    lines = ["summary: " + " ".join(parts)]
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="an SSE body: transcript or capture .sse")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="default: from a capture's record, a folder named for it, or the events",
    )
    parser.add_argument("--cut-at", type=int, metavar="N", help="the upstream breaks after N bytes")
    parser.add_argument(
        "--chunk-size", type=int, default=1024, metavar="K", help="bytes per upstream read"
    )
    parser.add_argument("--stall", action="store_true", help="the upstream goes silent at the end")
    parser.add_argument(
        "-o", "--output", type=Path, help="write the client stream here instead of stdout"
    )
    args = parser.parse_args(argv)
    if args.chunk_size < 1:
        parser.error("--chunk-size must be at least 1")
    if args.cut_at is not None and args.cut_at < 0:
        parser.error("--cut-at must be >= 0")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        parser.error(f"cannot read {args.file}: {exc}")
    protocol = args.protocol or guess_protocol(args.file, data)
    if protocol is None:
        parser.error("cannot tell the protocol from the file: pass --protocol")
    if protocol not in PROTOCOLS:
        parser.error(f"protocol {protocol!r} is not supported by this codex-fix ({PROTOCOLS})")

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s codexfix: %(message)s"
    )
    fault = f"cut at {args.cut_at}" if args.cut_at is not None else "whole body"
    print(
        f"replay: {args.file} ({len(data)} bytes, {protocol}, {fault}"
        f"{', then stall' if args.stall else ''}, chunks of {args.chunk_size})",
        file=sys.stderr,
    )
    sink = args.output.open("wb") if args.output else contextlib.nullcontext(sys.stdout.buffer)
    with sink as out:
        fixer = replay(
            data, protocol, out, chunk_size=args.chunk_size, cut_at=args.cut_at, stall=args.stall
        )
    print(summary(fixer), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
