"""The protocols codex-fix knows, in one table: each one's endpoints, terminal events,
event models and dialect.

The default filter, the protocol a request path names, the WebSocket path and the
telling of a protocol by its first event all derive from this table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .coercion import Coercer
from .dialects import Dialect
from .dialects.anthropic import AnthropicDialect
from .dialects.chat import ChatDialect
from .dialects.responses import ResponsesDialect
from .models import anthropic, chat, responses
from .models.base import Model
from .reading import read_event
from .report import StreamReport


class Protocol(StrEnum):
    RESPONSES = "responses"  # OpenAI Responses API and the Codex backend
    CHAT = "chat"  # Chat Completions
    ANTHROPIC = "anthropic"  # Anthropic Messages


DialectFactory = Callable[
    [StreamReport, Coercer[Any], logging.LoggerAdapter[logging.Logger]], Dialect
]


@dataclass(frozen=True, slots=True)
class Spec:
    protocol: Protocol
    endpoints: tuple[str, ...]  # the streaming endpoints' paths, on any host
    path_ending: str  # a request path ending so names the protocol (any host, any prefix)
    terminals: frozenset[str]  # event types that end a stream (Chat ends by finish_reason)
    events: TypeAdapter[Any]  # the event models, one union
    dialect: DialectFactory


SPECS: dict[Protocol, Spec] = {
    spec.protocol: spec
    for spec in (
        Spec(
            Protocol.RESPONSES,
            ("/backend-api/codex/responses", "/v1/responses"),
            "/responses",
            responses.TERMINALS,
            responses.RESPONSES_EVENT,
            ResponsesDialect,
        ),
        Spec(
            Protocol.CHAT,
            ("/chat/completions",),
            "/chat/completions",
            frozenset(),
            chat.CHAT_EVENT,
            ChatDialect,
        ),
        Spec(
            Protocol.ANTHROPIC,
            ("/v1/messages",),
            "/v1/messages",
            anthropic.TERMINALS,
            anthropic.ANTHROPIC_EVENT,
            AnthropicDialect,
        ),
    )
}


def endpoints_pattern(*protocols: Protocol) -> str:
    """A regular expression for the endpoints of `protocols` (all if none), as a URL path
    ends: `(/v1/responses|…)([?]|$)`."""
    specs = [SPECS[p] for p in protocols] if protocols else SPECS.values()
    return "(" + "|".join(path for spec in specs for path in spec.endpoints) + ")([?]|$)"


def protocol_for(path: str) -> Protocol | None:
    """The protocol a request path names, or None (the first event will tell)."""
    path = path.split("?", 1)[0].rstrip("/")
    for spec in SPECS.values():
        if path.endswith(spec.path_ending):
            return spec.protocol
    return None


# -- telling a protocol by its events ------------------------------------------------------

_ANTHROPIC_TYPES = anthropic.EVENT_TYPES - {"error"}  # every protocol has an `error`


def protocol_of(obj: dict[str, Any], event: str | None = None) -> Protocol | None:
    """The protocol of a decoded event (and its `event:` name), or None if it could be any."""
    for name in (obj.get("type"), event):
        if isinstance(name, str):
            if name.startswith("response."):
                return Protocol.RESPONSES
            if name in _ANTHROPIC_TYPES:
                return Protocol.ANTHROPIC
    if obj.get("object") == "chat.completion.chunk" or isinstance(obj.get("choices"), list):
        return Protocol.CHAT
    return None


class _Telling(Model):
    """The keys that tell a protocol, whatever their values.

    Only these are read: the rest of a first event (a `response.created` may carry long
    instructions) is skipped by the JSON parser, never built into Python objects.
    """

    type: Any = None
    object: Any = None
    choices: Any = None


class Sniffed(StrEnum):
    """What sniff() says of an event that no one protocol claims."""

    ANY = "any"  # a JSON object none claims (an `error`, an unknown type): fits the path's
    NOT_AN_EVENT = "not an event"  # not a JSON object: no protocol's event


def sniff(data: bytes) -> Protocol | Sniffed:
    """The protocol an event's JSON belongs to, or what else it is."""
    try:
        telling = _Telling.model_validate_json(data)
        obj = {"type": telling.type, "object": telling.object, "choices": telling.choices}
    except ValidationError:  # not a JSON object, or one pydantic cannot read
        reading = read_event(data)
        if not reading.is_object:
            return Sniffed.NOT_AN_EVENT
        obj = reading.obj or {"type": reading.type}
    return protocol_of(obj) or Sniffed.ANY
