"""Which matched flows carry an SSE stream the fixer should handle."""

from __future__ import annotations

import json
import re

from mitmproxy import http

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


def wants_sse(request: http.Request) -> bool:
    """The request asks for an event stream: `Accept`, or `"stream": true` in its JSON body.

    The body may be `content-encoding: zstd` (the Codex CLI on the ChatGPT path);
    mitmproxy decodes it.
    """
    if "text/event-stream" in request.headers.get("accept", ""):
        return True
    body = request.get_content(strict=False)
    if not body or b'"stream"' not in body:
        return False
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("stream") is True


def is_sse_response(response: http.Response, sse_requested: bool) -> bool:
    """An SSE response by its Content-Type, or one without any that was asked for as SSE."""
    content_type: str | None = response.headers.get("content-type")
    if content_type is None:
        return sse_requested  # the Codex backend may omit it
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def identity_encoded(response: http.Response) -> bool:
    encoding: str = response.headers.get("content-encoding", "identity")
    return encoding.strip().lower() in ("", "identity")
