"""pydantic models of Responses-API stream events (OpenAI and the Codex backend).

Each model names what real clients rely on (the Codex CLI, openai-python).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, TypeAdapter

from .base import Model as _Model
from .base import event_types


# Strict: JSON integers only. Lax validation would take "10", 10.0 or true, which the
# Codex CLI rejects; a terminal whose usage fails here goes through the usage repair.
class InputTokensDetails(_Model):
    cached_tokens: StrictInt = 0


class OutputTokensDetails(_Model):
    reasoning_tokens: StrictInt = 0


class Usage(_Model):
    """The Codex CLI fails "to parse ResponseCompleted" without these three integers."""

    input_tokens: StrictInt
    output_tokens: StrictInt
    total_tokens: StrictInt
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None


class OutputItem(_Model):
    type: str
    id: str | None = None


class ResponseError(_Model):
    code: str | None = None
    message: str


class Response(_Model):
    id: str
    status: str | None = None
    model: str | None = None
    output: list[OutputItem] | None = None
    usage: Usage | None = None
    error: ResponseError | None = None


# A number codex-fix continues (an injected event takes the next one), so bounded: the
# next one must still be a number every client reads.
SequenceNumber = Annotated[int, Field(ge=0, le=2**53)]


class _Event(_Model):
    sequence_number: SequenceNumber | None = None  # absent in the 2025-03 shape


class Lifecycle(_Event):
    type: Literal["response.created", "response.in_progress", "response.queued"]
    response: Response


class Terminal(_Event):
    type: Literal["response.completed", "response.failed", "response.incomplete"]
    response: Response


class OutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class ContentPart(_Model):
    type: str


class ContentPartEvent(_Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    output_index: int
    content_index: int
    part: ContentPart


class TextDelta(_Event):
    type: Literal[
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
    ]
    item_id: str | None = None
    output_index: int
    content_index: int
    delta: str


class TextDone(_Event):
    type: Literal[
        "response.output_text.done",
        "response.refusal.done",
        "response.reasoning_text.done",
    ]
    output_index: int
    content_index: int


class AnnotationAdded(_Event):
    type: Literal["response.output_text.annotation.added"]
    output_index: int
    content_index: int
    annotation: dict[str, Any]


class ItemDelta(_Event):
    """Deltas that belong to a whole item (tool-call arguments, patches, custom input)."""

    type: Literal[
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.apply_patch_call_operation_diff.delta",
    ]
    output_index: int
    delta: str


class ItemDone(_Event):
    type: Literal[
        "response.function_call_arguments.done",
        "response.custom_tool_call_input.done",
        "response.apply_patch_call_operation_diff.done",
    ]
    output_index: int


class SummaryPart(_Event):
    type: Literal["response.reasoning_summary_part.added", "response.reasoning_summary_part.done"]
    output_index: int
    summary_index: int


class SummaryText(_Event):
    type: Literal["response.reasoning_summary_text.delta", "response.reasoning_summary_text.done"]
    output_index: int
    summary_index: int


class ToolCallProgress(_Event):
    type: Literal[
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
        "response.image_generation_call.completed",
    ]
    output_index: int


class ErrorBody(_Model):
    type: str | None = None
    code: str | None = None
    message: str | None = None


class ErrorEvent(_Event):
    """`error`: the code and message are top-level, or nested in `error` (both are seen)."""

    type: Literal["error"]
    code: str | None = None
    message: str | None = None
    error: ErrorBody | None = None


ResponsesEvent = Annotated[
    Lifecycle
    | Terminal
    | OutputItemEvent
    | ContentPartEvent
    | TextDelta
    | TextDone
    | AnnotationAdded
    | ItemDelta
    | ItemDone
    | SummaryPart
    | SummaryText
    | ToolCallProgress
    | ErrorEvent,
    Field(discriminator="type"),
]

RESPONSES_EVENT: TypeAdapter[ResponsesEvent] = TypeAdapter(ResponsesEvent)

# The events that end a stream.
TERMINALS = event_types(Terminal)
