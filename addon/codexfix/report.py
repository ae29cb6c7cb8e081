"""What happened to one stream: counts, outcome, repairs, usage (filled by the core)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (protocols imports the dialects, which import this module)
    from .protocols import Protocol


@dataclass
class Usage:
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


class Ending(StrEnum):
    """How a stream ended for its client."""

    COMPLETED = "completed"  # the upstream's own successful terminal
    FAILED = "failed"  # the upstream's `response.failed`
    INCOMPLETE = "incomplete"  # the upstream's `response.incomplete`
    ERROR = "error"  # the upstream's in-band error, the terminal of Chat and Anthropic
    INJECTED = "injected"  # codex-fix ended it with its protocol's error
    PASSTHROUGH = "passthrough"  # not managed: no known protocol, or fail-open
    ABORTED = "aborted"  # the flow broke before any terminal (the client left, say)


@dataclass(frozen=True, slots=True)
class Outcome:
    ending: Ending
    detail: str | None = None  # the failure class (error, injected), or why it aborted

    @property
    def terminal(self) -> bool:
        """A terminal of the stream's protocol reached the client."""
        return self.ending not in (Ending.PASSTHROUGH, Ending.ABORTED)

    @property
    def kind(self) -> str:
        """The outcome without what is particular to one flow, for counting."""
        return str(self.ending) if self.ending is Ending.ABORTED else str(self)

    def __str__(self) -> str:
        return f"{self.ending}: {self.detail}" if self.detail else str(self.ending)


PASSTHROUGH = Outcome(Ending.PASSTHROUGH)
COMPLETED = Outcome(Ending.COMPLETED)


@dataclass
class StreamReport:
    protocol: Protocol | None  # None: not known (yet)
    events: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    model: str | None = None
    outcome: Outcome | None = None  # None while the stream runs
    repairs: list[str] = field(default_factory=list)
    warnings: int = 0
    usage: Usage | None = None
    notes: list[str] = field(default_factory=list)


def responses_usage(usage: dict[str, Any]) -> Usage:
    """A Responses `usage` object (as JSON) read leniently: what is missing counts 0."""
    return _usage(usage, "input_tokens", "output_tokens")


def chat_usage(usage: dict[str, Any]) -> Usage:
    """A Chat Completions `usage` object (as JSON) read leniently."""
    return _usage(usage, "prompt_tokens", "completion_tokens")


def _usage(usage: dict[str, Any], inputs: str, outputs: str) -> Usage:
    def count(key: str, detail: str | None = None) -> int:
        value = usage.get(key)
        if detail is not None:
            value = value.get(detail) if isinstance(value, dict) else None
        return value if isinstance(value, int) else 0

    return Usage(
        input_tokens=count(inputs),
        cached_tokens=count(f"{inputs}_details", "cached_tokens"),
        output_tokens=count(outputs),
        reasoning_tokens=count(f"{outputs}_details", "reasoning_tokens"),
    )


def printable(text: str, limit: int = 200) -> str:
    """Upstream text made safe for a log line: control characters, surrogates and other
    unprintable characters escaped (no forged lines, nothing a UTF-8 log cannot write),
    and long text cut."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
