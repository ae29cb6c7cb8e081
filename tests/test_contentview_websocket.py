"""The "Responses event" view of a Codex WebSocket's messages, rendered by the installed
mitmproxy (11 or 12) through the calls mitmweb and the console make for each message."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from codexfix import Limits
from codexfix.mitm.contentview import SSEView
from codexfix.mitm.contentview_sse import render
from codexfix.socket_fixer import SocketFixer
from codexfix.sse import SSEFramer

from support.transcripts import read

MITMPROXY_12 = hasattr(contentviews, "Contentview")
VIEW = "Responses event"
CREATE = b'{"type":"response.create","model":"gpt-5","input":[]}'
LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})


@pytest.fixture
def tctx() -> Iterator[taddons.context]:
    """A mitmproxy context with the views registered (12 reads options while rendering)."""
    with taddons.context(SSEView()) as tctx:
        yield tctx


def socket_flow(mode: str | None = "repair") -> http.HTTPFlow:
    """A Codex WebSocket after its `response.create`; `mode`: codex-fix's mark on it."""
    flow = tflow.twebsocketflow()
    flow.request.path = "/backend-api/codex/responses"
    assert flow.websocket is not None
    flow.websocket.messages = [WebSocketMessage(Opcode.TEXT, True, CREATE)]
    if mode is not None:
        flow.metadata["codexfix.websocket"] = mode
    return flow


def add(flow: http.HTTPFlow, content: bytes, **kwargs: bool) -> WebSocketMessage:
    """A server text message (unless `from_client`), appended as mitmproxy's relay does."""
    assert flow.websocket is not None
    from_client = kwargs.pop("from_client", False)
    kind = Opcode.BINARY if kwargs.pop("binary", False) else Opcode.TEXT
    message = WebSocketMessage(kind, from_client, content, **kwargs)
    flow.websocket.messages.append(message)
    return message


def shown(flow: http.HTTPFlow, message: WebSocketMessage, view: str = "auto") -> tuple[bool, str]:
    """Whether our view rendered the message, and the text a user sees for it."""
    if MITMPROXY_12:
        result = contentviews.prettify_message(message, flow, view)
        return result.view_name == VIEW, result.text
    description, lines, error = contentviews.get_message_content_view(view, message, flow)
    assert error is None
    text = "\n".join("".join(str(text) for _, text in line) for line in lines)
    return description.startswith(VIEW), text


def sse_event_lines(body: bytes) -> list[str]:
    """The event lines the "SSE" view shows for `body`, without their notes."""
    _, lines = render(body, None)
    events = [text for _, text in lines[1 : lines.index(("text", ""))]]
    return [line for line in events if not line.lstrip().startswith("^ ")]


def test_each_server_message_gets_the_line_its_event_gets_in_the_sse_view(
    tctx: taddons.context,
) -> None:
    body = read("codex-backend-gpt5-text.sse")
    framer = SSEFramer()
    events = [f.data for f in framer.feed(body) + framer.close() if f.data is not None]
    flow = socket_flow()
    messages = [add(flow, data) for data in events]
    expected = sse_event_lines(body)
    assert len(expected) == len(messages) == 19
    for position, (message, sse_line) in enumerate(zip(messages, expected, strict=True), 1):
        picked, text = shown(flow, message)
        assert picked
        # The index column is the message's position on the flow, not the frame's.
        assert text == f"{position:>5}{sse_line[5:]}"
    assert (
        shown(flow, messages[6])[1] == '    7 seq 6     response.output_text.delta  out 1/0 "Hey"'
    )


def test_the_view_is_picked_for_server_text_messages_of_handled_sockets_only(
    tctx: taddons.context,
) -> None:
    event = b'{"type":"response.created","sequence_number":0,"response":{"id":"resp_1"}}'
    for mode in ("repair", "passthrough"):
        flow = socket_flow(mode)
        assert shown(flow, add(flow, event))[0]
    for mode in (None, "downgraded"):
        flow = socket_flow(mode)
        assert shown(flow, add(flow, event)) == (False, event.decode())
    flow = socket_flow()
    assert flow.websocket is not None
    assert not shown(flow, flow.websocket.messages[0])[0]  # the client's response.create
    binary = add(flow, b"\x00\x01", binary=True)
    assert not shown(flow, binary)[0]
    # Chosen by name, the view still renders what it is not meant for.
    assert shown(flow, binary, VIEW)[1] == "binary message, 2 bytes: not an event"
    assert shown(flow, flow.websocket.messages[0], VIEW)[1].split()[:2] == ["0", "response.create"]


