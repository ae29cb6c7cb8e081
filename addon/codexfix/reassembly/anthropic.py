"""The read-back of an Anthropic Messages stream: its event lines, and what the one
reading of the protocol (`accumulate.anthropic`, the proxy's too) built from the same
events."""

from __future__ import annotations

import json

from pydantic import ValidationError

from ..accumulate.anthropic import AnthropicAccumulator
from ..models.anthropic import ANTHROPIC_EVENT
from .builder import Builder, as_dict, as_int, as_str, excerpt, quote, usage_text
from .result import Json, Part, Reassembly, ToolCall


class AnthropicBuilder(Builder):
    def __init__(self) -> None:
        self.state = AnthropicAccumulator(keep_deltas=True)

    def event(self, name: str, obj: Json, result: Reassembly, data: bytes) -> str:
        try:
            event = ANTHROPIC_EVENT.validate_json(data)
        except ValidationError:
            event = self.state.lax_event(obj)
            if event is None:  # a type no model has: nothing to the state
                return ""
        self.state.feed(event, data)
        error = self.state.error_of(event)
        if error is not None:
            return str(error)
        if event.type == "message_start":
            message = as_dict(obj.get("message"))
            return f"{message.get('id', '-')} model={message.get('model', '-')}"
        if event.type.startswith("content_block_"):
            return self._block(event.type, obj)
        if event.type == "message_delta":
            delta = as_dict(obj.get("delta"))
            return f"stop_reason={delta.get('stop_reason')} {usage_text(self.state.usage)}"
        return ""

    @staticmethod
    def _block(name: str, obj: Json) -> str:
        where = f"block {as_int(obj.get('index'))}"
        if name == "content_block_start":
            block = obj.get("content_block")
            if not isinstance(block, dict):
                raise TypeError("no content_block object")
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
                return f"{where} {kind} {quote(value)}"
        if isinstance(delta.get("signature"), str):
            return f"{where} {kind} {len(delta['signature'])} chars"
        citation = delta.get("citation")
        if isinstance(citation, dict):
            return f"{where} {kind} {excerpt(str(citation.get('title') or citation.get('url')))}"
        return f"{where} {kind}"

    def finish(self, result: Reassembly) -> None:
        state = self.state
        result.model, result.usage = state.model, state.usage
        if state.terminal == "message_stop":
            result.outcome = state.stop_reason or "message_stop"
        if state.error is not None:
            result.errors.append(str(state.error))
        for index in state.indexes():
            self._block_result(index, state.block(index), result)

    def _block_result(self, index: int, block: Json, result: Reassembly) -> None:
        kind = str(block.get("type", "text"))
        joined = "".join(self.state.deltas.get(index, []))
        where = f"block {index}"
        if kind == "text":
            result.text.append(Part(where, (as_str(block.get("text")) or "") + joined))
        elif kind == "thinking":
            result.reasoning.append(Part(where, (as_str(block.get("thinking")) or "") + joined))
        elif kind == "redacted_thinking":
            size = len(as_str(block.get("data")) or "")
            result.reasoning.append(Part(where, f"[redacted thinking, {size} chars]"))
        elif kind.endswith("tool_use"):
            data = block.get("input")
            args = joined or (json.dumps(data, ensure_ascii=False) if data else "")
            call_id, name = as_str(block.get("id")), as_str(block.get("name"))
            result.tool_calls.append(ToolCall(where, kind, name, call_id, args))
