"""pydantic models of Chat Completions stream chunks (`data:`-only frames).

A frame is a `chat.completion.chunk` or, mid-stream, an error object
(`{"error": {"message", "type", "param", "code"}}`, the shape openai-python raises
`APIError` for). Chunks carry no `type`, so the union is told apart by the `error` key.

An unknown `finish_reason` fails the model (a warning) and still finishes its choice: its
lax twin (`models.lax`) takes any string there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Discriminator, Field, Tag, TypeAdapter

from .base import Model
from .lax import LaxAs

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class FunctionDelta(Model):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(Model):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(Model):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    # Reasoning text of some upstreams (Groq, OpenRouter: `reasoning`; DeepSeek:
    # `reasoning_content`), one field for both: every field costs every chunk's validation.
    # No client relies on it, so it never fails the model: read only when it is a string.
    reasoning: Any = Field(None, validation_alias=AliasChoices("reasoning", "reasoning_content"))


class Choice(Model):
    index: int
    delta: Delta
    finish_reason: Annotated[FinishReason | None, LaxAs(str)] = None


class PromptTokensDetails(Model):
    cached_tokens: int | None = 0


class CompletionTokensDetails(Model):
    reasoning_tokens: int | None = 0


class Usage(Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class Chunk(Model):
    id: str
    model: str | None = None
    choices: list[Choice]
    usage: Usage | None = None


class ErrorBody(Model):
    message: str
    type: str | None = None
    code: str | int | None = None


class ErrorFrame(Model):
    error: ErrorBody


def _kind(value: Any) -> str:
    return "error" if isinstance(value, dict) and "error" in value else "chunk"


ChatEvent = Annotated[
    Annotated[Chunk, Tag("chunk")] | Annotated[ErrorFrame, Tag("error")],
    Discriminator(_kind),
]

CHAT_EVENT: TypeAdapter[ChatEvent] = TypeAdapter(ChatEvent)
