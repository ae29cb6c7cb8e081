"""The Responses-API stream (OpenAI `/v1/responses`, Codex backend `/backend-api/codex/responses`).

Healthy frames leave as they came. The stream's state is the one reading of the protocol,
`accumulate.responses`; what is the dialect's own: the repairs of a terminal and the
`response.failed` injected in place of a terminal that never came.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from ..accumulate.responses import ResponsesAccumulator, rebuildable
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
from ..models.responses import TERMINALS
from ..reading import Json, read_event
from ..report import Ending, Outcome, StreamReport, printable
from ..sse import Frame
from .base import DONE, DialectBase, render

_USAGE_INTS = ("input_tokens", "output_tokens", "total_tokens")


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
        self.state = ResponsesAccumulator(report)
        self._event_lines = True  # the stream names its events (`event:` lines)
        # The event the fast path stopped at, and why (None: it is a terminal to repair),
        # so that on_frame, which takes over from there, does not validate it again.
        self._stopped_at: tuple[bytes, ValidationError | None] | None = None

    @property
    def error_pending(self) -> bool:
        return self.state.error is not None and self._terminal is None

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
        stopped = self._stopped_at
        if stopped is None or stopped[0] != data:
            if self.on_events((None if frame.event is None else frame.event.encode(),), (data,)):
                return frame.raw
            stopped = self._stopped_at
        self._stopped_at = None
        # What the fast path leaves: a terminal to repair, or an event that fails its model
        # (a warning), each validated once.
        self.report.events += 1
        if stopped is not None and stopped[1] is not None:
            self.coercer.warn(data, frame.event, stopped[1])
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
        state = self.state
        handlers = state.handlers
        text_delta, terminal = m.TextDelta, m.Terminal
        handled = 0
        index = content = -1
        deltas: list[str] = []
        last = None  # the last event handled: its number is the one to continue from
        for data in datas:
            try:
                model = validate(data)
            except ValidationError as exc:
                # Without its traceback, whose frame would hold this dialect: no cycle.
                self._stopped_at = (data, exc.with_traceback(None))
                break
            cls = model.__class__
            if cls is text_delta:
                if model.output_index != index or model.content_index != content:
                    index, content = model.output_index, model.content_index
                    deltas = state.text_deltas(model)
                deltas.append(model.delta)
            elif cls is terminal:
                if self._clean_terminal(model, data):
                    handled += 1
                else:
                    self._stopped_at = (data, None)
                break  # what follows a terminal is on_frame's to drop
            elif (handler := handlers.get(cls)) is not None:
                handler(model, data)
            last = model
            handled += 1
        if last is not None and last.sequence_number is not None:
            state.seq = last.sequence_number
        self.report.events += handled
        return handled

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
                self.report.outcome = _ending(event_type)
                return frame.raw
            return self._on_terminal(frame, obj, event_type)
        if obj is not None:
            self.state.feed_object(obj, data)
        return frame.raw

    # -- terminal repairs -----------------------------------------------------------

    def _clean_terminal(self, event: m.Terminal, data: bytes) -> bool:
        """Take a terminal whose model holds all a repair would check, if none is needed.

        The model guarantees the response object, its id and valid usage; only `output`
        is left to check, and that is what the model carries. So a healthy terminal (and
        the full `output` in it can be large) is never decoded again.
        """
        response = event.response
        if event.type == "response.completed":
            output = response.output
            if output is None or (not output and self.state.streamed()):
                return False
            done, done_ids = self.state.done, self.state.done_ids
            for index, item in enumerate(output):
                if index not in done and item.id not in done_ids:
                    return False  # an output_item.done to synthesize
        self._terminal = event.type
        self.report.outcome = _ending(event.type)
        self.state.on_terminal(event, data)
        return True

    def _on_terminal(self, frame: Frame, obj: Json, terminal: str) -> bytes:
        self._terminal = terminal
        self.report.outcome = _ending(terminal)
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
        self.state.on_terminal(self.state.lax_event(obj), frame.data or b"")
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
        if not isinstance(output, list) or (not output and self.state.streamed()):
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
        state = self.state
        return index in state.done or (isinstance(item_id, str) and item_id in state.done_ids)

    def _streamed_items(self) -> list[Json]:
        return [item for index in self.state.indexes() if (item := self.state.item(index))]

    def _repair_id(self, response: Json, terminal: str) -> None:
        if isinstance(response.get("id"), str):
            return
        response["id"] = self.state.response_id or _generated_id()
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

    # -- the end ----------------------------------------------------------------------

    def finish(self, cause: EndCause) -> bytes:
        out = b""
        if self._terminal is None:
            out = self.fail(cause)
        elif isinstance(cause, UpstreamEnded) or self._done_sent:
            return b""  # the upstream ended its own stream: nothing to add
        if not self._done_sent:
            self._done_sent = True
            out += DONE
        return out

    def fail(self, cause: EndCause) -> bytes:
        """The terminal in place of the one the upstream never sent (no `[DONE]`: the
        WebSocket transport has none); nothing once a terminal went out."""
        if self._terminal is not None:
            return b""
        return self._inject(describe(cause, self.terminal_name))

    def _inject(self, failure: Failure) -> bytes:
        """A `response.failed` in place of the terminal the upstream never sent."""
        state = self.state
        if state.error is not None:
            upstream_code, message = state.error
            code = responses_code(upstream_code)
            self.report.outcome = Outcome(
                Ending.INJECTED, f"upstream {classify(upstream_code) or 'error'}"
            )
        else:
            code, message = failure.frame.responses, failure.message
            self.report.outcome = Outcome(Ending.INJECTED, failure.failure_class)
        self.log.warning("injected response.failed (%s): %s", printable(code), printable(message))
        self._terminal = "response.failed"
        # openai-python's stream helper needs response.created before anything else.
        prefix = self._synthesized_created() if state.created is None else b""
        assert state.created is not None
        created = (read_event(state.created).obj or {}).get("response")
        response: Json = dict(created) if isinstance(created, dict) else {}
        if not isinstance(response.get("id"), str):
            response["id"] = state.response_id = state.response_id or _generated_id()
        failed: Json = {"status": "failed", "error": {"code": code, "message": message}}
        response.update(
            failed,
            incomplete_details=None,
            output=self._output_so_far(),
        )
        event = self._event("response.failed", response)
        try:
            rendered = self._render(event)
        except (RecursionError, ValueError):
            # What the upstream sent is nested deeper than json.dumps goes: the failure
            # without the fields copied from it.
            event["response"] = {"id": response["id"], "object": "response", **failed}
            rendered = self._render(event)
        state.on_terminal(state.lax_event(event), rendered)
        return prefix + rendered

    def _output_so_far(self) -> list[Json]:
        """The failure's `output`: the finished items, then those in progress that deltas
        rebuild, as `incomplete`. openai-node's `finalResponse()` and openai-python's failed
        event take their text from here; the Codex CLI reads only done events."""
        state, items = self.state, []
        for index in state.indexes():
            item = state.item(index)
            if item is None:
                continue
            if index not in state.done:
                if not rebuildable(item):
                    continue
                item["status"] = "incomplete"
            items.append(item)
        return items

    def _synthesized_created(self) -> bytes:
        state = self.state
        state.response_id = state.response_id or _generated_id()
        # `model` is a string in the AI SDK's schema of response.created: the request's.
        response: Json = {
            "id": state.response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": self.requested_model() or "",
            "output": [],
        }
        state.created = json.dumps({"type": "response.created", "response": response}).encode()
        return self._render(self._event("response.created", response))

    def _event(self, event_type: str, response: Json) -> Json:
        """A lifecycle event, numbered: every event codex-fix writes has a number (the AI
        SDK's schema of response.failed requires one), after the upstream's last, or, when
        the upstream numbered none, as the API would have: one per event, from 0."""
        state = self.state
        state.seq = self.report.events if state.seq is None else state.seq + 1
        return {"type": event_type, "sequence_number": state.seq, "response": response}

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

    Not a bool, not negative, and at most 2**53, the bound of the sequence number model:
    what every client (JavaScript's numbers too) reads exactly, and what adding to and
    writing back stays cheap for, whatever the upstream sent.
    """
    return value if type(value) is int and 0 <= value <= 2**53 else None


def _ending(terminal: str) -> Outcome:
    """The outcome a terminal event names: completed, failed or incomplete."""
    return Outcome(Ending(terminal.removeprefix("response.")))


def _generated_id() -> str:
    return "resp_codexfix_" + secrets.token_hex(12)
