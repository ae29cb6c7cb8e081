"""The mitmproxy addon: options, flow matching, hooks. The work happens in the core."""

from __future__ import annotations

import logging
import time
import weakref
from functools import partial
from typing import Any, NamedTuple

from mitmproxy import ctx, exceptions, flowfilter, http

from ..coercion import UnknownTypes
from ..failures import NoResponse
from ..fixer import Limits, StreamFixer
from . import shim
from .scope import DEFAULT_FILTER, identity_encoded, is_sse_response, wants_sse
from .stream import FlowStream

log = logging.getLogger("codexfix")

_MATCHED = "codexfix.matched"
_SSE_REQUEST = "codexfix.sse_request"


class Settings(NamedTuple):
    """Options, parsed and validated."""

    filter: flowfilter.TFilter
    limits: Limits
    header_timeout: float


class FlowLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the flow it is about."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['flow'] if self.extra else '?'}] {msg}", kwargs


def flow_log(flow: http.HTTPFlow) -> FlowLog:
    return FlowLog(log, {"flow": f"{flow.id[:8]} {_where(flow.request)}"})


def _where(request: http.Request) -> str:
    """Host and path, without the query: a query may carry a key (`?key=…`)."""
    return request.host + request.path.split("?", 1)[0]


class CodexFix:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.unknown_types = UnknownTypes()
        # The stream of each handled flow, for its summary (not in flow.metadata, which
        # must stay serializable for flow files).
        self.streams: weakref.WeakKeyDictionary[http.HTTPFlow, FlowStream] = (
            weakref.WeakKeyDictionary()
        )

    def load(self, loader: Any) -> None:
        loader.add_option(
            "codexfix_filter",
            str,
            DEFAULT_FILTER,
            "mitmproxy filter expression selecting the flows codex-fix handles.",
        )
        loader.add_option(
            "codexfix_idle_timeout",
            str,
            "240",
            "Seconds without upstream bytes before a stream is ended with an injected failure "
            "and the upstream request is cancelled (decimals allowed; 0 = off). Below the "
            "Codex CLI's own 300 s.",
        )
        loader.add_option(
            "codexfix_terminal_grace",
            str,
            "1",
            "Seconds the upstream may keep a stream open after its terminal event before the "
            "client's response is ended (decimals allowed).",
        )
        loader.add_option(
            "codexfix_header_timeout",
            str,
            "60",
            "Seconds to wait for response headers of a streaming request before answering the "
            "client with a 504 error and cancelling the upstream request (decimals allowed; "
            "0 = off).",
        )
        loader.add_option(
            "codexfix_max_event_size",
            int,
            16 * 1024 * 1024,
            "Largest SSE event (bytes) held in memory; a larger one switches its stream to raw "
            "passthrough.",
        )

    def configure(self, updated: set[str]) -> None:
        if not any(name.startswith("codexfix_") for name in updated) and self.settings:
            return
        options = ctx.options
        try:
            flt = flowfilter.parse(options.codexfix_filter)
        except ValueError as exc:
            raise exceptions.OptionsError(
                f"codexfix_filter: invalid filter expression: {exc}"
            ) from None
        if flt is None:
            raise exceptions.OptionsError(
                f"codexfix_filter: invalid filter expression {options.codexfix_filter!r}"
            )
        if options.codexfix_max_event_size < 1024:
            raise exceptions.OptionsError("codexfix_max_event_size: must be at least 1024 bytes")
        self.settings = Settings(
            filter=flt,
            limits=Limits(
                max_event_size=options.codexfix_max_event_size,
                idle_timeout=_seconds("codexfix_idle_timeout", options.codexfix_idle_timeout),
                terminal_grace=_seconds("codexfix_terminal_grace", options.codexfix_terminal_grace),
            ),
            header_timeout=_seconds("codexfix_header_timeout", options.codexfix_header_timeout),
        )

    def running(self) -> None:
        shim.install()

    def done(self) -> None:
        # Also called when a hot reload replaces this instance: the new one re-installs.
        shim.uninstall()

    # -- hooks ------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.settings is None or not self.settings.filter(flow):
            return
        flow.metadata[_MATCHED] = True
        # The stream callable sees raw bytes: ask for an unencoded body.
        flow.request.headers["accept-encoding"] = "identity"

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(_MATCHED) or not wants_sse(flow.request):
            return
        flow.metadata[_SSE_REQUEST] = True
        assert self.settings is not None
        if self.settings.header_timeout > 0:
            timeout = self.settings.header_timeout
            shim.await_headers(flow, timeout, partial(self._no_headers_response, timeout=timeout))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if not flow.metadata.get(_MATCHED) or response is None or self.settings is None:
            return
        if not 200 <= response.status_code < 300:
            return
        if not is_sse_response(response, bool(flow.metadata.get(_SSE_REQUEST))):
            return
        flog = flow_log(flow)
        if not identity_encoded(response):
            flog.warning(
                "upstream sent content-encoding %r despite accept-encoding: identity; "
                "passing the stream through untouched",
                response.headers["content-encoding"],
            )
            return
        # The body length may change: drop content-length; an HTTP/1.1 client gets a chunked
        # body so that the end of the body is explicit (0\r\n\r\n), never a close.
        response.headers.pop("content-length", None)
        if flow.request.http_version == "HTTP/1.1":
            response.headers["transfer-encoding"] = "chunked"
        response.stream = self._new_stream(flow, flog)

    def response(self, flow: http.HTTPFlow) -> None:
        stream = self.streams.pop(flow, None)
        if stream is not None:
            flow_log(flow).info(summary(flow, stream, stream.fixer.report.outcome or "?"))

    def error(self, flow: http.HTTPFlow) -> None:
        stream = self.streams.pop(flow, None)
        if stream is not None:
            outcome = f"error: {flow.error.msg if flow.error else '?'}"
            flow_log(flow).info(summary(flow, stream, outcome))

    def _new_stream(self, flow: http.HTTPFlow, flog: FlowLog) -> FlowStream:
        assert self.settings is not None
        fixer = StreamFixer(
            "responses", self.settings.limits, flog, time.monotonic(), self.unknown_types
        )
        stream = self.streams[flow] = FlowStream(fixer, flog)
        return stream

    def _no_headers_response(self, flow: http.HTTPFlow, timeout: float) -> http.Response:
        """The client asked for a stream: it gets one, holding the injected failure."""
        stream = self._new_stream(flow, flow_log(flow))
        body = stream.fixer.finish(NoResponse(timeout))
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        return http.Response.make(200, body, headers)


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise exceptions.OptionsError(f"{name}: expected seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise exceptions.OptionsError(f"{name}: must be a finite number >= 0, got {value!r}")
    return seconds


def summary(flow: http.HTTPFlow, stream: FlowStream, outcome: str) -> str:
    """The one INFO line per matched stream."""
    request = flow.request
    status = flow.response.status_code if flow.response else "-"
    duration = time.time() - request.timestamp_start
    parts = [f"{request.method} {_where(request)} {status}"]
    report = stream.fixer.report
    ttfb = f"{stream.first_byte_at - request.timestamp_start:.2f}s" if stream.first_byte_at else "-"
    parts += [
        f"model={report.model or '-'}",
        f"events={report.events}",
        f"bytes={report.bytes_in}->{report.bytes_out}",
        f"duration={duration:.2f}s",
        f"ttfb={ttfb}",
        f"outcome={outcome}",
        f"repairs={','.join(report.repairs) or '-'}",
        f"warnings={report.warnings}",
    ]
    if report.usage:
        u = report.usage
        parts.append(
            f"tokens=in:{u.input_tokens} cached:{u.cached_tokens} "
            f"out:{u.output_tokens} reasoning:{u.reasoning_tokens}"
        )
    return "summary: " + " ".join(parts)
