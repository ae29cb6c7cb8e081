"""The SSE content views, rendered by the installed mitmproxy (11 or 12) as its UIs do."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow

from codexfix import Limits, StreamFixer, UpstreamBroken
from codexfix.mitm.contentview import SSEView
from codexfix.reassembly import reassemble

from support.transcripts import FIXTURES

ALL = sorted(FIXTURES.glob("*/*.sse"))
MITMPROXY_12 = hasattr(contentviews, "Contentview")
LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})


@pytest.fixture
def tctx() -> Iterator[taddons.context]:
    """A mitmproxy context with the views registered (12 reads options while rendering)."""
    with taddons.context(SSEView()) as tctx:
        yield tctx


def sse_flow(
    body: bytes,
    info: dict[str, Any] | None = None,
    content_type: str | None = "text/event-stream",
) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request = http.Request.make(
        "POST", "https://chatgpt.com/backend-api/codex/responses", b'{"stream":true}'
    )
    flow.request.headers["content-type"] = "application/json"
    flow.response = http.Response.make(200, body)
    if content_type is not None:
        flow.response.headers["content-type"] = content_type
    if info is not None:
        flow.metadata["codexfix"] = info
    return flow


def info(protocol: str, upstream: bytes | None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "protocol": protocol,
        "outcome": "completed",
        "repairs": [],
        "notes": [],
        "warnings": [],
        "upstream": upstream,
        "upstream_truncated": False,
    }
    return base | extra


def show(flow: http.HTTPFlow, view: str = "auto", request: bool = False) -> str:
    """The text a user sees for the response (or request) body in `view`."""
    message = flow.request if request else flow.response
    assert message is not None
    if MITMPROXY_12:
        return str(contentviews.prettify_message(message, flow, view).text)
    _, lines, error = contentviews.get_message_content_view(view, message, flow)
    assert error is None
    return "\n".join("".join(str(text) for _, text in line) for line in lines)


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_transcripts_render_events_then_result_then_codexfix(
    tctx: taddons.context, path: Path
) -> None:
    body = path.read_bytes()
    text = show(sse_flow(body, info(path.parent.name, body)))
    result = reassemble(body, path.parent.name)
    lines = text.splitlines()
    assert lines[0] == f"events ({len(result.events)})"
    event_lines = [line for line in lines[1:] if not line.lstrip().startswith("^ ")]
    for event, line in zip(result.events, event_lines, strict=False):
        assert line.split()[0] == str(event.index)
        assert event.name in line
    sections = [line for line in lines if line in ("result", "codex-fix")]
    assert sections == ["result", "codex-fix"]
    assert f"  protocol {path.parent.name}, model {result.model}" in text
    for part in result.text + result.reasoning:
        assert all(f"    {line}" in lines for line in part.text.splitlines())
    for call in result.tool_calls:
        assert all(f"    {line}" in lines for line in call.arguments.splitlines())
    assert lines[-1] == f"  upstream body: {len(body)} bytes, identical to the client body"


def test_event_lines_show_the_fields_that_matter(tctx: taddons.context) -> None:
    body = (FIXTURES / "responses" / "codex-backend-gpt5-text.sse").read_bytes()
    lines = show(sse_flow(body, info("responses", body))).splitlines()
    assert lines[5] == (
        "    4 seq 4     response.output_item.added  out 1 message "
        "msg_0b51be2101d9d6220168d46959a238819b818ad1ebd2c39022 status=in_progress"
    )
    assert lines[7] == '    6 seq 6     response.output_text.delta  out 1/0 "Hey"'
    assert lines[19].endswith("status=completed usage in:2239 cached:2176 out:15 reasoning:0")
    result = lines[lines.index("result") :]
    assert result[1:5] == [
        "  protocol responses, model gpt-5-2025-08-07, outcome completed",
        "  text (output 1/0):",
        "    Hey! How can I help you today?",
        "  usage: input 2239 (cached 2176), output 15 (reasoning 0)",
    ]


def test_tool_calls_and_their_arguments_are_shown(tctx: taddons.context) -> None:
    body = (FIXTURES / "anthropic" / "claude-sonnet4-text-then-2-tool-use.sse").read_bytes()
    lines = show(sse_flow(body, info("anthropic", body))).splitlines()
    index = lines.index("  tool call (block 1): tool_use add toolu_01UYxUYC2zRPY8wiutnF48eP")
    assert json.loads(lines[index + 1]) == {"a": 2, "b": 3}
    assert "  protocol anthropic, model claude-sonnet-4-20250514, outcome tool_use" in lines
    assert lines[3].split() == ["2", "ping"]


def test_chat_stream_with_reasoning_and_error(tctx: taddons.context) -> None:
    body = (FIXTURES / "chat" / "groq-gpt-oss-midstream-event-error.sse").read_bytes()
    text = show(sse_flow(body, info("chat", body, outcome="injected: upstream error")))
    assert "  reasoning (choice 0):" in text
    assert "  error: tool_use_failed: Tool call validation failed" in text
    assert "  outcome: injected: upstream error" in text


def test_repairs_and_a_differing_upstream_body(tctx: taddons.context) -> None:
    """A cut upstream: the client got an injected response.failed, the view says so."""
    transcript = (FIXTURES / "responses" / "codex-backend-gpt5-text.sse").read_bytes()
    cut = transcript.index(b"event: response.output_text.done")
    upstream = transcript[: cut + 10]
    fixer = StreamFixer("responses", Limits(), LOG, now=0.0)
    client = fixer.feed(upstream, 0.0) + fixer.finish(UpstreamBroken("reset"))
    report = fixer.report
    meta = info(
        "responses",
        upstream,
        outcome=str(report.outcome),
        repairs=["output"],
        notes=report.notes,
        warnings=["coercion failed: event x"],
    )
    flow = sse_flow(client, meta)
    lines = show(flow).splitlines()
    codexfix = lines[lines.index("codex-fix") :]
    assert codexfix[1] == "  outcome: injected: truncated"
    assert codexfix[2:4] == ["  repairs:", "    output"]
    assert codexfix[4:6] == ["  notes:", "    dropped incomplete trailing event (10 bytes)"]
    assert codexfix[6:8] == ["  warnings:", "    coercion failed: event x"]
    assert codexfix[8] == (
        f"  upstream body: {len(upstream)} bytes, 16 frames; differs from the client body "
        f"({len(client)} bytes, 17 frames) from frame 15 on"
    )
    assert any("response.failed" in line and "error server_error" in line for line in lines)
    upstream_view = show(flow, "SSE upstream").splitlines()
    assert upstream_view[0] == "events (15)"
    assert "  incomplete last event: 10 bytes without a blank line" in upstream_view
    assert "outcome none (no terminal event)" in upstream_view[upstream_view.index("result") + 1]
    assert upstream_view[-1].startswith(f"  client body: {len(client)} bytes, 17 frames;")


def test_upstream_view_without_a_kept_body(tctx: taddons.context) -> None:
    flow = sse_flow(b"data: {}\n\n", info("chat", None))
    assert show(flow, "SSE upstream") == "no upstream body kept for this flow"
    assert show(flow).splitlines()[-1] == "  upstream body: not kept"


def test_odd_metadata_and_garbage_body_still_render(tctx: taddons.context) -> None:
    meta = {"protocol": 5, "repairs": "x", "warnings": 3, "upstream": "text"}
    text = show(sse_flow(b"data: {oops\n\nevent: ping\ndata: [1]\n\n", meta))
    assert "invalid JSON" in text
    assert "data is a JSON list, not an object" in text
    assert "  warnings:\n    3 (a count; the lines are in the log)" in text
    assert "  repairs: none" in text
    assert "truncated" not in text
    meta["client_truncated"] = True
    assert show(sse_flow(b"", meta)).endswith("the client body kept on the flow is truncated")


# -- which view mitmproxy picks --------------------------------------------------------------


def picked_sse(flow: http.HTTPFlow, request: bool = False) -> bool:
    return show(flow, request=request).startswith("events (")


def test_matched_flows_get_the_view_even_without_content_type(tctx: taddons.context) -> None:
    body = (FIXTURES / "responses" / "codex-backend-gpt5-text.sse").read_bytes()
    assert picked_sse(sse_flow(body, info("responses", body), content_type=None))
    assert picked_sse(sse_flow(body, info("responses", body)))


def test_other_event_streams_get_it_too_but_not_other_bodies(tctx: taddons.context) -> None:
    body = (FIXTURES / "chat" / "openai-gpt4o-finish-length.sse").read_bytes()
    assert picked_sse(sse_flow(body))  # no codex-fix metadata
    assert not picked_sse(sse_flow(body, content_type=None))
    error = sse_flow(b'{"error": {"message": "x"}}', info("responses", None), "application/json")
    assert not picked_sse(error)
    assert not picked_sse(sse_flow(body, info("responses", body)), request=True)


def test_priorities_order_matched_above_plain_sse(tctx: taddons.context) -> None:
    from codexfix.mitm.contentview import PRIORITY_MATCHED, PRIORITY_SSE, render_priority

    matched = sse_flow(b"", info("responses", None))
    assert render_priority("text/event-stream", matched, matched.response) == PRIORITY_MATCHED
    assert render_priority("text/event-stream", sse_flow(b""), None) == PRIORITY_SSE
    assert PRIORITY_MATCHED > PRIORITY_SSE > 1  # above mitmproxy's JSON view
    assert render_priority("application/json", matched, matched.request) == 0


def test_the_addon_registers_and_removes_its_views() -> None:
    def names() -> set[str]:
        if MITMPROXY_12:
            return set(contentviews.registry)
        return {view.name.lower() for view in contentviews.views}

    addon = SSEView()
    with taddons.context(addon) as tctx:
        assert {"sse", "sse upstream"} <= names()
        tctx.master.addons.remove(addon)
        # mitmproxy 12 cannot unregister a view; a later load replaces it by name.
        assert ({"sse", "sse upstream"} <= names()) == MITMPROXY_12
        tctx.master.addons.add(SSEView())
        assert {"sse", "sse upstream"} <= names()
