"""What a read-back gives: the event lines, and what the client was given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..report import Usage

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventLine:
    """One frame of the stream, as a line a person can scan."""

    index: int  # position among the body's frames (blank-line frames count), 0-based
    name: str  # event type; "[DONE]"; ":" for a comment-only frame
    sequence: int | None  # Responses `sequence_number`, when the event has one
    summary: str  # the fields that matter for this type
    note: str | None = None  # why the frame could not be read (fully)


@dataclass(frozen=True, slots=True)
class Part:
    """Text of one output item / choice / content block."""

    where: str  # "output 1/0", "choice 0", "block 2"
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    where: str
    kind: str  # function_call, custom_tool_call, local_shell_call, tool_use, function...
    name: str | None
    call_id: str | None
    arguments: str  # streamed argument deltas joined, else the final item's arguments


@dataclass
class Reassembly:
    protocol: str | None  # "responses" | "chat" | "anthropic", None if unrecognized
    events: list[EventLine] = field(default_factory=list)
    text: list[Part] = field(default_factory=list)
    refusals: list[Part] = field(default_factory=list)
    reasoning: list[Part] = field(default_factory=list)  # summaries, reasoning text, thinking
    tool_calls: list[ToolCall] = field(default_factory=list)
    # Responses: the output items as a client holds them at the end (each done item, or
    # one rebuilt from what streamed of it), by output index.
    items: dict[int, Json] = field(default_factory=dict)
    usage: Usage | None = None
    model: str | None = None
    # How the stream ended, in its own terms: Responses `completed|failed|incomplete`,
    # Chat the finish_reason(s), Anthropic the stop_reason at `message_stop`. None: the
    # body ended without a terminal.
    outcome: str | None = None
    errors: list[str] = field(default_factory=list)
    done: bool = False  # `data: [DONE]` seen
    trailing: int = 0  # bytes of an incomplete last event (no blank line after it)
