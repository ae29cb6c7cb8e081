"""Read a whole SSE body back: one line per event, then what the client was given.

For people, not for the proxy: the content view, `scripts/replay.py` and the tests use it
to show what an agent actually received (text, reasoning, tool calls with their
arguments, usage, how the stream ended). It works on any body of the three protocols
(Responses, Chat Completions, Anthropic Messages) and never raises: a frame it cannot
read (bad JSON, not an object, unexpected field types) becomes an event line with a note.

Sans-I/O and mitmproxy-free, like the rest of the core.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .dialects import protocol_of
from .report import Usage, chat_usage, responses_usage
from .sse import Frame, SSEFramer

Json = dict[str, Any]

_EXCERPT = 48


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
    usage: Usage | None = None
    model: str | None = None
    # How the stream ended, in its own terms: Responses `completed|failed|incomplete`,
    # Chat the finish_reason(s), Anthropic the stop_reason at `message_stop`. None: the
    # body ended without a terminal.
    outcome: str | None = None
    errors: list[str] = field(default_factory=list)
    done: bool = False  # `data: [DONE]` seen
    trailing: int = 0  # bytes of an incomplete last event (no blank line after it)


def reassemble(body: bytes, protocol: str | None = None) -> Reassembly:
    """Parse `body`; `protocol=None` detects it from the events."""
    parsed = _parse(body)
    if protocol is None:
        protocol = _detect(parsed)
    builder = _BUILDERS.get(protocol or "", _Builder)()
    result = Reassembly(protocol if protocol in _BUILDERS else None)
    for index, frame, obj, note in parsed.frames:
        result.events.append(_line(builder, index, frame, obj, note, result))
    try:
        builder.finish(result)
    except Exception as exc:  # a bug here must not hide the event lines
        result.errors.append(f"codex-fix could not reassemble the result: {exc!r}")
    result.trailing = parsed.trailing
    return result


def detect_protocol(body: bytes) -> str | None:
    """The protocol of an SSE body, from its first recognizable event."""
    return _detect(_parse(body))


# -- parsing --------------------------------------------------------------------------


@dataclass
class _Parsed:
    frames: list[tuple[int, Frame, object, str | None]]  # index, frame, decoded JSON, note
    trailing: int


def _parse(body: bytes) -> _Parsed:
    framer = SSEFramer()
    frames = framer.feed(body) + framer.close()
    tail = framer.parse_tail()
    out: list[tuple[int, Frame, object, str | None]] = []
    for index, frame in enumerate(frames):
        if frame.data is None and not frame.comments:
            continue  # a stray blank line: nothing to show
        obj: object = None
        note = None
        if frame.data is not None and frame.data != b"[DONE]":
            try:
                obj = json.loads(frame.data)
            except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                note = f"invalid JSON: {exc}"
            except RecursionError:
                note = "JSON nested too deeply to show"
            else:
                if not isinstance(obj, dict):
                    note = f"data is a JSON {type(obj).__name__}, not an object"
        out.append((index, frame, obj, note))
    return _Parsed(out, len(tail.raw) if tail else 0)


def _detect(parsed: _Parsed) -> str | None:
    for _, frame, obj, _ in parsed.frames:
        found = protocol_of(obj if isinstance(obj, dict) else {}, frame.event)
        if found is not None:
            return found
    return None


def _line(
    builder: _Builder,
    index: int,
    frame: Frame,
    obj: object,
    note: str | None,
    result: Reassembly,
) -> EventLine:
    if frame.data is None:
        comment = b" ".join(frame.comments).decode("utf-8", "replace")
        return EventLine(index, ":", None, _excerpt(comment), "comment, no data")
    if frame.data == b"[DONE]":
        result.done = True
        return EventLine(index, "[DONE]", None, "")
    name = frame.event or "?"
    if not isinstance(obj, dict):
        return EventLine(index, name, None, _excerpt(frame.data.decode("utf-8", "replace")), note)
    kind = obj.get("type")
    if isinstance(kind, str):
        if frame.event is not None and frame.event != kind:
            note = f"event name {frame.event!r} but data type {kind!r}"
        name = kind
    elif frame.event is None:
        name = builder.default_name(obj)
    seq = obj.get("sequence_number")
    sequence = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    try:
        summary = builder.event(name, obj, result)
    except Exception as exc:  # unexpected shapes: the line says so, the rest goes on
        summary = ""
        note = f"could not read: {exc!r}"
    return EventLine(index, name, sequence, summary, note)


# -- per protocol -----------------------------------------------------------------------


class _Builder:
    """Unknown protocol: event lines only."""

    def default_name(self, obj: Json) -> str:
        return "error" if "error" in obj else "?"

    def event(self, name: str, obj: Json, result: Reassembly) -> str:
        if name == "error" or "error" in obj:
            return self.error(obj, result)
        return _keys(obj)

    def error(self, obj: Json, result: Reassembly) -> str:
        nested = obj.get("error")
        places = [nested, obj] if isinstance(nested, dict) else [obj]
        label = _first_str(places, "code") or _first_str(places, "type") or "error"
        text = f"{label}: {_first_str(places, 'message') or '-'}"
        result.errors.append(text)
        return text

    def finish(self, result: Reassembly) -> None:
        return None


class _ResponsesBuilder(_Builder):
    def __init__(self) -> None:
        self.items: dict[int, Json] = {}  # output_index -> item (added, then done)
        self.text: dict[tuple[int, int], list[str]] = {}
        self.refusal: dict[tuple[int, int], list[str]] = {}
        self.reasoning: dict[tuple[int, str], list[str]] = {}
        self.args: dict[int, list[str]] = {}
        self.final_output: list[Any] = []
        self.handlers: dict[str, Callable[[Json, Reassembly], str]] = {
            "response.output_text.delta": self.on_text,
            "response.refusal.delta": self.on_text,
            "response.reasoning_summary_text.delta": self.on_reasoning,
            "response.reasoning_text.delta": self.on_reasoning,
            "response.function_call_arguments.delta": self.on_args,
            "response.custom_tool_call_input.delta": self.on_args,
            "response.apply_patch_call_operation_diff.delta": self.on_args,
            "response.mcp_call_arguments.delta": self.on_args,
            "response.code_interpreter_call_code.delta": self.on_args,
            "response.output_item.added": self.on_item,
            "response.output_item.done": self.on_item,
            "error": self.error,
        }

    def event(self, name: str, obj: Json, result: Reassembly) -> str:
        handler = self.handlers.get(name)
        if handler is not None:
            return handler(obj, result)
        response = obj.get("response")
        if isinstance(response, dict):
            return self.on_response(name, response, result)
        where = _where(obj)
        if name.endswith(".done") and isinstance(obj.get("text"), str):
            return f"{where} {len(obj['text'])} chars"
        part = obj.get("part") or obj.get("annotation")
        if isinstance(part, dict):
            return f"{where} {part.get('type', '?')} {_excerpt(part.get('url') or '')}".strip()
        item_id = obj.get("item_id")
        return f"{where} {item_id}".strip() if isinstance(item_id, str) else where

    def on_text(self, obj: Json, result: Reassembly) -> str:
        key = (_int(obj.get("output_index")), _int(obj.get("content_index")))
        target = self.refusal if obj.get("type") == "response.refusal.delta" else self.text
        return self._delta(target, key, obj)

    def on_reasoning(self, obj: Json, result: Reassembly) -> str:
        summary = obj.get("type") == "response.reasoning_summary_text.delta"
        sub = f"summary {_int(obj.get('summary_index'))}" if summary else "text"
        return self._delta(self.reasoning, (_int(obj.get("output_index")), sub), obj)

    def on_args(self, obj: Json, result: Reassembly) -> str:
        return self._delta(self.args, _int(obj.get("output_index")), obj)

    def _delta(self, target: dict[Any, list[str]], key: Any, obj: Json) -> str:
        delta = obj.get("delta")
        if not isinstance(delta, str):
            raise TypeError(f"delta is {type(delta).__name__}, not a string")
        target.setdefault(key, []).append(delta)
        return f"{_where(obj)} {_quote(delta)}"

    def on_item(self, obj: Json, result: Reassembly) -> str:
        item = obj.get("item")
        if not isinstance(item, dict):
            raise TypeError("no item object")
        self.items[_int(obj.get("output_index"))] = item
        details = [_where(obj), str(item.get("type", "?")), str(item.get("id", "-"))]
        details += [f"{k}={item[k]}" for k in ("name", "status") if isinstance(item.get(k), str)]
        return " ".join(details)

    def on_response(self, name: str, response: Json, result: Reassembly) -> str:
        details = [str(response.get("id", "-"))]
        if isinstance(response.get("model"), str):
            result.model = response["model"]
            details.append(f"model={response['model']}")
        if isinstance(response.get("status"), str):
            details.append(f"status={response['status']}")
        if name in ("response.completed", "response.failed", "response.incomplete"):
            result.outcome = name.removeprefix("response.")
            output = response.get("output")
            self.final_output = output if isinstance(output, list) else []
            details += self._terminal_details(response, result)
        return " ".join(details)

    def _terminal_details(self, response: Json, result: Reassembly) -> list[str]:
        details = []
        error = response.get("error")
        if isinstance(error, dict):
            text = f"{error.get('code', 'error')}: {error.get('message', '-')}"
            result.errors.append(text)
            details.append(f"error {text}")
        incomplete = response.get("incomplete_details")
        if isinstance(incomplete, dict) and incomplete.get("reason"):
            details.append(f"reason={incomplete['reason']}")
        usage = response.get("usage")
        if isinstance(usage, dict):
            result.usage = responses_usage(usage)
            details.append(_usage(result.usage))
        return details

    def finish(self, result: Reassembly) -> None:
        # Items that came only in the terminal's output (no output_item events) count too.
        for index, item in enumerate(self.final_output):
            if isinstance(item, dict):
                self.items.setdefault(index, item)
        text, refusals = dict(self.text), dict(self.refusal)
        streamed = {index for index, _ in text.keys() | refusals.keys()}
        for index, item in sorted(self.items.items()):
            kind = str(item.get("type", "?"))
            if kind == "message" and index not in streamed:  # no deltas: the item's text
                for n, part in enumerate(_list(item.get("content"))):
                    part = part if isinstance(part, dict) else {}
                    for key, target in (("text", text), ("refusal", refusals)):
                        if isinstance(part.get(key), str):
                            target[(index, n)] = [part[key]]
            elif kind.endswith("_call"):
                result.tool_calls.append(self._tool_call(index, kind, item))
        for source, parts in ((text, result.text), (refusals, result.refusals)):
            for (index, content), deltas in sorted(source.items()):
                parts.append(Part(f"output {index}/{content}", "".join(deltas)))
        for (index, sub), deltas in sorted(self.reasoning.items()):
            result.reasoning.append(Part(f"output {index} {sub}", "".join(deltas)))

    def _tool_call(self, index: int, kind: str, item: Json) -> ToolCall:
        args = self.args.get(index)
        return ToolCall(
            f"output {index}",
            kind,
            _str(item.get("name")),
            _str(item.get("call_id")) or _str(item.get("id")),
            "".join(args) if args is not None else _item_arguments(item),
        )


class _ChatBuilder(_Builder):
    def __init__(self) -> None:
        self.text: dict[int, list[str]] = {}
        self.refusal: dict[int, list[str]] = {}
        self.reasoning: dict[int, list[str]] = {}
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.finish_reasons: dict[int, str] = {}

    def default_name(self, obj: Json) -> str:
        return "error" if "error" in obj and "choices" not in obj else "chunk"

    def event(self, name: str, obj: Json, result: Reassembly) -> str:
        if isinstance(obj.get("error"), dict):
            return self.error(obj, result)
        if isinstance(obj.get("model"), str) and obj["model"]:
            result.model = obj["model"]
        details = [self._choice(c) for c in _list(obj.get("choices")) if isinstance(c, dict)]
        if not details:
            details.append("no choices")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            result.usage = chat_usage(usage)
            details.append(_usage(result.usage))
        return " ".join(d for d in details if d)

    def _choice(self, choice: Json) -> str:
        index = _int(choice.get("index"))
        details = [f"c{index}"]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key, target in (
                ("content", self.text),
                ("refusal", self.refusal),
                ("reasoning", self.reasoning),
                ("reasoning_content", self.reasoning),
            ):
                value = delta.get(key)
                if isinstance(value, str) and value:
                    target.setdefault(index, []).append(value)
                    details.append(f"{key} {_quote(value)}")
            calls = _list(delta.get("tool_calls"))
            if isinstance(delta.get("function_call"), dict):  # the pre-tools shape
                calls = [{"index": 0, "function": delta["function_call"]}]
            details += [self._tool_call(index, c) for c in calls if isinstance(c, dict)]
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reasons[index] = reason
            details.append(f"finish_reason={reason}")
        return " ".join(details)

    def _tool_call(self, choice: int, call: Json) -> str:
        position = _int(call.get("index"))
        state = self.calls.setdefault((choice, position), {"args": []})
        function = _dict(call.get("function"))
        for key, value in (("id", call.get("id")), ("name", function.get("name"))):
            if isinstance(value, str) and value:
                state[key] = value
        args = function.get("arguments")
        if isinstance(args, str):
            state["args"].append(args)
        details = [f"tool {position}"]
        details += [v for v in (call.get("id"), function.get("name")) if isinstance(v, str) and v]
        if isinstance(args, str):
            details.append(_quote(args))
        return " ".join(details)

    def finish(self, result: Reassembly) -> None:
        for target, parts in ((self.text, result.text), (self.refusal, result.refusals)):
            parts += [Part(f"choice {i}", "".join(d)) for i, d in sorted(target.items())]
        result.reasoning += [
            Part(f"choice {i}", "".join(d)) for i, d in sorted(self.reasoning.items())
        ]
        for (choice, position), state in sorted(self.calls.items()):
            result.tool_calls.append(
                ToolCall(
                    f"choice {choice} tool {position}",
                    "function",
                    state.get("name"),
                    state.get("id"),
                    "".join(state["args"]),
                )
            )
        if self.finish_reasons:
            result.outcome = ",".join(dict.fromkeys(self.finish_reasons.values()))


class _AnthropicBuilder(_Builder):
    def __init__(self) -> None:
        self.blocks: dict[int, Json] = {}  # index -> content_block of content_block_start
        self.deltas: dict[int, list[str]] = {}
        self.stop_reason: str | None = None
        self.usage: Json = {}

    def event(self, name: str, obj: Json, result: Reassembly) -> str:
        if name == "error":
            return self.error(obj, result)
        if name == "message_start":
            message = _dict(obj.get("message"))
            result.model = _str(message.get("model")) or result.model
            self._usage(message.get("usage"), result)
            return f"{message.get('id', '-')} model={message.get('model', '-')}"
        if name.startswith("content_block_"):
            return self._block(name, obj)
        if name == "message_delta":
            delta = _dict(obj.get("delta"))
            self.stop_reason = _str(delta.get("stop_reason")) or self.stop_reason
            self._usage(obj.get("usage"), result)
            return f"stop_reason={delta.get('stop_reason')} {_usage(result.usage)}"
        if name == "message_stop":
            result.outcome = self.stop_reason or "message_stop"
        return ""

    def _block(self, name: str, obj: Json) -> str:
        index = _int(obj.get("index"))
        where = f"block {index}"
        if name == "content_block_start":
            block = obj.get("content_block")
            if not isinstance(block, dict):
                raise TypeError("no content_block object")
            self.blocks[index] = block
            details = [where, str(block.get("type", "?"))]
            details += [str(block[k]) for k in ("id", "name") if isinstance(block.get(k), str)]
            return " ".join(details)
        delta = obj.get("delta")
        if name != "content_block_delta" or not isinstance(delta, dict):
            return where
        kind = str(delta.get("type", "?"))
        for key in ("text", "thinking", "partial_json"):
            value = delta.get(key)
            if isinstance(value, str):
                self.deltas.setdefault(index, []).append(value)
                return f"{where} {kind} {_quote(value)}"
        if isinstance(delta.get("signature"), str):
            return f"{where} {kind} {len(delta['signature'])} chars"
        citation = delta.get("citation")
        if isinstance(citation, dict):
            return f"{where} {kind} {_excerpt(str(citation.get('title') or citation.get('url')))}"
        return f"{where} {kind}"

    def _usage(self, usage: object, result: Reassembly) -> None:
        if not isinstance(usage, dict):
            return
        # message_delta carries cumulative counts; a field it leaves out keeps its value.
        self.usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
        result.usage = Usage(
            input_tokens=_int(self.usage.get("input_tokens")),
            cached_tokens=_int(self.usage.get("cache_read_input_tokens")),
            output_tokens=_int(self.usage.get("output_tokens")),
        )

    def finish(self, result: Reassembly) -> None:
        for index in sorted(self.blocks.keys() | self.deltas.keys()):
            block = self.blocks.get(index, {})
            kind = str(block.get("type", "text"))
            joined = "".join(self.deltas.get(index, []))
            where = f"block {index}"
            if kind == "text":
                result.text.append(Part(where, (_str(block.get("text")) or "") + joined))
            elif kind == "thinking":
                result.reasoning.append(Part(where, (_str(block.get("thinking")) or "") + joined))
            elif kind == "redacted_thinking":
                size = len(_str(block.get("data")) or "")
                result.reasoning.append(Part(where, f"[redacted thinking, {size} chars]"))
            elif kind.endswith("tool_use"):
                data = block.get("input")
                args = joined or (json.dumps(data, ensure_ascii=False) if data else "")
                call_id, name = _str(block.get("id")), _str(block.get("name"))
                result.tool_calls.append(ToolCall(where, kind, name, call_id, args))


_BUILDERS: dict[str, type[_Builder]] = {
    "responses": _ResponsesBuilder,
    "chat": _ChatBuilder,
    "anthropic": _AnthropicBuilder,
}


# -- small helpers ----------------------------------------------------------------------


def _where(obj: Json) -> str:
    parts = [str(obj[k]) for k in ("output_index", "content_index") if isinstance(obj.get(k), int)]
    where = "out " + "/".join(parts) if parts else ""
    if isinstance(obj.get("summary_index"), int):
        where += f" summary {obj['summary_index']}"
    return where


def _item_arguments(item: Json) -> str:
    for key in ("arguments", "input"):
        if isinstance(item.get(key), str):
            return str(item[key])
    for key in ("action", "operation"):  # local_shell_call, web_search_call, apply_patch_call
        if isinstance(item.get(key), dict):
            return json.dumps(item[key], ensure_ascii=False)
    return ""


def _usage(usage: Usage | None) -> str:
    if usage is None:
        return ""
    return (
        f"usage in:{usage.input_tokens} cached:{usage.cached_tokens} "
        f"out:{usage.output_tokens} reasoning:{usage.reasoning_tokens}"
    )


def _quote(text: str) -> str:
    """A short, one-line, quoted excerpt of streamed text."""
    return json.dumps(_excerpt(text), ensure_ascii=False)


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _keys(obj: Json) -> str:
    return _excerpt("keys: " + ", ".join(str(k) for k in obj))


def _first_str(places: list[Any], key: str) -> str | None:
    for place in places:
        if isinstance(place, dict) and isinstance(place.get(key), str) and place[key]:
            return str(place[key])
    return None


def _dict(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
