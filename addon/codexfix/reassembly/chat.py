"""The read-back of a Chat Completions stream: its event lines, and what the one reading
of the protocol (`accumulate.chat`, the proxy's too) built from the same frames."""

from __future__ import annotations

from pydantic import ValidationError

from ..accumulate.chat import ChatAccumulator, Streamed, is_error
from ..models.chat import CHAT_EVENT
from .builder import Builder, as_dict, as_int, as_list, quote, usage_text
from .result import Json, Part, Reassembly, ToolCall


class ChatBuilder(Builder):
    def __init__(self) -> None:
        self.state = ChatAccumulator(keep_deltas=True)

    def default_name(self, obj: Json) -> str:
        return "error" if is_error(obj, None) else "chunk"

    def event(self, name: str, obj: Json, result: Reassembly, data: bytes) -> str:
        try:
            event = CHAT_EVENT.validate_json(data)
        except ValidationError:
            event = self.state.lax_event(obj, name)
        self.state.feed(event)
        error = self.state.error_of(event)
        if error is not None:
            return str(error)
        details = [self._choice(c) for c in as_list(obj.get("choices")) if isinstance(c, dict)]
        if not details:
            details.append("no choices")
        if isinstance(obj.get("usage"), dict):
            details.append(usage_text(self.state.usage))
        return " ".join(d for d in details if d)

    @staticmethod
    def _choice(choice: Json) -> str:
        details = [f"c{as_int(choice.get('index'))}"]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("content", "refusal", "reasoning", "reasoning_content"):
                value = delta.get(key)
                if isinstance(value, str) and value:
                    details.append(f"{key} {quote(value)}")
            calls = as_list(delta.get("tool_calls"))
            if isinstance(delta.get("function_call"), dict):  # the pre-tools shape
                calls = [{"index": 0, "function": delta["function_call"]}]
            details += [ChatBuilder._tool_call(c) for c in calls if isinstance(c, dict)]
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            details.append(f"finish_reason={reason}")
        return " ".join(details)

    @staticmethod
    def _tool_call(call: Json) -> str:
        function = as_dict(call.get("function"))
        details = [f"tool {as_int(call.get('index'))}"]
        details += [v for v in (call.get("id"), function.get("name")) if isinstance(v, str) and v]
        if isinstance(args := function.get("arguments"), str):
            details.append(quote(args))
        return " ".join(details)

    def finish(self, result: Reassembly) -> None:
        state = self.state
        result.model, result.usage = state.model, state.usage
        streamed = state.streamed or Streamed()
        for deltas, parts in (
            (streamed.text, result.text),
            (streamed.refusal, result.refusals),
            (streamed.reasoning, result.reasoning),
        ):
            parts += [Part(f"choice {i}", "".join(d)) for i, d in sorted(deltas.items())]
        for (choice, position), call in sorted(streamed.calls.items()):
            result.tool_calls.append(
                ToolCall(
                    f"choice {choice} tool {position}",
                    "function",
                    call.name,
                    call.id,
                    "".join(call.arguments),
                )
            )
        if state.finish_reasons:
            result.outcome = ",".join(dict.fromkeys(state.finish_reasons.values()))
        if state.error is not None:
            result.errors.append(str(state.error))
