"""The mitmproxy adapter in-process: options, scope, headers, the shim's install."""

from __future__ import annotations

import gc
import gzip
import json
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import brotli  # type: ignore[import-untyped]
import pytest
from mitmproxy import ctx, exceptions, http
from mitmproxy import flow as mflow
from mitmproxy.proxy.layers.http import HttpStream
from mitmproxy.proxy.layers.websocket import WebsocketLayer
from mitmproxy.test import taddons, tflow

from codexfix.mitm import shim
from codexfix.mitm.addon import CodexFix
from codexfix.mitm.stream import FlowStream
from codexfix.testing.bodies import compressed

from support.transcripts import events, read

CODEX_URL = "https://chatgpt.com/backend-api/codex/responses"


@contextmanager
def configured(**options: object) -> Iterator[CodexFix]:
    """The addon inside a mitmproxy test context, configured with its defaults."""
    addon = CodexFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, **options)
        yield addon


def flow_for(url: str = CODEX_URL, method: str = "POST", **headers: str) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make(method, url, b"{}", headers)
    return flow


def sse_response(
    status: int = 200, content_type: str | None = "text/event-stream"
) -> http.Response:
    response = http.Response.make(status, b"")
    response.headers["content-length"] = "10"  # as announced by an upstream
    if content_type:
        response.headers["content-type"] = content_type
    else:
        response.headers.pop("content-type", None)
    return response


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("codexfix_filter", "~u (", "codexfix_filter: invalid filter expression"),
        ("codexfix_idle_timeout", "soon", "codexfix_idle_timeout: expected seconds, got 'soon'"),
        ("codexfix_idle_timeout", "-1", "codexfix_idle_timeout: must be a finite number >= 0"),
        ("codexfix_terminal_grace", "nan", "codexfix_terminal_grace: must be a finite number"),
        ("codexfix_header_timeout", "inf", "codexfix_header_timeout: must be a finite number"),
        ("codexfix_max_event_size", 10, "codexfix_max_event_size: must be at least 1024"),
        ("codexfix_keep_body", "-1", "codexfix_keep_body: expected 'auto' or a size"),
        ("codexfix_keep_body", "lots", "codexfix_keep_body: expected 'auto' or a size"),
        ("codexfix_capture_dir", "/proc/no-such-dir", "codexfix_capture_dir: cannot create"),
        ("codexfix_max_decoded_size", "0", "codexfix_max_decoded_size: expected a size"),
        ("codexfix_max_decoded_size", "lots", "codexfix_max_decoded_size: expected a size"),
        ("codexfix_max_request_scan", "-1m", "codexfix_max_request_scan: expected a size"),
        ("codexfix_max_request_scan", "", "codexfix_max_request_scan: expected a size"),
    ],
)
def test_bad_option_values_are_rejected_naming_the_option(
    option: str, value: object, message: str
) -> None:
    addon = CodexFix()
    expected = pytest.raises(exceptions.OptionsError, match=message.replace("(", r"\("))
    with taddons.context(addon) as tctx, expected:
        tctx.configure(addon, **{option: value})


def test_options_are_parsed_into_limits() -> None:
    addon = CodexFix()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, codexfix_idle_timeout="2.5", codexfix_terminal_grace="0.25")
        assert addon.settings is not None
        assert addon.settings.limits.idle_timeout == 2.5
        assert addon.settings.limits.terminal_grace == 0.25
        assert addon.settings.max_decoded_size == addon.settings.max_request_scan == 64 * 2**20
        tctx.configure(addon, codexfix_max_decoded_size="4k", codexfix_max_request_scan="1g")
        assert addon.settings.max_decoded_size == 4096
        assert addon.settings.max_request_scan == 2**30


@pytest.mark.parametrize(
    ("url", "method", "matched"),
    [
        (CODEX_URL, "POST", True),
        ("https://api.openai.com/v1/responses", "POST", True),
        ("http://127.0.0.1:9/s/x/v1/responses?stream=true", "POST", True),
        (CODEX_URL, "GET", False),  # the WebSocket upgrade
        ("https://api.openai.com/v1/responses/resp_1", "GET", False),
        ("https://api.openai.com/v1/chat/completions", "POST", True),
        (
            "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=1",
            "POST",
            True,
        ),
        ("https://api.anthropic.com/v1/messages", "POST", True),
        ("https://api.anthropic.com/v1/messages/count_tokens", "POST", False),
        ("https://api.openai.com/v1/completions", "POST", False),
        ("https://example.com/v1/responses-archive", "POST", False),
    ],
)
def test_default_filter_scope(url: str, method: str, matched: bool) -> None:
    with configured() as addon:
        flow = flow_for(url, method, **{"accept-encoding": "gzip, br"})
        addon.requestheaders(flow)
        assert (flow.request.headers["accept-encoding"] == "identity") is matched


