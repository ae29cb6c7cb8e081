"""The read-back of a Chat Completions stream."""

from __future__ import annotations

from typing import Any

from ..report import chat_usage
from .builder import Builder, as_dict, as_int, as_list, quote, usage_text
from .result import Json, Part, Reassembly, ToolCall


class ChatBuilder(Builder):
    def __init__(self) -> None:
        self.text: dict[int, list[str]] = {}
        self.refusal: dict[int, list[str]] = {}
        self.reasoning: dict[int, list[str]] = {}
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.finish_reasons: dict[int, str] = {}

    def default_name(self, obj: Json) -> str:
        return "error" if "error" in obj and "choices" not in obj else "chunk"

    def event(self, name: str, obj: Json, result: Reassembly, data: bytes) -> str:
        if isinstance(obj.get("error"), dict):
            return self.error(obj, result)
        if isinstance(obj.get("model"), str) and obj["model"]:
            result.model = obj["model"]
        details = [self._choice(c) for c in as_list(obj.get("choices")) if isinstance(c, dict)]
        if not details:
            details.append("no choices")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            result.usage = chat_usage(usage)
            details.append(usage_text(result.usage))
        return " ".join(d for d in details if d)

    def _choice(self, choice: Json) -> str:
        index = as_int(choice.get("index"))
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
                    details.append(f"{key} {quote(value)}")
            calls = as_list(delta.get("tool_calls"))
            if isinstance(delta.get("function_call"), dict):  # the pre-tools shape
                calls = [{"index": 0, "function": delta["function_call"]}]
            details += [self._tool_call(index, c) for c in calls if isinstance(c, dict)]
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reasons[index] = reason
            details.append(f"finish_reason={reason}")
        return " ".join(details)

    def _tool_call(self, choice: int, call: Json) -> str:
        position = as_int(call.get("index"))
        state = self.calls.setdefault((choice, position), {"args": []})
        function = as_dict(call.get("function"))
        for key, value in (("id", call.get("id")), ("name", function.get("name"))):
            if isinstance(value, str) and value:
                state[key] = value
        args = function.get("arguments")
        if isinstance(args, str):
            state["args"].append(args)
        details = [f"tool {position}"]
        details += [v for v in (call.get("id"), function.get("name")) if isinstance(v, str) and v]
        if isinstance(args, str):
            details.append(quote(args))
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
