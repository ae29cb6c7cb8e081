"""The one reading of a Responses stream: the state its events build.

Every consumer feeds the same accumulator: the proxy's dialect (which adds only its
repairs and the injected terminal), the read-back for people (content view, replay) and
the WebSocket transport. It is fed validated models, the strict ones or, for an event
that failed its model, their lax twins (`models.lax`: a field that does not fit is None),
so every handler reads a value only when it has the type the protocol gives it.

Kept: the `response.created` payload (the base of an injected failure), the last
`sequence_number`, the `output_item.added`/`.done` payloads, and the text and argument
deltas of items whose `done` has not come yet (dropped when it comes: the done item holds
it all). Reasoning summaries are read from their done items only: their deltas are most
of a reasoning stream's events, and keeping them would cost the proxy for display alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import responses as m
from ..models.lax import lax_union
from ..reading import Json, read_event
from ..report import StreamReport, Usage, responses_usage

LAX_EVENT, _TWINS = lax_union(m.ResponsesEvent)
# Items whose content the deltas give whole: a message's text, a function call's arguments.
REBUILDABLE = frozenset({"message", "function_call"})


class ResponsesAccumulator:
    def __init__(self, report: StreamReport | None = None, *, keep_deltas: bool = False) -> None:
        self.report = report or StreamReport(None)  # its model and usage are kept current
        # The proxy lets go of an item's deltas once it is done; a read-back for people
        # keeps them, to show what streamed beside what the done item says.
        self.keep_deltas = keep_deltas
        self.created: bytes | None = None  # data of response.created (in_progress stands in)
        self.response_id: str | None = None
        self.model: str | None = None
        self.seq: int | None = None  # the last sequence_number
        self.added: dict[int, bytes] = {}  # output_index -> data of output_item.added
        self.done: dict[int, bytes] = {}  # output_index -> data of output_item.done
        self.done_ids: set[str] = set()
        self.text: dict[int, dict[int, list[str]]] = {}  # output -> content -> deltas
        self.text_item_ids: dict[int, str] = {}
        self.part_types: dict[tuple[int, int], str] = {}
        self.args: dict[int, list[str]] = {}  # output -> argument / input / diff deltas
        self.error: tuple[str, str] | None = None  # an `error` event's code and message
        self.terminal: str | None = None  # the terminal's type
        self.terminal_data: bytes | None = None
        self.failure: tuple[str, str] | None = None  # the terminal's error: code, message
        self.usage: Usage | None = None
        handlers: dict[type, Callable[[Any, bytes], None]] = {
            m.TextDelta: self._on_text_delta,
            m.ItemDelta: self._on_item_delta,
            m.ContentPartEvent: self._on_content_part,
            m.OutputItemEvent: self._on_output_item,
            m.Lifecycle: self._on_lifecycle,
            m.ErrorEvent: self._on_error,
            m.Terminal: self.on_terminal,
        }
        # An event's lax twin goes to its model's handler. By exact class: a dict lookup,
        # where isinstance() through pydantic's metaclass would cost more per event.
        for twin, model in _TWINS.items():
            if model in handlers:
                handlers[twin] = handlers[model]
        self.handlers = handlers

    def feed(self, event: Any, data: bytes) -> None:
        """One event, as its model or lax twin, and its data."""
        seq = event.sequence_number
        if seq is not None:
            self.seq = seq
        handler = self.handlers.get(event.__class__)
        if handler is not None:
            handler(event, data)

    def feed_object(self, obj: Json, data: bytes) -> None:
        """An event that failed its model, as JSON (`reading.read_event`), through its lax
        twin; an event of a type no model has is nothing to this state."""
        try:
            event = self.lax_event(obj)
        except ValueError:
            return
        self.feed(event, data)

    @staticmethod
    def lax_event(obj: Json) -> Any:
        """The lax twin of an event's model, validated from its JSON; ValueError (a
        ValidationError) when its type is none of the models'."""
        return LAX_EVENT.validate_python(obj)

    # -- the handlers -------------------------------------------------------------------

    def text_deltas(self, event: m.TextDelta) -> list[str]:
        """Where the deltas of a content part go (a throwaway list once its item is done):
        the proxy's hot loop appends to it directly."""
        index, content = event.output_index, event.content_index
        if index is None or content is None or (index in self.done and not self.keep_deltas):
            return []
        parts = self.text.get(index)
        if parts is None:
            parts = self.text[index] = {}
            if event.item_id:
                self.text_item_ids[index] = event.item_id
        return parts.setdefault(content, [])

    def _on_text_delta(self, event: m.TextDelta, data: bytes) -> None:
        if isinstance(event.delta, str):
            self.text_deltas(event).append(event.delta)

    def _on_item_delta(self, event: m.ItemDelta, data: bytes) -> None:
        index, delta = event.output_index, event.delta
        if index is None or not isinstance(delta, str):
            return
        if index not in self.done or self.keep_deltas:
            self.args.setdefault(index, []).append(delta)

    def _on_content_part(self, event: m.ContentPartEvent, data: bytes) -> None:
        index, content, part = event.output_index, event.content_index, event.part
        if index is not None and content is not None and part and isinstance(part.type, str):
            self.part_types[(index, content)] = part.type

    def _on_output_item(self, event: m.OutputItemEvent, data: bytes) -> None:
        index = event.output_index
        if index is None:
            return
        if event.type == "response.output_item.added":
            self.added[index] = data
            return
        self.done[index] = data
        item_id = event.item.id if event.item is not None else None
        if isinstance(item_id, str) and item_id:
            self.done_ids.add(item_id)
        self.added.pop(index, None)
        if not self.keep_deltas:
            self.text.pop(index, None)
            self.args.pop(index, None)

    def _on_lifecycle(self, event: m.Lifecycle, data: bytes) -> None:
        # created is the base of an injected failure; in_progress stands in for it.
        if event.type != "response.created" and self.created is not None:
            return
        self.created = data
        response = event.response
        if response is not None:
            if isinstance(response.id, str):
                self.response_id = response.id
            if isinstance(response.model, str):
                self.model = self.report.model = response.model

    def _on_error(self, event: m.ErrorEvent, data: bytes) -> None:
        """The code and message, top-level as OpenAI's API documents the `error` event,
        else nested in `error` (as some upstreams send them)."""
        nested = event.error
        codes = [event.code] + ([nested.code, nested.type] if nested is not None else [])
        messages = [event.message] + ([nested.message] if nested is not None else [])
        code = next((c for c in codes if isinstance(c, str) and c), "server_error")
        message = next((t for t in messages if isinstance(t, str) and t), "upstream error")
        self.error = (code, message)

    def on_terminal(self, event: m.Terminal, data: bytes) -> None:
        self.terminal = event.type
        self.terminal_data = data
        response = event.response
        if response is None:
            return
        if isinstance(response.model, str):
            self.model = self.report.model = response.model
        if response.usage is not None:
            self.usage = self.report.usage = responses_usage(response.usage.model_dump())
        error = response.error
        if error is not None and (error.code or error.message):
            self.failure = (error.code or "error", error.message or "-")

    # -- what it built -------------------------------------------------------------------

    def streamed(self) -> bool:
        """Any item was streamed (added, done, or text deltas)."""
        return bool(self.done or self.added or self.text)

    def indexes(self) -> list[int]:
        """The output indexes of every item streamed, in order."""
        return sorted(self.done.keys() | self.added.keys() | self.text.keys() | self.args.keys())

    def item(self, index: int) -> Json | None:
        """The finished item at `index`, or one rebuilt from its added event and deltas."""
        if index in self.done:
            done = read_event(self.done[index]).obj or {}
            return done.get("item") if isinstance(done.get("item"), dict) else None
        item: Json | None = None
        if index in self.added:
            added = (read_event(self.added[index]).obj or {}).get("item")
            item = dict(added) if isinstance(added, dict) else None
        if item is None and index in self.text:
            item = {"type": "message", "role": "assistant"}
            if index in self.text_item_ids:
                item["id"] = self.text_item_ids[index]
        if item is None:
            return None
        item_type = item.get("type")
        if rebuildable(item):
            item["status"] = "completed"
        if item_type == "message":
            item["content"] = [
                self._part(index, ci, "".join(deltas))
                for ci, deltas in sorted(self.text.get(index, {}).items())
            ]
        elif item_type == "function_call" and index in self.args:
            item["arguments"] = "".join(self.args[index])
        return item

    def _part(self, index: int, content_index: int, text: str) -> Json:
        if self.part_types.get((index, content_index)) == "refusal":
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "text": text, "annotations": []}

    def items(self) -> dict[int, Json]:
        """The output items as a client holds them at the end, by output index: each one
        streamed (done, or rebuilt from its deltas), and those only the terminal lists."""
        items = {i: item for i in self.indexes() if (item := self.item(i)) is not None}
        ids = {item.get("id") for item in items.values()} - {None}
        for index, item in enumerate(self.terminal_output()):
            # The same item by position or by id (some upstreams renumber the final
            # output, trimmed recordings skip indexes).
            if isinstance(item, dict) and index not in items and item.get("id") not in ids:
                items[index] = item
        return dict(sorted(items.items()))

    def terminal_output(self) -> list[Any]:
        """The items of the terminal's `response.output` (decoded only when asked)."""
        if self.terminal_data is None:
            return []
        response = (read_event(self.terminal_data).obj or {}).get("response")
        output = response.get("output") if isinstance(response, dict) else None
        return output if isinstance(output, list) else []


def rebuildable(item: Json) -> bool:
    """An item whose content deltas rebuild (its `type` may be any JSON value)."""
    item_type = item.get("type")
    return isinstance(item_type, str) and item_type in REBUILDABLE