def test_unmatched_flow_keeps_its_headers() -> None:
    with configured() as addon:
        flow = flow_for("https://example.com/other", **{"accept-encoding": "gzip"})
        before = flow.request.headers.copy()
        addon.requestheaders(flow)
        addon.request(flow)
        flow.response = sse_response()
        addon.responseheaders(flow)
        assert flow.request.headers == before
        assert flow.response.headers["content-length"] == "10"
        assert flow.response.stream is False


def streamed(addon: CodexFix, flow: http.HTTPFlow, response: http.Response) -> bool:
    addon.requestheaders(flow)
    addon.request(flow)
    flow.response = response
    addon.responseheaders(flow)
    return isinstance(flow.response.stream, FlowStream)


def test_sse_response_gets_the_fixer_and_a_chunked_body() -> None:
    with configured() as addon:
        flow = flow_for()
        assert streamed(addon, flow, sse_response())
        assert "content-length" not in flow.response.headers
        assert flow.response.headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize(
    ("response", "accept", "expected"),
    [
        (sse_response(429), "text/event-stream", False),
        (sse_response(500), "text/event-stream", False),
        (sse_response(content_type="application/json"), "text/event-stream", False),
        (sse_response(content_type=None), "text/event-stream", True),  # Codex backend
        (sse_response(content_type=None), "*/*", False),
        (sse_response(content_type="text/event-stream; charset=utf-8"), "*/*", True),
    ],
)
def test_which_responses_are_streamed(response: http.Response, accept: str, expected: bool) -> None:
    with configured() as addon:
        assert streamed(addon, flow_for(accept=accept), response) is expected


def test_stream_true_in_a_zstd_body_asks_for_sse() -> None:
    with configured() as addon:
        flow = flow_for(**{"content-encoding": "zstd"})
        flow.request.content = json.dumps({"model": "gpt-5", "stream": True}).encode()
        assert flow.request.raw_content != flow.request.content  # really compressed
        assert streamed(addon, flow, sse_response(content_type=None))


