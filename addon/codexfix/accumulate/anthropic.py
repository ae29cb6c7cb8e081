"""The one reading of an Anthropic Messages stream: the state its events build.

Every consumer feeds the same accumulator: the proxy's dialect (which adds only its
injected `error` event and the `event:` lines of data-only frames) and the read-back for
people (content view, replay). It is fed validated models, the strict ones or, for an
event that failed its model, their lax twins (`models.lax`: a field that does not fit is
None), so every handler reads a value only when it has the type the protocol gives it.

Kept: the message's id and model, the usage, the last `stop_reason`, the stream's
terminal (the first `message_stop` or `error`) and, when asked (`keep_deltas`: the
read-back), the content blocks: the data of each `content_block_start` (its block is
decoded only when asked) and the text, thinking and tool-input deltas of each block. A
block event without an integer `index` belongs to no block.

Usage is read as anthropic-sdk-python's stream accumulator reads it: `message_start`
carries the first counts and each `message_delta` cumulative ones; a count the event
gives (0 included) is the count, one it leaves out or sets to null keeps its value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..models import anthropic as m
from ..models.lax import lax, lax_union
from ..reading import Json, read_event
from ..report import StreamReport, Usage

LAX_EVENT, _TWINS = lax_union(m.AnthropicEvent)
# The field of a block delta that holds the block's streamed content, by exact class.
_DELTA_TEXT: dict[type, str] = {}
for _model, _field in ((m.TextDelta, "text"), (m.ThinkingDelta, "thinking")):
    _DELTA_TEXT[_model] = _DELTA_TEXT[lax(_model, event=True)] = _field
_DELTA_TEXT[m.InputJsonDelta] = _DELTA_TEXT[lax(m.InputJsonDelta, event=True)] = "partial_json"
_ERRORS = frozenset({m.Error, lax(m.Error, event=True)})


class AnthropicError(NamedTuple):
    """An `error` event's error: what of it has the type the protocol gives it."""

    type: str | None
    message: str | None

    @classmethod
    def of(cls, event: m.Error) -> AnthropicError:
        body = event.error
        return cls(None, None) if body is None else cls(body.type, body.message)

    def __str__(self) -> str:
        return f"{self.type or 'error'}: {self.message or '-'}"


class AnthropicAccumulator:
    def __init__(self, report: StreamReport | None = None, *, keep_deltas: bool = False) -> None:
        self.report = report or StreamReport(None)  # its model and usage are kept current
        self.message_id: str | None = None
        self.model: str | None = None
        self.usage: Usage | None = None
        self.starts: dict[int, bytes] = {}  # index -> data of content_block_start
        self.deltas: dict[int, list[str]] = {}  # index -> text / thinking / input deltas
        self.stop_reason: str | None = None
        self.terminal: str | None = None  # the type of the first message_stop or error
        self.error: AnthropicError | None = None  # the error that ended the stream
        # Each event's handler, by the exact class of its model or lax twin (a dict lookup,
        # where isinstance() through pydantic's metaclass would cost more per event). What
        # streamed is for people: no repair of this protocol reads it, so the proxy lets it
        # go (no handler for its events); a read-back keeps it.
        self.handlers = _HANDLERS[keep_deltas]

    def feed(self, event: Any, data: bytes) -> None:
        """One event, as its model or lax twin, and its data."""
        handler = self.handlers.get(event.__class__)
        if handler is not None:
            handler(self, event, data)

    def feed_object(self, obj: Json, data: bytes) -> None:
        """An event that failed its model, as JSON (`reading.read_event`): its lax twin."""
        event = self.lax_event(obj)
        if event is not None:
            self.feed(event, data)

    @staticmethod
    def lax_event(obj: Json) -> Any:
        """The lax twin of an event's model, validated from its JSON; None when its type is
        none of the models' (such an event is nothing to this state)."""
        try:
            return LAX_EVENT.validate_python(obj)
        except ValueError:  # a ValidationError: no model has its type
            return None

    @staticmethod
    def error_of(event: Any) -> AnthropicError | None:
        """The error an `error` event (its model or lax twin) carries; None for others."""
        return AnthropicError.of(event) if event.__class__ in _ERRORS else None

    # -- the handlers -------------------------------------------------------------------

    def _on_message_start(self, event: m.MessageStart, data: bytes) -> None:
        message = event.message
        if message is None:
            return
        if message.id:
            self.message_id = message.id
        if message.model:
            self.model = self.report.model = message.model
        self._usage(message.usage)

    def _on_block_start(self, event: m.ContentBlockStart, data: bytes) -> None:
        if event.index is not None and event.content_block is not None:
            self.starts[event.index] = data

    def _on_block_delta(self, event: m.ContentBlockDelta, data: bytes) -> None:
        index, delta = event.index, event.delta
        name = _DELTA_TEXT.get(delta.__class__)
        if index is None or name is None:
            return
        text = getattr(delta, name)
        if isinstance(text, str):
            deltas = self.deltas.get(index)
            if deltas is None:
                deltas = self.deltas[index] = []
            deltas.append(text)

    def _on_message_delta(self, event: m.MessageDelta, data: bytes) -> None:
        if event.delta is not None and event.delta.stop_reason:
            self.stop_reason = event.delta.stop_reason
        self._usage(event.usage)

    def on_terminal(self, event: m.MessageStop | m.Error, data: bytes) -> None:
        if self.terminal is not None:
            return  # nothing counts after the stream's end
        self.terminal = event.type
        self.error = self.error_of(event)

    def _usage(self, usage: m.Usage | None) -> None:
        if usage is None:
            return
        current = self.usage or Usage()
        self.usage = self.report.usage = Usage(
            input_tokens=_count(usage.input_tokens, current.input_tokens),
            cached_tokens=_count(usage.cache_read_input_tokens, current.cached_tokens),
            output_tokens=_count(usage.output_tokens, current.output_tokens),
        )

    # -- what it built -------------------------------------------------------------------

    def indexes(self) -> list[int]:
        """The index of every content block streamed, in order."""
        return sorted(self.starts.keys() | self.deltas.keys())

    def block(self, index: int) -> Json:
        """The `content_block` of a block's start event ({} if none came, or not an object)."""
        data = self.starts.get(index)
        block = (read_event(data).obj or {}).get("content_block") if data is not None else None
        return block if isinstance(block, dict) else {}


def _count(given: int | None, current: int) -> int:
    return current if given is None else given


Handler = Callable[[AnthropicAccumulator, Any, bytes], None]


def _handlers(keep_deltas: bool) -> dict[type, Handler]:
    """The handlers of a state that keeps deltas or not; a twin's are its model's."""
    state = AnthropicAccumulator
    handlers: dict[type, Handler] = {
        m.MessageStart: state._on_message_start,
        m.MessageDelta: state._on_message_delta,
        m.MessageStop: state.on_terminal,
        m.Error: state.on_terminal,
    }
    if keep_deltas:
        handlers[m.ContentBlockStart] = state._on_block_start
        handlers[m.ContentBlockDelta] = state._on_block_delta
    handlers.update({twin: handlers[model] for twin, model in _TWINS.items() if model in handlers})
    return handlers


_HANDLERS = {keep_deltas: _handlers(keep_deltas) for keep_deltas in (False, True)}
