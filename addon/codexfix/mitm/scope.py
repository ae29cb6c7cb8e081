"""Which matched flows carry an SSE stream the fixer should handle."""

from __future__ import annotations

import logging
import re
from typing import Any

from mitmproxy import http
from pydantic import ValidationError

from ..decoding import DecodeError, TooLarge, decode_body
from ..models.base import Model
from ..protocols import endpoints_pattern

# The streaming endpoints of the three protocols on any host (protocols.SPECS): the Codex
# backend and Responses, Chat Completions (Azure's deployments too), Anthropic Messages.
# POST only: the Codex CLI's WebSocket upgrade is a GET on the same path.
DEFAULT_FILTER = f'~m POST & ~u "{endpoints_pattern()}"'


class _RequestKeys(Model):
    """The keys codex-fix reads of a request body: whether it asks for a stream, and the
    model. The JSON parser skips every other value without building it (a request may
    carry megabytes of input), and a nesting too deep for it is a ValidationError, never
    a RecursionError."""

    stream: Any = None
    model: Any = None


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
    body = _decoded_body(
        request, max_scan, log, 'for "stream": true; the response\'s Content-Type decides'
    )
    if body is None or b'"stream"' not in body:
        return False
    keys = _request_keys(body)
    if keys is None:
        log.debug('request body not read for "stream": not a JSON object')
        return False
    return keys.stream is True


def requested_model(
    request: http.Request, max_scan: int, log: logging.LoggerAdapter[logging.Logger]
) -> str | None:
    """The model a request body names (read as `wants_sse` reads it), if any."""
    body = _decoded_body(request, max_scan, log, "for its model")
    keys = _request_keys(body) if body is not None else None
    return keys.model if keys is not None and isinstance(keys.model, str) else None


def _decoded_body(
    request: http.Request, max_scan: int, log: logging.LoggerAdapter[logging.Logger], why: str
) -> bytes | None:
    """The request body decoded, at most `max_scan` bytes of it; None if it is empty, larger
    or does not decode."""
    raw = request.raw_content
    if not raw:
        return None
    encoding = request.headers.get("content-encoding")
    try:
        return decode_body(raw, encoding, max_scan)
    except TooLarge:
        log.info(
            "request body decodes to more than %d bytes (codexfix_max_request_scan): not read %s",
            max_scan,
            why,
        )
    except DecodeError as exc:
        log.debug("request body (content-encoding %s) not read: %s", encoding, exc)
    return None


# pydantic's JSON parser rejects a lone surrogate escape ("\ud83d"), which JSON allows and
# JavaScript's JSON.stringify writes. Every such escape becomes U+FFFD: the same length
# and the same structure (an escaped backslash before it stays a valid string too).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _request_keys(body: bytes) -> _RequestKeys | None:
    """The keys of a JSON object body; None if it is not read as one (invalid, another
    value, nested too deeply)."""
    try:
        return _RequestKeys.model_validate_json(body)
    except ValidationError:
        if not _SURROGATE_ESCAPE.search(body):
            return None
    try:  # only now: the substitution is a pass over a body of up to max_scan bytes
        return _RequestKeys.model_validate_json(_SURROGATE_ESCAPE.sub(rb"\\ufffd", body))
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
