"""The read-back of a Responses stream: its event lines, and what the one reading of the
protocol (`accumulate.responses`, the proxy's too) built from the same events."""

from __future__ import annotations

from pydantic import ValidationError

from ..accumulate.responses import ResponsesAccumulator
from ..models.responses import RESPONSES_EVENT, TERMINALS
from .builder import (
    Builder,
    as_dict,
    as_list,
    as_str,
    excerpt,
    item_arguments,
    location,
    quote,
    usage_text,
)
from .result import Json, Part, Reassembly, ToolCall


class ResponsesBuilder(Builder):
    def __init__(self) -> None:
        self.state = ResponsesAccumulator(keep_deltas=True)

    def event(self, name: str, obj: Json, result: Reassembly, data: bytes) -> str:
        try:
            self.state.feed(RESPONSES_EVENT.validate_json(data), data)
        except ValidationError:
            self.state.feed_object(obj, data)
        if name == "error":
            return self.error(obj, result)
        response = obj.get("response")
        if isinstance(response, dict):
            return self.on_response(name, response)
        where = location(obj)
        delta = obj.get("delta")
        if name.endswith(".delta"):
            if not isinstance(delta, str):
                raise TypeError(f"delta is {type(delta).__name__}, not a string")
            return f"{where} {quote(delta)}"
        item = obj.get("item")
        if name.startswith("response.output_item."):
            if not isinstance(item, dict):
                raise TypeError("no item object")
            details = [where, str(item.get("type", "?")), str(item.get("id", "-"))]
            details += [f"{k}={v}" for k in ("name", "status") if isinstance(v := item.get(k), str)]
            return " ".join(details)
        if name.endswith(".done") and isinstance(obj.get("text"), str):
            return f"{where} {len(obj['text'])} chars"
        part = obj.get("part") or obj.get("annotation")
        if isinstance(part, dict):
            return f"{where} {part.get('type', '?')} {excerpt(part.get('url') or '')}".strip()
        item_id = obj.get("item_id")
        return f"{where} {item_id}".strip() if isinstance(item_id, str) else where

    def error(self, obj: Json, result: Reassembly) -> str:
        """The line of an `error` event: its code and message as the one reading takes
        them (top-level first), which `finish` reports."""
        if self.state.error is None:
            return super().error(obj, result)
        code, message = self.state.error
        return f"{code}: {message}"

    def on_response(self, name: str, response: Json) -> str:
        details = [str(response.get("id", "-"))]
        for key in ("model", "status"):
            if isinstance(response.get(key), str):
                details.append(f"{key}={response[key]}")
        error = response.get("error")
        if isinstance(error, dict):
            details.append(f"error {error.get('code', 'error')}: {error.get('message', '-')}")
        incomplete = response.get("incomplete_details")
        if isinstance(incomplete, dict) and incomplete.get("reason"):
            details.append(f"reason={incomplete['reason']}")
        if name in TERMINALS and self.state.usage is not None:
            details.append(usage_text(self.state.usage))
        return " ".join(details)

    def finish(self, result: Reassembly) -> None:
        state = self.state
        result.model, result.usage = state.model, state.usage
        if state.error is not None:
            result.errors.append("{}: {}".format(*state.error))
        if state.terminal is not None:
            result.outcome = state.terminal.removeprefix("response.")
            if state.failure is not None:
                result.errors.append("{}: {}".format(*state.failure))
        result.items = state.items()
        for index, item in result.items.items():
            self._item(index, item, result)

    def _item(self, index: int, item: Json, result: Reassembly) -> None:
        kind = str(item.get("type", "?"))
        streamed = self.state.text.get(index)
        if kind == "message" and streamed:  # what streamed, beside what the item says
            for n, deltas in sorted(streamed.items()):
                refusal = self.state.part_types.get((index, n)) == "refusal"
                parts = result.refusals if refusal else result.text
                parts.append(Part(f"output {index}/{n}", "".join(deltas)))
        elif kind == "message":
            for n, part in enumerate(as_list(item.get("content"))):
                part = as_dict(part)
                if isinstance(part.get("text"), str):
                    result.text.append(Part(f"output {index}/{n}", part["text"]))
                if isinstance(part.get("refusal"), str):
                    result.refusals.append(Part(f"output {index}/{n}", part["refusal"]))
        elif kind == "reasoning":
            self._reasoning(index, item, result)
        elif kind.endswith("_call"):
            args = self.state.args.get(index)
            result.tool_calls.append(
                ToolCall(
                    f"output {index}",
                    kind,
                    as_str(item.get("name")),
                    as_str(item.get("call_id")) or as_str(item.get("id")),
                    "".join(args) if args is not None else item_arguments(item),
                )
            )

    def _reasoning(self, index: int, item: Json, result: Reassembly) -> None:
        for n, part in enumerate(as_list(item.get("summary"))):
            text = as_dict(part).get("text")
            if isinstance(text, str):
                result.reasoning.append(Part(f"output {index} summary {n}", text))
        texts = self.state.text.get(index) or {
            n: [text]
            for n, part in enumerate(as_list(item.get("content")))
            if isinstance(text := as_dict(part).get("text"), str)
        }
        for _, deltas in sorted(texts.items()):
            result.reasoning.append(Part(f"output {index} text", "".join(deltas)))
