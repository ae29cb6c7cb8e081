"""The Responses-API stream (OpenAI `/v1/responses`, Codex backend `/backend-api/codex/responses`).

Healthy frames leave as they came. The state kept is what a repair or an injected
`response.failed` needs: the `response.created` payload (id, model), the last
`sequence_number`, the `output_item.done` payloads, and the text / argument deltas of
items whose `done` has not come yet (dropped once it comes).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from ..coercion import Coercer
from ..failures import (
    EndCause,
    Failure,
    UpstreamEnded,
    classify,
    describe,
    done_without_terminal,
    responses_code,
)
from ..models import responses as m
from ..reading import Json, read_event
from ..report import StreamReport, printable, responses_usage
from ..sse import Frame
from .base import DONE, DialectBase, render

TERMINALS = frozenset({"response.completed", "response.failed", "response.incomplete"})
_USAGE_INTS = ("input_tokens", "output_tokens", "total_tokens")
_REBUILDABLE = frozenset({"message", "function_call"})


class ResponsesDialect(DialectBase):
    terminal_name = "response.completed"

    def __init__(
        self,
        report: StreamReport,
        coercer: Coercer[m.ResponsesEvent],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        super().__init__(report, log)
        self.coercer = coercer
        self._created: bytes | None = None  # data of response.created, the base of a failure
        self._response_id: str | None = None
        self._seq: int | None = None
        self._event_lines = True  # the stream names its events (`event:` lines)
        self._done: dict[int, bytes] = {}  # output_index -> data of output_item.done
        self._done_ids: set[str] = set()
        self._added: dict[int, bytes] = {}  # output_index -> data of output_item.added
        self._text: dict[int, dict[int, list[str]]] = {}  # output_index -> content_index -> deltas
        self._text_item_ids: dict[int, str] = {}
        self._part_types: dict[tuple[int, int], str] = {}
        self._args: dict[int, list[str]] = {}
        self._error: tuple[str, str] | None = None
        # Dispatch on the exact class: a dict lookup, where class patterns would cost an
        # isinstance() through pydantic's metaclass per case. Text deltas, the bulk of a
        # stream, are handled inline in on_events; terminals and unmodelled events are
        # left to on_frame.
        self._handlers: dict[type, Callable[[Any, bytes], None]] = {
            m.ItemDelta: self._on_item_delta,
            m.ContentPartEvent: self._on_content_part,
            m.OutputItemEvent: self._on_output_item,
            m.Lifecycle: self._on_lifecycle,
            m.ErrorEvent: self._on_error_model,
        }

    @property
    def error_pending(self) -> bool:
        return self._error is not None and self._terminal is None

    # -- frames ---------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> bytes:
        if self._terminal is not None:
            return self._after_terminal(frame)
        data = frame.data
        if data is None:
            return frame.raw  # comments, keepalives, empty frames
        if data == b"[DONE]":
            self._done_sent = True
            return self._inject(done_without_terminal(self.terminal_name)) + frame.raw
        if self.on_events((None if frame.event is None else frame.event.encode(),), (data,)):
            return frame.raw
        # What the fast path leaves: a terminal, or an event that fails its model.
        self.report.events += 1
        self.coercer.coerce(data, frame.event)  # a mismatch is a warning
        return self._on_json(frame, data)

    def on_events(self, names: Sequence[bytes | None], datas: Sequence[bytes]) -> int:
        """Every modelled event but a terminal leaves unchanged: handle those in a row.

        The hot loop of the proxy (one pass per upstream chunk), so written for speed:
        locals, exact-class checks, and the text-delta list cached across a run of
        deltas to the same content part. (Should the item finish in between, the cached
        list is no longer the item's: later deltas land in it unread, as they should.)
        """
        if self._terminal is not None:
            return 0
        if not self.report.events:  # the first event tells how injected ones are written
            self._event_lines = names[0] is not None
        # Any: the exact-class checks below narrow nothing for mypy.
        validate: Callable[[bytes], Any] = self.coercer.validate
        handlers = self._handlers
        text_delta, terminal = m.TextDelta, m.Terminal
        handled = 0
        index = content = -1
        deltas: list[str] = []
        last = None  # the last event handled: its number is the one to continue from
        for data in datas:
            try:
                model = validate(data)
            except ValidationError:
                break
            cls = model.__class__
            if cls is text_delta:
                if model.output_index != index or model.content_index != content:
                    index, content = model.output_index, model.content_index
                    deltas = self._text_deltas(model)
                deltas.append(model.delta)
            elif cls is terminal:
                if self._clean_terminal(model):
                    handled += 1
                break  # what follows a terminal is on_frame's to drop
            elif (handler := handlers.get(cls)) is not None:
                handler(model, data)
            last = model
            handled += 1
        if last is not None and last.sequence_number is not None:
            self._seq = last.sequence_number
        self.report.events += handled
        return handled

    def _text_deltas(self, event: m.TextDelta) -> list[str]:
        """Where the deltas of this content part go (a throwaway list once its item is done)."""
        index = event.output_index
        if index in self._done:
            return []
        parts = self._text.get(index)
        if parts is None:
            parts = self._text[index] = {}
            if event.item_id:
                self._text_item_ids[index] = event.item_id
        return parts.setdefault(event.content_index, [])

    def _on_item_delta(self, event: m.ItemDelta, data: bytes) -> None:
        if event.output_index not in self._done:
            self._args.setdefault(event.output_index, []).append(event.delta)

    def _on_content_part(self, event: m.ContentPartEvent, data: bytes) -> None:
        self._part_types[(event.output_index, event.content_index)] = event.part.type

    def _on_output_item(self, event: m.OutputItemEvent, data: bytes) -> None:
        if event.type == "response.output_item.added":
            self._added[event.output_index] = data
        else:
            self._item_done(event.output_index, event.item.id, data)

    def _on_lifecycle(self, event: m.Lifecycle, data: bytes) -> None:
        # created is the base of an injected failure; in_progress stands in for it.
        if event.type == "response.created" or self._created is None:
            self._created = data
            self._response_id = event.response.id
            self.report.model = event.response.model

    def _on_error_model(self, event: m.ErrorEvent, data: bytes) -> None:
        self._on_error(read_event(data).obj or {})

    def _on_json(self, frame: Frame, data: bytes) -> bytes:
        """What the fast path leaves, read as JSON: a terminal that needs repair, or an
        event that failed its model and still drives the state where it can be read.

        Whatever it holds (the coercion warning told what): a terminal is one by its type
        even when nothing else of it can be read; every other value is used only if it
        has the JSON type the protocol gives it.
        """
        obj, event_type, _ = read_event(data)
        if event_type in TERMINALS:
            if obj is None:  # unreadable, yet the client's terminal all the same
                self._terminal = event_type
                self.report.outcome = event_type.removeprefix("response.")
                return frame.raw
            return self._on_terminal(frame, obj, event_type)
        if obj is None:
            return frame.raw
        if (seq := _count(obj.get("sequence_number"))) is not None:
            self._seq = seq
        if event_type == "response.created":
            self._created = data
            response = obj.get("response")
            if isinstance(response, dict):
                if isinstance(response.get("id"), str):
                    self._response_id = response["id"]
                if isinstance(response.get("model"), str):
                    self.report.model = response["model"]
        elif event_type == "response.output_item.done":
            index, item = _count(obj.get("output_index")), obj.get("item")
            if index is not None:
                item_id = item.get("id") if isinstance(item, dict) else None
                self._item_done(index, item_id if isinstance(item_id, str) else None, data)
        elif event_type == "error":
            self._on_error(obj)
        return frame.raw

    def _item_done(self, output_index: int, item_id: str | None, data: bytes) -> None:
        self._done[output_index] = data
        if item_id:
            self._done_ids.add(item_id)
        self._added.pop(output_index, None)
        self._text.pop(output_index, None)
        self._args.pop(output_index, None)

    def _on_error(self, event: Json) -> None:
        """Keep an `error` event's code and message (top-level or nested) for the end."""
        nested = event.get("error")
        places = [event, nested] if isinstance(nested, dict) else [event]
        code = _first_str(places, "code") or _first_str(places[1:], "type") or "server_error"
        self._error = (code, _first_str(places, "message") or "upstream error")

    # -- terminal repairs -----------------------------------------------------------

    def _clean_terminal(self, event: m.Terminal) -> bool:
        """Take a terminal whose model holds all a repair would check, if none is needed.

        The model guarantees the response object, its id and valid usage; only `output`
        is left to check, and that is what the model carries. So a healthy terminal (and
        the full `output` in it can be large) is never decoded again.
        """
        response = event.response
        if event.type == "response.completed":
            output = response.output
            if output is None or (not output and self._streamed()):
                return False
            done, done_ids = self._done, self._done_ids
            for index, item in enumerate(output):
                if index not in done and item.id not in done_ids:
                    return False  # an output_item.done to synthesize
        self._terminal = event.type
        self.report.outcome = event.type.removeprefix("response.")
        if response.model is not None:
            self.report.model = response.model
        if response.usage is not None:
            self.report.usage = responses_usage(response.usage.model_dump())
        return True

    def _streamed(self) -> bool:
        return bool(self._done or self._added or self._text)

    def _on_terminal(self, frame: Frame, obj: Json, terminal: str) -> bytes:
        self._terminal = terminal
        self.report.outcome = terminal.removeprefix("response.")
        response = obj.get("response")
        if not isinstance(response, dict):
            response = obj["response"] = {}
            self._repaired("response", f"{terminal} had no response object")
        first_seq = _count(obj.get("sequence_number"))
        synthesized: list[Json] = []
        if terminal == "response.completed":
            synthesized = self._repair_output(response, first_seq)
        self._repair_id(response, terminal)
        self._repair_usage(response)
        self._record_usage(response)
        if not self.report.repairs:
            return frame.raw
        if synthesized and first_seq is not None:
            obj["sequence_number"] = first_seq + len(synthesized)  # they go before it
        try:
            return b"".join(self._render(e) for e in synthesized) + self._render(obj)
        except (RecursionError, ValueError) as exc:  # nested deeper than json.dumps goes
            self.log.warning(
                "the repaired %s cannot be written (%r): forwarded as it came", terminal, exc
            )
            return frame.raw

    def _repair_output(self, response: Json, first_seq: int | None) -> list[Json]:
        """Repairs 4a and 4b: a usable `output`, and a `done` event for each of its items."""
        output = response.get("output")
        if not isinstance(output, list) or (not output and self._streamed()):
            described = "missing" if "output" not in response else json.dumps(output)[:20]
            output = response["output"] = self._streamed_items()
            self._repaired(
                "output", f"rebuilt response.output ({described}) from {len(output)} streamed items"
            )
        missing = [
            (index, item)
            for index, item in enumerate(output)
            if isinstance(item, dict) and not self._arrived(index, item)
        ]
        if not missing:
            return []
        self._repaired(
            "output_item.done", f"synthesized {len(missing)} response.output_item.done events"
        )
        events = []
        for n, (index, item) in enumerate(missing):
            event: Json = {"type": "response.output_item.done"}
            if first_seq is not None:
                event["sequence_number"] = first_seq + n
            event.update(output_index=index, item=item)
            events.append(event)
        return events

    def _arrived(self, index: int, item: Json) -> bool:
        # By position or by id: some upstreams (OpenRouter) give the final items new ids,
        # trimmed recordings skip output indexes.
        item_id = item.get("id")
        return index in self._done or (isinstance(item_id, str) and item_id in self._done_ids)

    def _streamed_items(self) -> list[Json]:
        indexes = sorted(self._done.keys() | self._added.keys() | self._text.keys())
        items = []
        for index in indexes:
            item = self._item(index)
            if item is not None:
                items.append(item)
        return items

    def _item(self, index: int) -> Json | None:
        """The finished item at `index`, or one rebuilt from its added event and deltas."""
        if index in self._done:
            done = read_event(self._done[index]).obj or {}
            return done.get("item") if isinstance(done.get("item"), dict) else None
        item: Json | None = None
        if index in self._added:
            added = (read_event(self._added[index]).obj or {}).get("item")
            item = dict(added) if isinstance(added, dict) else None
        if item is None and index in self._text:
            item = {"type": "message", "role": "assistant"}
            if index in self._text_item_ids:
                item["id"] = self._text_item_ids[index]
        if item is None:
            return None
        if item.get("type") in _REBUILDABLE:
            item["status"] = "completed"
        if item.get("type") == "message":
            item["content"] = [
                self._part(index, ci, "".join(deltas))
                for ci, deltas in sorted(self._text.get(index, {}).items())
            ]
        elif item.get("type") == "function_call" and index in self._args:
            item["arguments"] = "".join(self._args[index])
        return item

    def _part(self, index: int, content_index: int, text: str) -> Json:
        if self._part_types.get((index, content_index)) == "refusal":
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "text": text, "annotations": []}

    def _repair_id(self, response: Json, terminal: str) -> None:
        if isinstance(response.get("id"), str):
            return
        response["id"] = self._response_id or _generated_id()
        self._repaired("id", f"{terminal} had no response.id; used {response['id']}")

    def _repair_usage(self, response: Json) -> None:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return
        if all(type(usage.get(k)) is int for k in _USAGE_INTS):
            return
        for key in ("input_tokens", "output_tokens"):
            usage[key] = _as_int(usage.get(key)) or 0
        total = _as_int(usage.get("total_tokens"))
        if total is None:
            total = usage["input_tokens"] + usage["output_tokens"]
        usage["total_tokens"] = total
        self._repaired("usage", "completed usage with integer token counts")

    def _record_usage(self, response: Json) -> None:
        usage = response.get("usage")
        if isinstance(response.get("model"), str):
            self.report.model = response["model"]
        if isinstance(usage, dict):
            self.report.usage = responses_usage(usage)

    # -- the end ----------------------------------------------------------------------

    def finish(self, cause: EndCause) -> bytes:
        out = b""
        if self._terminal is None:
            out = self._inject(describe(cause, self.terminal_name))
        elif isinstance(cause, UpstreamEnded) or self._done_sent:
            return b""  # the upstream ended its own stream: nothing to add
        if not self._done_sent:
            self._done_sent = True
            out += DONE
        return out

    def _inject(self, failure: Failure) -> bytes:
        """A `response.failed` in place of the terminal the upstream never sent."""
        if self._error is not None:
            upstream_code, message = self._error
            code = responses_code(upstream_code)
            self.report.outcome = f"injected: upstream {classify(upstream_code) or 'error'}"
        else:
            code, message = failure.frame.responses, failure.message
            self.report.outcome = f"injected: {failure.failure_class}"
        self.log.warning("injected response.failed (%s): %s", printable(code), printable(message))
        self._terminal = "response.failed"
        # openai-python's stream helper needs response.created before anything else.
        prefix = self._synthesized_created() if self._created is None else b""
        assert self._created is not None
        created = (read_event(self._created).obj or {}).get("response")
        response: Json = dict(created) if isinstance(created, dict) else {}
        if not isinstance(response.get("id"), str):
            response["id"] = self._response_id = self._response_id or _generated_id()
        failed: Json = {"status": "failed", "error": {"code": code, "message": message}}
        response.update(
            failed,
            incomplete_details=None,
            output=[item for index in sorted(self._done) if (item := self._item(index))],
        )
        event = self._event("response.failed", response)
        try:
            return prefix + self._render(event)
        except (RecursionError, ValueError):
            # What the upstream sent is nested deeper than json.dumps goes: the failure
            # without the fields copied from it.
            event["response"] = {"id": response["id"], "object": "response", **failed}
            return prefix + self._render(event)

    def _synthesized_created(self) -> bytes:
        self._response_id = self._response_id or _generated_id()
        response: Json = {
            "id": self._response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "output": [],
        }
        self._created = json.dumps({"type": "response.created", "response": response}).encode()
        return self._render(self._event("response.created", response))

    def _event(self, event_type: str, response: Json) -> Json:
        """A lifecycle event numbered after the last one seen (if the stream numbers them)."""
        event: Json = {"type": event_type}
        if self._seq is not None:
            self._seq += 1
            event["sequence_number"] = self._seq
        event["response"] = response
        return event

    def _render(self, event: Json) -> bytes:
        return render(event, str(event["type"]) if self._event_lines else None)


def _as_int(value: object) -> int | None:
    """A token count as the integer it means: 7, 7.0 and "7" are 7; anything else None."""
    if isinstance(value, float) and value.is_integer():
        return _count(int(value))
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return _count(int(value))
    return _count(value)


def _count(value: object) -> int | None:
    """A JSON integer that can count something (a number, an index, tokens), else None.

    Not a bool, not negative, and small enough that adding to it and writing it back stay
    cheap whatever the upstream sent.
    """
    return value if type(value) is int and 0 <= value < 2**63 else None


def _generated_id() -> str:
    return "resp_codexfix_" + secrets.token_hex(12)


def _first_str(places: list[Json], key: str) -> str | None:
    for place in places:
        if isinstance(place.get(key), str) and place[key]:
            return str(place[key])
    return None
