"""Why a stream ended, and the one table that turns a failure into each protocol's terms.

A dialect never invents error codes: it asks `describe()` for the failure it must
report (class and message) and `ERROR_TABLE` for that class's frame fields in its own
protocol. Every failure the addon can see has a class: the transport failures it
detects itself, and the upstream's in-band errors, recognised by their code or type in
any of the three protocols (`classify()`). Adding a protocol adds a column to the
table, not a branch to each dialect.

The Responses codes follow what the Codex CLI does with them (DESIGN.md):
`server_error` is retried, `server_is_overloaded` stops at once,
`rate_limit_exceeded` waits the "try again in Xs" of the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureClass(StrEnum):
    # Detected by codex-fix.
    TRUNCATED = "truncated"  # upstream ended (cleanly or not) before a terminal event
    IDLE = "idle"  # upstream sent nothing for the idle timeout
    NO_HEADERS = "no_headers"  # upstream never answered the request
    # Reported by the upstream, in band.
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    CONTEXT_LENGTH = "context_length"
    QUOTA = "quota"
    AUTH = "auth"
    INVALID_REQUEST = "invalid_request"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """One row of the table: the error fields each protocol's clients act on."""

    responses: str  # response.failed error.code
    chat: tuple[str, str]  # error.type, error.code
    anthropic: str  # error.type


C = FailureClass
ERROR_TABLE: dict[FailureClass, ErrorFrame] = {
    C.TRUNCATED: ErrorFrame("server_error", ("server_error", "server_error"), "api_error"),
    C.IDLE: ErrorFrame("server_error", ("server_error", "timeout"), "timeout_error"),
    C.NO_HEADERS: ErrorFrame("server_error", ("server_error", "timeout"), "timeout_error"),
    C.RATE_LIMITED: ErrorFrame(
        "rate_limit_exceeded", ("rate_limit_exceeded", "rate_limit_exceeded"), "rate_limit_error"
    ),
    C.OVERLOADED: ErrorFrame(
        "server_is_overloaded", ("server_error", "server_is_overloaded"), "overloaded_error"
    ),
    C.CONTEXT_LENGTH: ErrorFrame(
        "context_length_exceeded",
        ("invalid_request_error", "context_length_exceeded"),
        "invalid_request_error",
    ),
    C.QUOTA: ErrorFrame(
        "insufficient_quota", ("insufficient_quota", "insufficient_quota"), "billing_error"
    ),
    C.AUTH: ErrorFrame(
        "invalid_api_key", ("invalid_request_error", "invalid_api_key"), "authentication_error"
    ),
    C.INVALID_REQUEST: ErrorFrame(
        "invalid_prompt",
        ("invalid_request_error", "invalid_request_error"),
        "invalid_request_error",
    ),
    C.SERVER_ERROR: ErrorFrame("server_error", ("server_error", "server_error"), "api_error"),
}

# Upstream codes and types, from all three protocols (and gateways that mix them), by
# class. The Anthropic `invalid_request_error` also covers a too-long prompt: the class
# of a code is what clients may do about it, and that is the same.
_ALIASES: dict[FailureClass, tuple[str, ...]] = {
    C.RATE_LIMITED: ("rate_limit_exceeded", "rate_limit_error", "rate_limited", "slow_down"),
    C.OVERLOADED: ("server_is_overloaded", "overloaded_error", "overloaded", "engine_overloaded"),
    C.CONTEXT_LENGTH: ("context_length_exceeded", "string_above_max_length"),
    C.QUOTA: ("insufficient_quota", "usage_not_included", "billing_error", "quota_exceeded"),
    C.AUTH: (
        "invalid_api_key",
        "authentication_error",
        "permission_error",
        "unauthorized",
        "forbidden",
    ),
    C.INVALID_REQUEST: (
        "invalid_request_error",
        "invalid_prompt",
        "not_found_error",
        "model_not_found",
        "cyber_policy",
        "tool_use_failed",
    ),
    C.SERVER_ERROR: ("server_error", "api_error", "internal_error", "timeout_error"),
}
_CLASS_OF: dict[str, FailureClass] = {
    alias: cls for cls, aliases in _ALIASES.items() for alias in aliases
}
# Codes the Codex CLI reads from `response.failed` as they are: never rewritten.
_RESPONSES_CODES = frozenset(
    {row.responses for row in ERROR_TABLE.values()}
    | {"slow_down", "usage_not_included", "cyber_policy"}
)


def classify(*codes: str | None) -> FailureClass | None:
    """The class of an upstream error, from the first of its codes/types that is known."""
    for code in codes:
        if code is not None and code in _CLASS_OF:
            return _CLASS_OF[code]
    return None


def responses_code(code: str) -> str:
    """The `response.failed` code for an upstream error code from any protocol.

    A Responses code is kept; a foreign one (a gateway relaying `overloaded_error`)
    becomes the Responses code of its class, so the Codex CLI acts on it; an unknown
    one is kept as it came.
    """
    if code in _RESPONSES_CODES:
        return code
    cls = classify(code)
    return code if cls is None else ERROR_TABLE[cls].responses


@dataclass(frozen=True, slots=True)
class UpstreamEnded:
    """The body ended cleanly (end of message)."""


@dataclass(frozen=True, slots=True)
class UpstreamBroken:
    """The transport failed: reset, incomplete chunked body, short content-length..."""

    detail: str


@dataclass(frozen=True, slots=True)
class UpstreamIdle:
    """No upstream byte for `seconds`; the proxy cancels the upstream request."""

    seconds: float


@dataclass(frozen=True, slots=True)
class GraceExpired:
    """The terminal event came, but the upstream kept the connection open."""

    seconds: float


@dataclass(frozen=True, slots=True)
class NoResponse:
    """No response headers within `seconds`; the proxy cancels the upstream request."""

    seconds: float


EndCause = UpstreamEnded | UpstreamBroken | UpstreamIdle | GraceExpired | NoResponse


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure codex-fix reports to the client in the stream's own protocol."""

    failure_class: FailureClass
    message: str

    @property
    def frame(self) -> ErrorFrame:
        return ERROR_TABLE[self.failure_class]


def describe(cause: EndCause, terminal: str) -> Failure:
    """The failure to inject when `cause` ended a stream before its `terminal` event."""
    match cause:
        case UpstreamBroken(detail):
            return Failure(
                FailureClass.TRUNCATED,
                f"codex-fix: upstream closed the stream before {terminal} ({detail})",
            )
        case UpstreamIdle(seconds):
            return Failure(
                FailureClass.IDLE,
                f"codex-fix: upstream sent nothing for {seconds:.1f}s before {terminal}; "
                "request cancelled",
            )
        case NoResponse(seconds):
            return Failure(
                FailureClass.NO_HEADERS,
                f"codex-fix: upstream sent no response headers within {seconds:g}s; "
                "request cancelled",
            )
        case _:
            return Failure(
                FailureClass.TRUNCATED,
                f"codex-fix: upstream closed the stream before {terminal} "
                "(clean end of body without a terminal event)",
            )


def done_without_terminal(terminal: str) -> Failure:
    return Failure(FailureClass.TRUNCATED, f"codex-fix: upstream sent [DONE] before {terminal}")
