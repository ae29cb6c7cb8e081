"""What the SSE content views show for a body: one line per event, then the reassembled
result (text, reasoning, tool calls, usage, how it ended), then what codex-fix recorded
for the flow. "SSE" reads the body as the client received it, "SSE upstream" the copy
the adapter keeps in `flow.metadata["codexfix"]["upstream"]`.

The metadata contract (filled by the adapter; plain values, so flow files keep it):
    {"protocol": str, "outcome": str | None, "repairs": [str], "notes": [str],
     "warnings": [str], "upstream": bytes | None, "upstream_truncated": bool,
     "client_truncated": bool}
The response body (`flow.response.content`) is the body as sent to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mitmproxy import flow

from ..reassembly import EventLine, Reassembly, reassemble
from ..sse import SSEFramer

METADATA_KEY = "codexfix"
MAX_EVENT_LINES = 5000  # a pathological stream must not freeze the UI

Line = tuple[str, str]  # (style, text): the console's palette names, mitmweb's CSS classes


def codexfix_info(f: flow.Flow | None) -> Mapping[str, Any] | None:
    """What codex-fix recorded for the flow, if it handled it."""
    info = f.metadata.get(METADATA_KEY) if f is not None else None
    return info if isinstance(info, Mapping) else None


def render(data: bytes, f: flow.Flow | None, *, upstream: bool = False) -> tuple[str, list[Line]]:
    """The description and lines of either view; `upstream` renders the kept upstream body."""
    info = codexfix_info(f)
    protocol = info.get("protocol") if info else None
    protocol = protocol if isinstance(protocol, str) else None
    other: object
    if upstream:
        kept = info.get("upstream") if info else None
        if not isinstance(kept, bytes):
            return "SSE upstream", [("error", "no upstream body kept for this flow")]
        data, other = kept, data
    else:
        other = info.get("upstream") if info else None
    result = reassemble(data, protocol)
    lines = _event_lines(result) + _result_lines(result)
    if info is not None:
        lines += _codexfix_lines(info, data, other, upstream)
    outcome = result.outcome or "no terminal"
    description = f"SSE {result.protocol or '?'}, {len(result.events)} events, {outcome}"
    return description, lines


def _event_lines(result: Reassembly) -> list[Line]:
    lines: list[Line] = [("header", f"events ({len(result.events)})")]
    for event in result.events[:MAX_EVENT_LINES]:
        lines += event_line(event)
    if len(result.events) > MAX_EVENT_LINES:
        lines.append(("text", f"  … {len(result.events) - MAX_EVENT_LINES} more events"))
    if result.trailing:
        lines.append(
            ("error", f"  incomplete last event: {result.trailing} bytes without a blank line")
        )
    return lines


def event_line(event: EventLine) -> list[Line]:
    """One event's line (index, sequence number, type, what matters), and its note if any."""
    seq = f"seq {event.sequence}" if event.sequence is not None else ""
    lines: list[Line] = [
        ("text", f"{event.index:>5} {seq:<9} {event.name}  {event.summary}".rstrip())
    ]
    if event.note:
        lines.append(("error", f"{'':>15} ^ {event.note}"))
    return lines


def _result_lines(result: Reassembly) -> list[Line]:
    lines: list[Line] = [("text", ""), ("header", "result")]
    head = f"  protocol {result.protocol or '?'}, model {result.model or '-'}, "
    head += f"outcome {result.outcome or 'none (no terminal event)'}"
    lines.append(("text", head + (", [DONE]" if result.done else "")))
    for title, parts in (
        ("text", result.text),
        ("refusal", result.refusals),
        ("reasoning", result.reasoning),
    ):
        for part in parts:
            lines.append(("key", f"  {title} ({part.where}):"))
            lines += [("text", "    " + line) for line in part.text.splitlines() or [""]]
    for call in result.tool_calls:
        label = " ".join(x for x in (call.kind, call.name, call.call_id) if x)
        lines.append(("key", f"  tool call ({call.where}): {label}"))
        lines += [("text", "    " + line) for line in call.arguments.splitlines() or [""]]
    if result.usage is not None:
        u = result.usage
        lines.append(
            (
                "text",
                f"  usage: input {u.input_tokens} (cached {u.cached_tokens}), "
                f"output {u.output_tokens} (reasoning {u.reasoning_tokens})",
            )
        )
    lines += [("error", f"  error: {error}") for error in result.errors]
    return lines


def _codexfix_lines(
    info: Mapping[str, Any], shown: bytes, other: object, upstream: bool
) -> list[Line]:
    lines: list[Line] = [("text", ""), ("header", "codex-fix")]
    lines.append(("text", f"  outcome: {info.get('outcome') or '-'}"))
    for key in ("repairs", "notes", "warnings"):
        value = info.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [f"{value} (a count; the lines are in the log)"] if value else []
        items = [str(v) for v in value] if isinstance(value, list | tuple) else []
        if not items:
            lines.append(("text", f"  {key}: none"))
            continue
        lines.append(("key", f"  {key}:"))
        style = "text" if key == "notes" else "warn"
        lines += [(style, f"    {item}") for item in items]
    lines.append(("text", "  " + _comparison(shown, other, upstream, info)))
    if info.get("client_truncated"):
        lines.append(("warn", "  the client body kept on the flow is truncated"))
    return lines


def _comparison(shown: bytes, other: object, upstream: bool, info: Mapping[str, Any]) -> str:
    """Whether the body sent to the client differs from the one the upstream sent."""
    this, that = ("upstream", "client") if upstream else ("client", "upstream")
    if not isinstance(other, bytes):
        return f"{that} body: not kept"
    truncated = " (kept copy truncated)" if info.get("upstream_truncated") else ""
    if other == shown:
        return f"{that} body: {len(other)} bytes, identical to the {this} body{truncated}"
    shown_frames, other_frames = _frames(shown), _frames(other)
    first = next(
        (i for i, (a, b) in enumerate(zip(shown_frames, other_frames, strict=False)) if a != b),
        min(len(shown_frames), len(other_frames)),
    )
    return (
        f"{that} body: {len(other)} bytes, {len(other_frames)} frames{truncated}; "
        f"differs from the {this} body ({len(shown)} bytes, {len(shown_frames)} frames) "
        f"from frame {first} on"
    )


def _frames(body: bytes) -> list[bytes]:
    framer = SSEFramer()
    frames = [frame.raw for frame in framer.feed(body) + framer.close()]
    tail = framer.take_tail()
    return [*frames, tail] if tail else frames
