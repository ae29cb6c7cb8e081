"""pydantic models of Anthropic Messages stream events, discriminated on `type`.

Fields are what anthropic-sdk-python's stream accumulator reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from .base import Model, event_types, union_members


class Usage(Model):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(Model):
    id: str
    model: str | None = None
    usage: Usage | None = None


class MessageStart(Model):
    type: Literal["message_start"]
    message: Message


class ContentBlock(Model):
    type: str


class ContentBlockStart(Model):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class TextDelta(Model):
    type: Literal["text_delta"]
    text: str


class InputJsonDelta(Model):
    type: Literal["input_json_delta"]
    partial_json: str


class ThinkingDelta(Model):
    type: Literal["thinking_delta"]
    thinking: str


class SignatureDelta(Model):
    type: Literal["signature_delta"]
    signature: str


class CitationsDelta(Model):
    type: Literal["citations_delta"]
    citation: dict[str, Any]


BlockDelta = Annotated[
    TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta | CitationsDelta,
    Field(discriminator="type"),
]


class ContentBlockDelta(Model):
    type: Literal["content_block_delta"]
    index: int
    delta: BlockDelta


class ContentBlockStop(Model):
    type: Literal["content_block_stop"]
    index: int


class MessageDeltaBody(Model):
    stop_reason: str | None = None


class MessageDelta(Model):
    type: Literal["message_delta"]
    delta: MessageDeltaBody
    usage: Usage | None = None


class MessageStop(Model):
    type: Literal["message_stop"]


class Ping(Model):
    type: Literal["ping"]


class ErrorBody(Model):
    type: str
    message: str


class Error(Model):
    type: Literal["error"]
    error: ErrorBody


AnthropicEvent = Annotated[
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | Error,
    Field(discriminator="type"),
]

ANTHROPIC_EVENT: TypeAdapter[AnthropicEvent] = TypeAdapter(AnthropicEvent)
EVENT_TYPES = event_types(*union_members(AnthropicEvent))
TERMINALS = frozenset({"message_stop", "error"})
