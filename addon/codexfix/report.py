"""What happened to one stream: counts, outcome, repairs, usage (filled by the core)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class StreamReport:
    protocol: str
    events: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    model: str | None = None
    # completed / failed / incomplete (the upstream's terminal), "injected: <class>", or
    # "passthrough" after fail-open; None while the stream runs.
    outcome: str | None = None
    repairs: list[str] = field(default_factory=list)
    warnings: int = 0
    usage: Usage | None = None
    notes: list[str] = field(default_factory=list)