@pytest.mark.parametrize("encoding", ["compress", "gzip, compress"])
def test_sse_in_an_encoding_without_a_decoder_passes_untouched_with_a_warning(
    encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    with configured() as addon:
        response = sse_response()
        response.headers["content-encoding"] = encoding
        assert not streamed(addon, flow_for(accept="text/event-stream"), response)
        assert response.headers["content-encoding"] == encoding
    assert f"content-encoding {encoding!r}" in caplog.text


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", lambda data: gzip.compress(data)),
        ("deflate", lambda data: zlib.compress(data)),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate, also seen
        ("zstd", lambda data: compressed(data, "zstd")),
        ("br", lambda data: brotli.compress(data)),
        ("gzip, br", lambda data: brotli.compress(gzip.compress(data))),  # br over gzip
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "zstd", "br", "gzip-then-br"],
)
def test_compressed_sse_is_decoded_incrementally(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = read("codex-backend-gpt5-text.sse")
    with configured() as addon:
        flow = flow_for(accept="text/event-stream")
        response = sse_response()
        response.headers["content-encoding"] = encoding
        assert streamed(addon, flow, response)
        assert "content-encoding" not in response.headers  # the client gets it decoded
        stream = response.stream
        assert isinstance(stream, FlowStream)
        encoded = compress(body)
        out = b"".join(b"".join(stream(encoded[i : i + 7])) for i in range(0, len(encoded), 7))
        out += b"".join(stream(b""))
        assert out == body
        assert str(stream.fixer.report.outcome) == "completed"


def test_an_undecodable_body_ends_the_stream_with_an_injected_failure() -> None:
    with configured() as addon:
        flow = flow_for(accept="text/event-stream")
        response = sse_response()
        response.headers["content-encoding"] = "gzip"
        assert streamed(addon, flow, response)
        stream = response.stream
        assert isinstance(stream, FlowStream)
        good = gzip.compress(read("codex-backend-gpt5-text.sse"))[:3000]
        head = b"".join(stream(good))
        assert stream.deadline() != 0.0
        assert stream(b"this is not gzip data at all") == []
        assert stream.deadline() == 0.0  # the shim ends it at once...
        assert stream.sooner  # ...as it is told to look again
        stream.expired(time.monotonic())
        failed = events(head + b"".join(stream(b"")))[-2]
        assert failed["type"] == "response.failed"
        assert "the gzip body does not decode" in failed["response"]["error"]["message"]


@pytest.mark.parametrize("shim_first", [True, False], ids=["shim-ends", "upstream-ends"])
def test_a_compressed_bomb_ends_the_stream_at_the_bound_with_an_injected_failure(
    shim_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    frames = read("codex-backend-gpt5-text.sse").split(b"\n\n")
    event = next(f for f in frames if b"output_text.delta" in f) + b"\n\n"
    bomb = compressed(event * (2**20 // len(event)), "zstd", 1024)  # 1 GiB in ~100 kB
    with configured(codexfix_max_decoded_size="4m") as addon:
        flow = flow_for(accept="text/event-stream")
        response = sse_response()
        response.headers["content-encoding"] = "zstd"
        assert streamed(addon, flow, response)
        stream = response.stream
        assert isinstance(stream, FlowStream)
        sent: list[bytes] = []
        for start in range(0, len(bomb), 16384):
            sent += stream(bomb[start : start + 16384])
            if stream.deadline() == 0.0:  # the shim ends it at once...
                break
        assert stream.sooner  # ...as it is told to look again
        assert start < len(bomb) // 2  # the rest of the bomb is never decoded
        assert stream(bomb[start:]) == []
        assert 3 * 2**20 < sum(map(len, sent)) <= 4 * 2**20
        if shim_first:
            stream.expired(time.monotonic())
        else:  # the upstream's end (or break) came before the shim's wake-up
            stream.upstream_broken("reset")
        failed = events(b"".join(stream(b"")))[-2]
    assert failed["type"] == "response.failed"
    why = f"the zstd body decodes to more than {4 * 2**20} bytes (codexfix_max_decoded_size)"
    assert why in failed["response"]["error"]["message"]
    # One line says why (the fixer then tells what it injected, as for any failure).
    lines = [r.getMessage() for r in caplog.records if "ending the stream" in r.getMessage()]
    assert len(lines) == 1 and why in lines[0] and caplog.records[0].levelname == "WARNING"


def test_a_terminal_tells_the_shim_that_the_deadline_came_closer() -> None:
    """The shim asks for a deadline only with no wake-up pending, or when told `sooner`:
    an idle deadline moves later with each chunk, the pending wake-up meets it; a grace
    shorter than a wake-up step (0.25 s) would be missed."""
    body = read("codex-backend-gpt5-text.sse")
    terminal = body.index(b"event: response.completed")
    with configured(codexfix_terminal_grace="0.05", codexfix_idle_timeout="100") as addon:
        flow = flow_for(accept="text/event-stream")
        response = sse_response()
        assert streamed(addon, flow, response)
        stream = response.stream
        assert isinstance(stream, FlowStream)
        assert stream(body[:terminal]) and not stream.sooner
        idle_deadline = stream.deadline()
        assert idle_deadline is not None and idle_deadline > time.monotonic() + 99
        assert stream(body[terminal:]) and stream.sooner
        grace_deadline = stream.deadline()
        assert grace_deadline is not None and grace_deadline < time.monotonic() + 0.06


def test_the_end_of_a_stream_is_kept_on_the_flow_for_the_ui_and_flow_files() -> None:
    body = read("codex-backend-gpt5-text.sse")
    cut = body[:20000]
    with configured(codexfix_keep_body="1000") as addon:
        flow = flow_for(accept="text/event-stream")
        assert streamed(addon, flow, sse_response())
        stream = flow.response.stream
        assert isinstance(stream, FlowStream)
        sent = b"".join(stream(cut)) + b"".join(stream(b""))
        info = flow.metadata["codexfix"]
        assert flow.response.raw_content == sent[:1000]
        assert info["upstream"] == cut[:1000] and info["upstream_truncated"]
        assert info["client_truncated"] and info["outcome"] == "injected: truncated"
        assert info["protocol"] == "responses"
        json.dumps({k: v for k, v in info.items() if k != "upstream"})  # plain values


@pytest.mark.parametrize("saving", [False, True])
def test_auto_keeps_bodies_only_when_flows_are_shown_or_saved(saving: bool) -> None:
    with configured() as addon:  # mitmdump: no view addon
        if saving:  # as -w does: the option comes from mitmproxy's save addon
            ctx.options.add_option("save_stream_file", str | None, None, "")  # type: ignore[arg-type]
            ctx.options.update(save_stream_file="flows.mitm")
        flow = flow_for(accept="text/event-stream")
        assert streamed(addon, flow, sse_response())
        stream = flow.response.stream
        assert isinstance(stream, FlowStream)
        sent = b"".join(stream(read("codex-backend-gpt5-text.sse"))) + b"".join(stream(b""))
        kept = flow.metadata["codexfix"]["upstream"]
        assert (flow.response.raw_content, kept) == ((sent, sent) if saving else (b"", None))


def test_stats_command_counts_outcomes_and_repairs() -> None:
    with configured() as addon:
        for _ in range(2):
            flow = flow_for(accept="text/event-stream")
            assert streamed(addon, flow, sse_response())
            stream = flow.response.stream
            assert isinstance(stream, FlowStream)
            stream(read("codex-backend-gpt5-text.sse")[:3000])
            stream(b"")
            addon.response(flow)
        stats = addon.stats_command()
    assert "streams: 2" in stats.splitlines()
    assert "outcome injected: truncated: 2" in stats.splitlines()
    assert "protocol responses: 2" in stats.splitlines()


def test_shim_installs_once_and_uninstalls_cleanly() -> None:
    """The HttpStream patch and its WebSocket part, together."""
    original, original_ws = HttpStream._handle_event, WebsocketLayer._handle_event
    shim.install()
    patched, patched_ws = HttpStream._handle_event, WebsocketLayer._handle_event
    shim.install()  # a hot reload: no double patch
    assert HttpStream._handle_event is patched is not original
    assert WebsocketLayer._handle_event is patched_ws is not original_ws
    shim.uninstall()
    assert HttpStream._handle_event is original
    assert WebsocketLayer._handle_event is original_ws
    shim.uninstall()
    assert HttpStream._handle_event is original
    assert WebsocketLayer._handle_event is original_ws


def test_a_header_wait_does_not_keep_its_flow_alive() -> None:
    with configured() as addon:
        flow = flow_for(accept="text/event-stream")
        addon.requestheaders(flow)
        addon.request(flow)
        assert flow in shim._header_waits
        ref = weakref.ref(flow)
        del flow
        gc.collect()
        assert ref() is None


def test_the_summary_line_escapes_what_the_upstream_named_its_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A forged second log line, a terminal escape and a lone surrogate in `model`.
    created = (
        b'event: response.created\ndata: {"type":"response.created","response":'
        b'{"id":"resp_1","model":"m\\n[00000000] summary: forged \\u001b[31m \\ud83d"}}\n\n'
    )
    with configured() as addon, caplog.at_level("INFO", logger="codexfix"):
        flow = flow_for(accept="text/event-stream")
        assert streamed(addon, flow, sse_response())
        stream = flow.response.stream
        assert isinstance(stream, FlowStream)
        stream(created)
        stream(b"")
        addon.response(flow)
    [line] = [r.getMessage() for r in caplog.records if "summary: POST" in r.getMessage()]
    assert "\n" not in line and "\x1b" not in line
    assert "model=m\\n[00000000] summary: forged \\x1b[31m \\ud83d " in line
    line.encode("utf-8")  # a UTF-8 log can write it


def test_the_header_timeout_answer_names_the_requested_model_and_numbers_its_events() -> None:
    # The AI SDK's schemas require `model` on response.created and `sequence_number` on
    # response.failed (issue 13): the model is the request's, read only now.
    with configured(codexfix_header_timeout="5") as addon:
        flow = flow_for(accept="text/event-stream")
        flow.request.content = json.dumps({"model": "gpt-5-codex", "stream": True}).encode()
        addon.requestheaders(flow)
        addon.request(flow)
        response = addon._no_headers_response(flow, timeout=5.0)
    created, failed, done = events(response.content or b"")
    assert created["response"]["model"] == "gpt-5-codex" and done == "[DONE]"
    assert (created["sequence_number"], failed["sequence_number"]) == (0, 1)
    assert failed["response"]["model"] == "gpt-5-codex"


def _ended_by_client(body: bytes) -> tuple[str, str]:
    """The summary line and stats of a stream the client left after `body`."""
    with configured() as addon:
        flow = flow_for(accept="text/event-stream")
        assert streamed(addon, flow, sse_response())
        stream = flow.response.stream
        assert isinstance(stream, FlowStream)
        stream(body)
        flow.error = mflow.Error("Client disconnected.")
        addon.error(flow)
        summary = stream.fixer.report
        return str(summary.outcome), addon.stats_command()


def test_a_client_leaving_after_the_terminal_reports_the_terminals_outcome() -> None:
    # The Codex CLI disconnects as soon as response.completed arrives.
    outcome, stats = _ended_by_client(read("codex-backend-gpt5-text.sse"))
    assert outcome == "completed"
    assert "outcome completed: 1" in stats.splitlines()


def test_a_client_leaving_mid_stream_reports_the_stream_aborted() -> None:
    body = read("codex-backend-gpt5-text.sse")
    outcome, stats = _ended_by_client(body[: body.index(b"event: response.completed")])
    assert outcome == "aborted: Client disconnected."
    assert "outcome aborted: 1" in stats.splitlines()