def test_replaced_and_written_messages_say_so(tctx: taddons.context) -> None:
    """A deltas-only request whose completed has no id, repaired as the shim does it: the
    original is marked dropped, what codex-fix sends instead is appended as injected."""
    fixer = SocketFixer(Limits(), LOG, 0.0)
    fixer.client_message(CREATE, True, 0.0)
    flow = socket_flow()
    for data in (
        b'{"type":"response.created","sequence_number":0,"response":{"id":"resp_1"}}',
        b'{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1",'
        b'"output_index":0,"content_index":0,"delta":"Hi"}',
        b'{"type":"response.completed","sequence_number":2,"response":{"status":"completed",'
        b'"output":[],"usage":{"input_tokens":1}}}',
    ):
        message = add(flow, data)
        replacement = fixer.server_message(data, True, 0.0)
        if replacement is not None:
            message.drop()
            for sent in replacement:
                add(flow, sent, injected=True)
    assert flow.websocket is not None
    texts = [shown(flow, m)[1].splitlines() for m in flow.websocket.messages[3:]]
    assert texts[0][0] == "    3 seq 2     response.completed  - status=completed"
    assert texts[0][1].strip() == (
        "replaced by codex-fix: the client got what codex-fix wrote in its place"
    )
    assert texts[1][0].startswith("    4 seq 2     response.output_item.done  out 0 message msg_1")
    assert texts[2][0].startswith("    5 seq 3     response.completed  resp_1 status=completed")
    assert [t[1].strip() for t in texts[1:]] == [
        "written by codex-fix: not sent by the upstream"
    ] * 2


def test_marks_codex_fix_did_not_make_are_not_claimed(tctx: taddons.context) -> None:
    event = b'{"type":"response.in_progress","sequence_number":1,"response":{"id":"r"}}'
    flow = socket_flow("passthrough")
    assert shown(flow, add(flow, event, dropped=True))[1].splitlines()[1].strip() == (
        "dropped: not sent to the client"
    )
    assert shown(flow, add(flow, event, injected=True))[1].splitlines()[1].strip() == (
        "injected: not sent by the server"
    )
    flow = socket_flow("repair")
    client = add(flow, CREATE, from_client=True, dropped=True)
    assert shown(flow, client, VIEW)[1].splitlines()[1].strip() == "dropped: not sent to the server"


def test_the_index_follows_the_messages_kept_on_the_flow(tctx: taddons.context) -> None:
    flow = socket_flow()
    assert flow.websocket is not None
    messages = [add(flow, b'{"type":"response.in_progress"}') for _ in range(4)]
    assert shown(flow, messages[3])[1].split()[0] == "4"
    del flow.websocket.messages[:2]  # the shim trims the oldest past codexfix_keep_body
    assert shown(flow, messages[3])[1].split()[0] == "2"
    flow.websocket.messages.remove(messages[3])
    assert shown(flow, messages[3])[1].split()[0] == "0"  # no longer on the flow


def test_garbage_and_line_breaks_render_without_failing(tctx: taddons.context) -> None:
    flow = socket_flow()
    assert "^ invalid JSON" in shown(flow, add(flow, b"{oops"))[1]
    assert "^ data is a JSON list, not an object" in shown(flow, add(flow, b"[1]"))[1]
    assert "invalid JSON" in shown(flow, add(flow, b""))[1]
    broken = b'{"type":"response.created",\r"sequence_number":7,\r\n"response":\n{"id":"r"}}'
    assert shown(flow, add(flow, broken))[1] == "    4 seq 7     response.created  r"


def test_the_addon_registers_the_view() -> None:
    with taddons.context(SSEView()):
        if MITMPROXY_12:
            assert VIEW.lower() in contentviews.registry
        else:
            assert contentviews.get(VIEW) is not None
