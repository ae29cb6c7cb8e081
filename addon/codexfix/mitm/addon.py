"""The mitmproxy addon: options, flow matching, hooks. The work happens in the core."""

from __future__ import annotations

import logging
import os
import time
import weakref
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from mitmproxy import command, ctx, exceptions, flowfilter, http
from mitmproxy.utils import human

from ..capture import Capture, FlowFacts
from ..coercion import UnknownTypes
from ..decoding import Bounded, decoder_for
from ..fixer import Limits, StreamFixer
from ..protocols import protocol_for
from ..report import Ending, Outcome
from . import shim
from .scope import DEFAULT_FILTER, identity_encoded, is_sse_response, requested_model, wants_sse
from .stream import FlowStream
from .summary import FlowLog, Stats, flow_log, summary

log = logging.getLogger("codexfix")

_MATCHED = "codexfix.matched"
_SSE_REQUEST = "codexfix.sse_request"


class Settings(NamedTuple):
    """Options, parsed and validated."""

    filter: flowfilter.TFilter
    limits: Limits
    header_timeout: float
    keep_body: int | None  # None: "auto"
    capture_dir: Path | None
    max_decoded_size: int
    max_request_scan: int


class CodexFix:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.unknown_types = UnknownTypes()
        # The stream of each handled flow, for its summary (not in flow.metadata, which
        # must stay serializable for flow files).
        self.streams: weakref.WeakKeyDictionary[http.HTTPFlow, FlowStream] = (
            weakref.WeakKeyDictionary()
        )
        self.stats = Stats()

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
        loader.add_option(
            "codexfix_keep_body",
            str,
            "auto",
            "How much of each streamed body to keep on the flow, both as received from the "
            "upstream and as sent to the client, for the UI and flow files (-w): a size "
            "(e.g. 4m; 0 = none), or 'auto': 4m when mitmweb or the console shows flows or -w "
            "saves them, else none.",
        )
        loader.add_option(
            "codexfix_max_decoded_size",
            str,
            "64m",
            "Most bytes an upstream body compressed despite accept-encoding: identity may "
            "decode to (a size, e.g. 64m); past it the stream ends with the injected failure "
            "and the upstream request is cancelled.",
        )
        loader.add_option(
            "codexfix_max_request_scan",
            str,
            "64m",
            'Most bytes of a request body (decoded) read to find "stream": true (a size, e.g. '
            "64m); a larger body does not decide, the response's Content-Type does.",
        )
        loader.add_option(
            "codexfix_capture_dir",
            str,
            "",
            "Directory to capture each handled stream to: the upstream and client SSE bodies "
            "exactly, and a JSON record with secrets redacted (empty = off).",
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
            keep_body=_keep_body(options.codexfix_keep_body),
            capture_dir=_capture_dir(options.codexfix_capture_dir),
            max_decoded_size=_bound("codexfix_max_decoded_size", options.codexfix_max_decoded_size),
            max_request_scan=_bound("codexfix_max_request_scan", options.codexfix_max_request_scan),
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
        if not flow.metadata.get(_MATCHED) or self.settings is None:
            return
        if not wants_sse(flow.request, self.settings.max_request_scan, flow_log(flow)):
            return
        flow.metadata[_SSE_REQUEST] = True
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
        decoding = None
        if not identity_encoded(response):
            encoding = response.headers["content-encoding"]
            decoder = decoder_for(encoding)
            if decoder is None:
                flog.warning(
                    "upstream sent content-encoding %r despite accept-encoding: identity, and "
                    "codex-fix cannot decode it: passing the stream through untouched",
                    encoding,
                )
                return
            flog.info("upstream sent content-encoding %r despite identity: decoding it", encoding)
            del response.headers["content-encoding"]
            decoding = (encoding, Bounded(decoder, self.settings.max_decoded_size))
        # The body length may change: drop content-length; an HTTP/1.1 client gets a chunked
        # body so that the end of the body is explicit (0\r\n\r\n), never a close.
        response.headers.pop("content-length", None)
        if flow.request.http_version == "HTTP/1.1":
            response.headers["transfer-encoding"] = "chunked"
        stream = self._new_stream(flow, flog, decoding)
        response.stream = stream

    def response(self, flow: http.HTTPFlow) -> None:
        stream = self.streams.pop(flow, None)
        if stream is not None:
            report = stream.fixer.report
            self._end(flow, stream, report.outcome or Outcome(Ending.ABORTED, "no end seen"))

    def error(self, flow: http.HTTPFlow) -> None:
        stream = self.streams.pop(flow, None)
        if stream is None:
            return
        # A stream whose terminal reached the client ended as that terminal says, though
        # the flow broke after it (the Codex CLI disconnects right after
        # `response.completed`); else the flow's error is how it ended.
        report = stream.fixer.report
        if report.outcome is None or not report.outcome.terminal:
            report.outcome = Outcome(Ending.ABORTED, flow.error.msg if flow.error else "?")
        stream.record()  # the stream never saw its end
        self._end(flow, stream, report.outcome)

    @command.command("codexfix.stats")  # type: ignore[untyped-decorator,misc,unused-ignore]
    def stats_command(self) -> str:
        """Counts of handled streams by protocol, outcome, repair and warning since start."""
        return self.stats.render()

    def _end(self, flow: http.HTTPFlow, stream: FlowStream, outcome: Outcome) -> None:
        flow_log(flow).info(summary(flow, stream, outcome))
        self.stats.add(stream.fixer.report, outcome)
        if stream.capture is not None:
            stream.capture.close(
                facts(flow, stream),
                stream.fixer.report,
                outcome=outcome,
                warnings=stream.fixer.budget.lines,
            )

    def _new_stream(
        self, flow: http.HTTPFlow, flog: FlowLog, decoder: tuple[str, Bounded] | None = None
    ) -> FlowStream:
        settings = self.settings
        assert settings is not None
        protocol = protocol_for(flow.request.path)
        # Read only if a failure must be shaped before the upstream named its model; a
        # weak reference: the flow holds the stream, which holds this.
        request = weakref.ref(flow.request)
        fixer = StreamFixer(
            protocol,
            settings.limits,
            flog,
            time.monotonic(),
            self.unknown_types,
            requested_model=lambda: _model_of(request(), settings.max_request_scan, flog),
        )
        capture = None
        if settings.capture_dir is not None:
            capture = Capture(settings.capture_dir, flow.request.timestamp_start, flow.id, flog)
        keep = self.keep_body()
        stream = FlowStream(fixer, flog, flow=flow, keep=keep, decoder=decoder, capture=capture)
        self.streams[flow] = stream
        return stream

    def keep_body(self) -> int:
        """How many bytes of a body (of a WebSocket's messages) to keep on the flow."""
        keep = None if self.settings is None else self.settings.keep_body
        return keep if keep is not None else _auto_keep_body()

    def _no_headers_response(self, flow: http.HTTPFlow, timeout: float) -> http.Response:
        """The client asked for a stream: it gets one, holding the injected failure."""
        if protocol_for(flow.request.path) is None:  # no protocol to shape it in
            message = f"codex-fix: upstream sent no response headers within {timeout:g}s"
            return http.Response.make(504, message, {"content-type": "text/plain"})
        stream = self._new_stream(flow, flow_log(flow))
        headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
        flow.response = http.Response.make(200, b"", headers)
        stream.no_response(timeout)
        flow.response.content = b"".join(stream(b""))  # the fixer's end, as for a stream
        return flow.response


AUTO_KEEP_BODY = 4 * 1024 * 1024


def _keep_body(value: str) -> int | None:
    if value.strip().lower() == "auto":
        return None
    try:
        size = human.parse_size(value)
    except ValueError:
        size = None
    if size is None or size < 0:
        raise exceptions.OptionsError(
            f"codexfix_keep_body: expected 'auto' or a size such as 4m or 0, got {value!r}"
        )
    return size


def _bound(name: str, value: str) -> int:
    try:
        size = human.parse_size(value)
    except ValueError:
        size = None
    if size is None or size <= 0:
        raise exceptions.OptionsError(f"{name}: expected a size such as 64m (> 0), got {value!r}")
    return size


def _auto_keep_body() -> int:
    """Keep bodies only where someone will look at them: a UI that holds flows (mitmweb,
    the console: their `view` addon) or a flow file (-w). A plain mitmdump would only hold
    the copies in memory until mitmproxy lets the flow go."""
    wanted = ctx.master.addons.get("view") is not None or getattr(
        ctx.options, "save_stream_file", None
    )
    return AUTO_KEEP_BODY if wanted else 0


def _capture_dir(value: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise exceptions.OptionsError(
            f"codexfix_capture_dir: cannot create {value!r}: {exc}"
        ) from None
    if not os.access(path, os.W_OK):
        raise exceptions.OptionsError(f"codexfix_capture_dir: {value!r} is not writable")
    return path


def facts(flow: http.HTTPFlow, stream: FlowStream) -> FlowFacts:
    """What a capture records of a flow beyond its report (redacted by the capture itself)."""
    request, response = flow.request, flow.response
    ttfb = stream.first_byte_at - request.timestamp_start if stream.first_byte_at else None
    return FlowFacts(
        method=request.method,
        url=request.pretty_url,
        http_version=request.http_version,
        request_headers=list(request.headers.items(multi=True)),
        request_body=request.raw_content,
        response_status=response.status_code if response else None,
        response_headers=list(response.headers.items(multi=True)) if response else (),
        duration_s=time.time() - request.timestamp_start,
        ttfb_s=ttfb,
    )


def _model_of(
    request: http.Request | None, max_scan: int, log: logging.LoggerAdapter[logging.Logger]
) -> str | None:
    return None if request is None else requested_model(request, max_scan, log)


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise exceptions.OptionsError(f"{name}: expected seconds, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise exceptions.OptionsError(f"{name}: must be a finite number >= 0, got {value!r}")
    return seconds
