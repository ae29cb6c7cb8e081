"""The read-back of an Anthropic Messages stream."""

from __future__ import annotations

import json

from ..report import Usage
from .builder import Builder, as_dict, as_int, as_str, excerpt, quote, usage_text
from .result import Json, Part, Reassembly, ToolCall


class AnthropicBuilder(Builder):
    def __init__(self) -> None:
        self.blocks: dict[int, Json] = {}  # index -> content_block of content_block_start
        self.deltas: dict[int, list[str]] = {}
        self.stop_reason: str | None = None
        self.usage: Json = {}

    def event(self, name: str, obj: Json, result: Reassembly, data: bytes) -> str:
        if name == "error":
            return self.error(obj, result)
        if name == "message_start":
            message = as_dict(obj.get("message"))
            result.model = as_str(message.get("model")) or result.model
            self._usage(message.get("usage"), result)
            return f"{message.get('id', '-')} model={message.get('model', '-')}"
        if name.startswith("content_block_"):
            return self._block(name, obj)
        if name == "message_delta":
            delta = as_dict(obj.get("delta"))
            self.stop_reason = as_str(delta.get("stop_reason")) or self.stop_reason
            self._usage(obj.get("usage"), result)
            return f"stop_reason={delta.get('stop_reason')} {usage_text(result.usage)}"
        if name == "message_stop":
            result.outcome = self.stop_reason or "message_stop"
        return ""

    def _block(self, name: str, obj: Json) -> str:
        index = as_int(obj.get("index"))
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
                return f"{where} {kind} {quote(value)}"
        if isinstance(delta.get("signature"), str):
            return f"{where} {kind} {len(delta['signature'])} chars"
        citation = delta.get("citation")
        if isinstance(citation, dict):
            return f"{where} {kind} {excerpt(str(citation.get('title') or citation.get('url')))}"
        return f"{where} {kind}"

    def _usage(self, usage: object, result: Reassembly) -> None:
        if not isinstance(usage, dict):
            return
        # message_delta carries cumulative counts; a field it leaves out keeps its value.
        self.usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
        result.usage = Usage(
            input_tokens=as_int(self.usage.get("input_tokens")),
            cached_tokens=as_int(self.usage.get("cache_read_input_tokens")),
            output_tokens=as_int(self.usage.get("output_tokens")),
        )

    def finish(self, result: Reassembly) -> None:
        for index in sorted(self.blocks.keys() | self.deltas.keys()):
            block = self.blocks.get(index, {})
            kind = str(block.get("type", "text"))
            joined = "".join(self.deltas.get(index, []))
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
