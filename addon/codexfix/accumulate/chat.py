"""The one reading of a Chat Completions stream: the state its chunks build.

Every consumer feeds the same accumulator: the proxy's dialect (which adds only its
injected error frame and the `[DONE]` it appends) and the read-back for people (content
view, replay). It is fed validated models, the strict ones or, for a frame that failed
its model, their lax twins (`models.lax`: a field that does not fit is None), so every
handler reads a value only when it has the type the protocol gives it.

Kept: per choice its `finish_reason` and, when asked (`keep_deltas`: the read-back), its
content, refusal and reasoning deltas and its tool calls (id, name and argument deltas,
by position); which choices are still open; the model the chunks name (kept in the
report), the last usage; the error that ended the stream. A choice without an integer
`index` is no choice of the answer (openai-python's models require one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import TypeAdapter

from ..models import chat as m
from ..models.lax import lax
from ..reading import Json
from ..report import StreamReport, Usage, chat_usage

_LAX_CHUNK, _LAX_ERROR = lax(m.Chunk), lax(m.ErrorFrame)
LAX_CHUNK: TypeAdapter[Any] = TypeAdapter(_LAX_CHUNK)
LAX_ERROR: TypeAdapter[Any] = TypeAdapter(_LAX_ERROR)
_CHUNKS = frozenset({m.Chunk, _LAX_CHUNK})
_ERROR_FRAMES = frozenset({m.ErrorFrame, _LAX_ERROR})


class ChatError(NamedTuple):
    """An error frame's `error`: what of it has the type the protocol gives it."""

    type: str | None
    code: str | None
    message: str | None

    @classmethod
    def of(cls, frame: m.ErrorFrame) -> ChatError:
        body = frame.error
        if body is None:  # a lax twin's: `error` is no object
            return cls(None, None, None)
        code = body.code if isinstance(body.code, str) else None
        return cls(body.type, code, body.message)

    def __str__(self) -> str:
        return f"{self.code or self.type or 'error'}: {self.message or '-'}"


@dataclass
class CallState:
    """One tool call of a choice, as its deltas build it."""

    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


@dataclass
class Streamed:
    """What streamed of each choice, by choice index (tool calls by choice and position)."""

    text: dict[int, list[str]] = field(default_factory=dict)
    refusal: dict[int, list[str]] = field(default_factory=dict)
    reasoning: dict[int, list[str]] = field(default_factory=dict)
    calls: dict[tuple[int, int], CallState] = field(default_factory=dict)


def is_error(obj: Json, name: str | None) -> bool:
    """A frame that failed its model is an error as openai-python tells one (a truthy
    `error`), or when the frame is named `error` (Groq's mid-stream errors)."""
    return bool(obj.get("error")) or name == "error"


class ChatAccumulator:
    def __init__(self, report: StreamReport | None = None, *, keep_deltas: bool = False) -> None:
        self.report = report or StreamReport(None)  # its model and usage are kept current
        # What streamed is for people: no repair of this protocol reads it, so the proxy
        # lets it go (None); a read-back keeps it.
        self.streamed = Streamed() if keep_deltas else None
        self.finish_reasons: dict[int, str] = {}  # choice -> its finish_reason (the last)
        self.open: set[int] = set()  # choices seen without a finish_reason yet
        self.usage: Usage | None = None
        self.error: ChatError | None = None  # the first error frame: the stream's end

    def feed(self, event: Any) -> None:
        """One frame, as its model or lax twin (the proxy's fast path calls `on_chunk`)."""
        cls = event.__class__
        if cls in _CHUNKS:
            self.on_chunk(event)
        elif cls in _ERROR_FRAMES:
            self.on_error(event)

    def feed_object(self, obj: Json, name: str | None = None) -> None:
        """A frame that failed its model, as JSON (`reading.read_event`) and the frame's
        event name, through its lax twin."""
        self.feed(self.lax_event(obj, name))

    @staticmethod
    def lax_event(obj: Json, name: str | None = None) -> Any:
        """The lax twin of a frame's model, validated from its JSON."""
        return (LAX_ERROR if is_error(obj, name) else LAX_CHUNK).validate_python(obj)

    @staticmethod
    def error_of(event: Any) -> ChatError | None:
        """The error an error frame (its model or lax twin) carries; None for a chunk."""
        return ChatError.of(event) if event.__class__ in _ERROR_FRAMES else None

    # -- the handlers -------------------------------------------------------------------

    def on_chunk(self, chunk: m.Chunk) -> None:
        """One chunk: the proxy's hot path (one call per chunk), so the common case, a
        content delta or none, is read inline and the rest in `_other_deltas`."""
        streamed = self.streamed
        if chunk.model:
            self.report.model = chunk.model
        finish_reasons = self.finish_reasons
        for choice in chunk.choices or ():
            index = choice.index
            if index is None:
                continue
            delta = choice.delta
            if streamed is not None and delta is not None:
                if delta.content:
                    text = streamed.text.get(index)
                    if text is None:
                        text = streamed.text[index] = []
                    text.append(delta.content)
                if delta.refusal or delta.tool_calls or delta.reasoning:
                    _other_deltas(streamed, index, delta)
            reason = choice.finish_reason
            if reason is not None:
                finish_reasons[index] = reason
                self.open.discard(index)
            elif index not in finish_reasons:
                self.open.add(index)
        if chunk.usage is not None:
            self.usage = self.report.usage = chat_usage(chunk.usage.model_dump())

    def on_error(self, frame: m.ErrorFrame) -> None:
        if self.error is None:
            self.error = ChatError.of(frame)

    # -- what it built -------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The model the chunks name (the last one named)."""
        return self.report.model

    @property
    def finished(self) -> bool:
        """Every choice seen has its finish_reason: the answer is complete (a choice that
        starts after the others finished opens it again)."""
        return bool(self.finish_reasons) and not self.open

    @property
    def terminal(self) -> str | None:
        """How the stream ended so far: `error`, `finish_reason`, or None."""
        if self.error is not None:
            return "error"
        return "finish_reason" if self.finish_reasons and not self.open else None


def _other_deltas(streamed: Streamed, index: int, delta: m.Delta) -> None:
    """What a choice's delta holds besides its content: refusal, reasoning, tool calls."""
    if delta.refusal:
        streamed.refusal.setdefault(index, []).append(delta.refusal)
    if delta.reasoning and isinstance(delta.reasoning, str):
        streamed.reasoning.setdefault(index, []).append(delta.reasoning)
    for tool_call in delta.tool_calls or ():
        call = streamed.calls.setdefault((index, tool_call.index or 0), CallState())
        if tool_call.id:
            call.id = tool_call.id
        function = tool_call.function
        if function is not None:
            if function.name:
                call.name = function.name
            if function.arguments is not None:
                call.arguments.append(function.arguments)
