"""Which matched flows carry an SSE stream the fixer should handle."""

from __future__ import annotations

import logging
import re
from typing import Any

from mitmproxy import http
from pydantic import ValidationError

from ..decoding import DecodeError, TooLarge, decode_body
from ..models.base import Model

# The streaming endpoints of the three protocols on any host: the Codex backend and
# Responses (`…/v1/responses`, OpenRouter's `/api/v1/responses`), Chat Completions
# (`…/chat/completions`, Azure's deployments too), Anthropic Messages (`…/v1/messages`).
# POST only: the Codex CLI's WebSocket upgrade is a GET on the same path.
DEFAULT_FILTER = (
    '~m POST & ~u "(/backend-api/codex/responses|/v1/responses|/chat/completions|/v1/messages)'
    '([?]|$)"'
)
_PROTOCOL_BY_PATH = re.compile(r"/(?:(responses)|chat/(completions)|v1/(messages))/?$")
_PROTOCOLS = ("responses", "chat", "anthropic")


def protocol_for(path: str) -> str | None:
    """The protocol a request path names, or None (the first event will tell)."""
    match = _PROTOCOL_BY_PATH.search(path.split("?", 1)[0])
    if match is None:
        return None
    return _PROTOCOLS[(match.lastindex or 1) - 1]  # the one group that matched


class _Streaming(Model):
    """The one key of a request body that asks for a stream. The JSON parser skips every
    other value without building it (a request may carry megabytes of input), and a
    nesting too deep for it is a ValidationError, never a RecursionError."""

    stream: Any = None


def wants_sse(
    request: http.Request, max_scan: int, log: logging.LoggerAdapter[logging.Logger]
) -> bool:
    """The request asks for an event stream: `Accept`, or `"stream": true` in its JSON body.

    The body is decoded here (the Codex CLI sends zstd on the ChatGPT path), at most
    `max_scan` bytes of it, never through mitmproxy's `get_content()`: that decodes all of
    it, and mitmproxy keeps the last decoded body cached for the life of the process.
    A body that is larger, does not decode or is not a JSON object does not decide.
    """
    if "text/event-stream" in request.headers.get("accept", ""):
        return True
    raw = request.raw_content
    if not raw:
        return False
    encoding = request.headers.get("content-encoding")
    try:
        body = decode_body(raw, encoding, max_scan)
    except TooLarge:
        log.info(
            "request body decodes to more than %d bytes (codexfix_max_request_scan): "
            'not read for "stream": true; the response\'s Content-Type decides',
            max_scan,
        )
        return False
    except DecodeError as exc:
        log.debug("request body (content-encoding %s) not read: %s", encoding, exc)
        return False
    if b'"stream"' not in body:
        return False
    asked = _stream_flag(body)
    if asked is None and _SURROGATE_ESCAPE.search(body):
        asked = _stream_flag(_SURROGATE_ESCAPE.sub(rb"\\ufffd", body))
    if asked is None:
        log.debug('request body not read for "stream": not a JSON object')
        return False
    return asked


# pydantic's JSON parser rejects a lone surrogate escape ("\ud83d"), which JSON allows and
# JavaScript's JSON.stringify writes. Every such escape becomes U+FFFD: the same length
# and the same structure (an escaped backslash before it stays a valid string too).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _stream_flag(body: bytes) -> bool | None:
    """Whether the top-level "stream" is true; None if the body is not read as a JSON object
    (invalid, another value, nested too deeply)."""
    try:
        return _Streaming.model_validate_json(body).stream is True
    except ValidationError:
        return None


def is_sse_response(response: http.Response, sse_requested: bool) -> bool:
    """An SSE response by its Content-Type, or one without any that was asked for as SSE."""
    content_type: str | None = response.headers.get("content-type")
    if content_type is None:
        return sse_requested  # the Codex backend may omit it
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def identity_encoded(response: http.Response) -> bool:
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() in ("", "identity")
