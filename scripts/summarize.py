#!/usr/bin/env python3
"""Summarize a codex-fix capture directory: one row per captured flow, then totals.

Reads every `<stem>.json` record that `codexfix_capture_dir` collected, through the
record's own model (`codexfix.capture.FlowRecord`), and prints, sorted by time: start
(UTC), model, outcome, repairs, input/output tokens and duration; then the number of
flows, the flows per outcome and per repair, and the token totals. Files that are not
valid records are skipped with the reason on stderr.

    python scripts/summarize.py ~/codexfix-captures
    python scripts/summarize.py ~/codexfix-captures --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codexfix.capture import RecordError, read_record
from codexfix.report import Usage


@dataclass(frozen=True)
class Row:
    file: str
    started: str
    model: str
    outcome: str
    repairs: list[str]
    warnings: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    duration_s: float | None


def load(path: Path) -> Row:
    """One record as a row; RecordError (with the reason) if it is not a valid record."""
    record = read_record(path)
    usage = record.usage or Usage()
    return Row(
        file=path.name,
        started=record.started,
        model=record.model or "-",
        outcome=record.outcome or "-",
        repairs=record.repairs,
        warnings=len(record.warnings),
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        duration_s=record.timings.duration_s,
    )


def collect(directory: Path) -> tuple[list[Row], list[str]]:
    """The rows, by start time, and a warning per skipped file."""
    rows, skipped = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            rows.append(load(path))
        except RecordError as exc:
            skipped.append(f"{path.name}: {exc}")
    rows.sort(key=lambda row: (row.started, row.file))
    return rows, skipped


def totals(rows: list[Row]) -> dict[str, Any]:
    repairs: Counter[str] = Counter(r for row in rows for r in row.repairs)
    return {
        "flows": len(rows),
        "outcomes": dict(Counter(row.outcome for row in rows).most_common()),
        "repairs": dict(repairs.most_common()),
        "warnings": sum(row.warnings for row in rows),
        "input_tokens": sum(row.input_tokens for row in rows),
        "cached_tokens": sum(row.cached_tokens for row in rows),
        "output_tokens": sum(row.output_tokens for row in rows),
        "reasoning_tokens": sum(row.reasoning_tokens for row in rows),
        "duration_s": round(sum(row.duration_s or 0.0 for row in rows), 3),
    }


def table(rows: list[Row]) -> list[str]:
    header = ("time (UTC)", "model", "outcome", "repairs", "tokens in", "tokens out", "duration")
    cells = [
        (
            row.started.replace("T", " ")[:19] or "-",
            row.model,
            row.outcome,
            ",".join(row.repairs) or "-",
            str(row.input_tokens),
            str(row.output_tokens),
            f"{row.duration_s:.2f}s" if row.duration_s is not None else "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    numeric = {4, 5, 6}

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()

    return [fmt(header), *(fmt(line) for line in cells)]


def report(rows: list[Row]) -> list[str]:
    t = totals(rows)
    lines = [*table(rows), ""]
    lines.append(f"flows: {t['flows']}")
    lines.append("outcomes: " + (_counts(t["outcomes"]) or "-"))
    lines.append("repairs: " + (_counts(t["repairs"]) or "-"))
    lines.append(f"warnings: {t['warnings']}")
    lines.append(
        f"tokens: in {t['input_tokens']} (cached {t['cached_tokens']}), "
        f"out {t['output_tokens']} (reasoning {t['reasoning_tokens']})"
    )
    lines.append(f"duration: {t['duration_s']:.2f}s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="a codexfix_capture_dir")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a directory")
    rows, skipped = collect(args.directory)
    for warning in skipped:
        print(f"summarize: skipped {warning}", file=sys.stderr)
    if args.json:
        out = {"flows": [asdict(row) for row in rows], "totals": totals(rows), "skipped": skipped}
        print(json.dumps(out, indent=2))
    else:
        print("\n".join(report(rows)))
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


if __name__ == "__main__":
    sys.exit(main())
