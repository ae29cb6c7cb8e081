"""Why a stream ended, and the one table that turns a failure into each protocol's terms.

A dialect never invents error codes: it asks `describe()` for the failure (class and
message) and `RESPONSES` (one column per protocol) for the code the clients act on.
Codes follow what the Codex CLI does with them (see DESIGN.md): `server_error` is
retried, `server_is_overloaded` stops at once, `rate_limit_exceeded` waits the
"try again in Xs" of the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureClass(StrEnum):
    TRUNCATED = "truncated"  # upstream ended (cleanly or not) before a terminal event
    IDLE = "idle"  # upstream sent nothing for the idle timeout
    NO_HEADERS = "no_headers"  # upstream never answered the request


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


# The Responses column: `response.failed` `error.code` per failure class.
RESPONSES: dict[FailureClass, str] = {
    FailureClass.TRUNCATED: "server_error",
    FailureClass.IDLE: "server_error",
    FailureClass.NO_HEADERS: "server_error",
}
