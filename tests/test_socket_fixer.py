"""The Codex WebSocket, repaired in place (codexfix.socket_fixer), on messages.

Each server message is one Responses event through the dialect that serves SSE; these
tests hold the transport's own rules: requests from `response.create` to their end,
healthy messages untouched, repairs as messages, the injected failure only while a
request is in flight, and fail-open.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexfix.fixer import Limits
from codexfix.socket_fixer import Messages, SocketFixer, SocketRequest
from codexfix.sse import SSEFramer
from codexfix.testing.faults import payload

from support import hostile
from support.events import CREATED, USAGE, completed, delta, item_done, message, msg_added
from support.hostile import maybe_hostile
from support.transcripts import RESPONSES

LOG = logging.LoggerAdapter(logging.getLogger("codexfix.test"), {})
CREATE = b'{"type":"response.create","model":"gpt-5","input":[]}'
WARMUP = b'{"type":"response.create","model":"gpt-5","generate":false,"input":[]}'


def compact(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def transcript_messages(path: Path) -> list[bytes]:
    """A transcript's events as WebSocket messages: each frame's data."""
    framer = SSEFramer()
    block = framer.push(path.read_bytes()) + framer.push_final()
    return [
        f.data for f in framer.split(block, stream_start=True) if f.data not in (None, b"[DONE]")
    ]


class Socket:
    """A SocketFixer and what its client received."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.ended: list[SocketRequest] = []
        self.fixer = SocketFixer(limits or Limits(), LOG, 0.0, on_end=self.ended.append)
        self.received: list[bytes] = []
        self.now = 0.0

    def request(self, create: bytes = CREATE) -> None:
        self.fixer.client_message(create, True, self.now)

    def server(self, *messages: bytes, is_text: bool = True) -> list[Messages | None]:
        results = []
        for content in messages:
            self.now += 0.01
            out = self.fixer.server_message(content, is_text, self.now)
            self.received += [content] if out is None else out
            results.append(out)
        return results

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.received]


HEALTHY = [
    compact(CREATED),
    compact(msg_added(0, "msg_1")),
    compact(delta(0, "Hel", 2)),
    compact(delta(0, "lo", 3)),
    compact(item_done(0, message("msg_1", "Hello"), 4)),
    compact(completed(5, id="resp_1", output=[message("msg_1", "Hello")], usage=USAGE)),
]


@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.name)
def test_every_real_transcript_passes_as_the_same_messages(path: Path) -> None:
    """Byte-identical unless repaired; the request ends at its terminal or error (what
    follows an error passes as it came, between requests)."""
    sock = Socket()
    sock.request()
    messages = transcript_messages(path)
    results = sock.server(*messages)
    types = [json.loads(m).get("type") for m in messages]
    ends = {"response.completed", "response.failed", "response.incomplete", "error"}
    assert len(sock.ended) == int(bool(ends & set(types)))
    if not sock.ended or not sock.ended[0].report.repairs:
        assert results == [None] * len(messages) and sock.received == messages
    if sock.ended:
        end = next(i for i, t in enumerate(types) if t in ends)
        assert sock.ended[0].report.events == end + 1


def test_a_healthy_request_leaves_unchanged_and_ends_at_its_terminal() -> None:
    sock = Socket()
    sock.request()
    assert sock.fixer.deadline() == pytest.approx(240.0)
    assert sock.server(*HEALTHY) == [None] * len(HEALTHY)
    assert sock.received == HEALTHY
    (request,) = sock.ended
    assert (request.index, str(request.outcome), request.report.repairs) == (1, "completed", [])
    assert request.report.bytes_in == request.report.bytes_out == sum(map(len, HEALTHY))
    assert sock.fixer.current is None and sock.fixer.deadline() is None  # idle between requests
    assert sock.fixer.upstream_closed("closed") == []  # nothing injected between requests


def test_deltas_only_get_their_done_items_before_the_completed() -> None:
    sock = Socket()
    sock.request()
    bare = compact(completed(5, id="resp_1", usage=USAGE))  # no output at all
    sock.server(*HEALTHY[:4], bare)
    events = sock.events()
    assert [e["type"] for e in events[4:]] == ["response.output_item.done", "response.completed"]
    assert events[4]["item"]["content"][0]["text"] == "Hello"
    assert events[5]["response"]["output"] == [events[4]["item"]]
    assert [e["sequence_number"] for e in events[4:]] == [5, 6]
    (request,) = sock.ended
    assert request.report.repairs == ["output", "output_item.done"]


@pytest.mark.parametrize(
    ("change", "repair"),
    [
        ({"id": None}, "id"),
        ({"usage": {"input_tokens": 10}}, "usage"),
        ({"usage": {"input_tokens": "10", "output_tokens": 5.0, "total_tokens": None}}, "usage"),
    ],
)
def test_a_malformed_completed_is_repaired(change: dict[str, Any], repair: str) -> None:
    sock = Socket()
    sock.request()
    response = payload(b"data: " + HEALTHY[-1])["response"] | change
    response = {k: v for k, v in response.items() if v is not None}
    sock.server(*HEALTHY[:-1], compact(completed(5, **response)))
    final = sock.events()[-1]["response"]
    assert isinstance(final["id"], str)
    assert all(type(final["usage"][k]) is int for k in USAGE)
    assert sock.ended[0].report.repairs == [repair]


def test_requests_follow_each_other_on_one_socket() -> None:
    sock = Socket()
    sock.request(WARMUP)
    empty = compact(completed(1, id="resp_0", output=[], usage=USAGE))
    assert sock.server(compact(CREATED | {"response": {"id": "resp_0"}}), empty) == [None, None]
    sock.request()
    sock.server(*HEALTHY)
    assert [(r.index, r.warmup, str(r.outcome)) for r in sock.ended] == [
        (1, True, "completed"),
        (2, False, "completed"),
    ]
    assert sock.ended[0].report.repairs == []  # the warm-up's empty completed is no fault
    assert sock.fixer.counts.requests == 2


def test_an_upstream_close_mid_request_ends_it_with_a_retried_failure() -> None:
    sock = Socket()
    sock.request()
    sock.server(*HEALTHY[:3])
    injected = [json.loads(m) for m in sock.fixer.upstream_closed("the WebSocket closed (1011)")]
    assert [e["type"] for e in injected] == ["response.failed"]
    failed = injected[0]
    assert failed["sequence_number"] == 3
    assert failed["response"]["id"] == "resp_1"
    assert failed["response"]["error"]["code"] == "server_error"  # the Codex CLI retries it
    assert failed["response"]["error"]["message"].startswith("codex-fix: ")
    assert "the WebSocket closed (1011)" in failed["response"]["error"]["message"]
    assert failed["response"]["output"][0]["status"] == "incomplete"
    (request,) = sock.ended
    assert str(request.outcome) == "injected: truncated"
    assert sock.fixer.upstream_closed("again") == []  # once


def test_a_stall_mid_request_expires_at_the_idle_timeout() -> None:
    sock = Socket(Limits(idle_timeout=5.0))
    sock.request()
    sock.server(*HEALTHY[:2])
    deadline = sock.fixer.deadline()
    assert deadline == pytest.approx(sock.now + 5.0)
    (failed,) = [json.loads(m) for m in sock.fixer.expire(deadline)]
    assert failed["type"] == "response.failed"
    assert "sent nothing for 5.0s" in failed["response"]["error"]["message"]
    assert str(sock.ended[0].outcome) == "injected: idle"
    assert sock.fixer.deadline() is None


def test_a_request_without_any_answer_gets_a_created_first() -> None:
    sock = Socket()
    sock.request()
    events = [json.loads(m) for m in sock.fixer.upstream_closed("dropped")]
    assert [e["type"] for e in events] == ["response.created", "response.failed"]
    assert events[0]["response"]["model"] == "gpt-5"  # the request's own
    assert events[0]["response"]["id"] == events[1]["response"]["id"]


def test_an_error_message_passes_and_ends_the_request_without_injection() -> None:
    sock = Socket()
    sock.request()
    error = b'{"type":"error","status":429,"error":{"type":"usage_limit_reached","message":"x"}}'
    assert sock.server(compact(CREATED), error) == [None, None]
    (request,) = sock.ended
    assert request.outcome is not None and request.outcome.ending == "error"
    assert sock.fixer.upstream_closed("closed") == []


def test_an_interrupt_is_answered_by_a_normal_incomplete() -> None:
    sock = Socket()
    sock.request()
    sock.server(*HEALTHY[:3])
    sock.fixer.client_message(b'{"type":"response.interrupt","response_id":"resp_1"}', True, 1.0)
    incomplete = {
        "type": "response.incomplete",
        "sequence_number": 4,
        "response": {"id": "resp_1", "status": "incomplete", "output": [], "usage": USAGE},
    }
    assert sock.server(compact(incomplete)) == [None]
    assert str(sock.ended[0].outcome) == "incomplete"
    assert sock.fixer.counts.client_messages == 2


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[DONE]", b"[1,2]", b'{"type":"response.output_text.delta","delta":7}'],
)
def test_hostile_text_passes_unchanged_with_a_warning(
    content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    sock = Socket()
    sock.request()
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        assert sock.server(compact(CREATED), content, *HEALTHY[1:]) == [None] * (len(HEALTHY) + 1)
    assert sock.ended[0].report.warnings == 1
    assert "request 1: " in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_binary_message_passes_unchanged() -> None:
    sock = Socket()
    sock.request()
    assert sock.server(b"\x00\xff", is_text=False) == [None]
    assert sock.fixer.counts.binary == 1 and sock.fixer.current is not None


def test_an_oversized_message_turns_the_socket_into_a_plain_relay() -> None:
    sock = Socket(Limits(max_event_size=1024))
    sock.request()
    big = compact(delta(0, "x" * 2000, 2))
    assert sock.server(compact(CREATED), big) == [None, None]
    assert sock.fixer.passthrough and str(sock.ended[0].outcome) == "passthrough"
    assert sock.fixer.upstream_closed("closed") == []


def test_an_internal_error_switches_to_a_plain_relay_losing_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = Socket()
    sock.request()
    assert sock.fixer.current is not None

    def broken(*args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(sock.fixer.current.dialect, "on_events", broken)
    with caplog.at_level(logging.WARNING, logger="codexfix"):
        results = sock.server(*HEALTHY[:-1], compact(completed(5, id="resp_1", usage=USAGE)))
    assert results == [None] * len(HEALTHY)
    assert sock.received[: len(HEALTHY) - 1] == HEALTHY[:-1]
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "switched to a plain relay" in error.getMessage()
    assert sock.fixer.passthrough and sock.fixer.upstream_closed("closed") == []


# -- the fuzz: hostile values in every message, any ending -------------------------------


def message_of(frame: bytes) -> bytes | None:
    """The event of a hostile SSE frame as a WebSocket text message (valid UTF-8 only: a
    text message that is not is refused by the WebSocket protocol itself)."""
    data = frame.split(b"\ndata: ", 1)[1].removesuffix(b"\n\n")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return data


ENDS = {"response.completed", "response.failed", "response.incomplete", "error"}


def ws_hostile(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """`maybe_hostile`, but only what a WebSocket text message can carry (UTF-8)."""
    healthy = hostile.healthy(base)
    return maybe_hostile(base).map(lambda frame: frame if message_of(frame) else healthy)


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    created=ws_hostile(hostile.CREATED),
    middle=st.lists(st.sampled_from(hostile.MIDDLE).flatmap(ws_hostile), max_size=6),
    ending=st.sampled_from(["terminal", "error", "close", "stall"]),
    terminal=ws_hostile(hostile.TERMINAL),
    error=ws_hostile(hostile.ERROR),
)
def test_hostile_messages_keep_each_request_managed_with_one_end(
    created: bytes, middle: list[bytes], ending: str, terminal: bytes, error: bytes
) -> None:
    frames = [created, *middle, *{"terminal": [terminal], "error": [error]}.get(ending, [])]
    sent = [m for m in map(message_of, frames) if m is not None]
    built = dict(zip(sent, map(built_type, frames), strict=True))
    sock = Socket(Limits(idle_timeout=5.0))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("codexfix").addHandler(handler)
    try:
        sock.request()
        sock.server(*sent)
        if ending == "close":
            sock.received += sock.fixer.upstream_closed("dropped")
        elif ending == "stall" and sock.fixer.current is not None:
            deadline = sock.fixer.deadline()
            assert deadline is not None
            sock.received += sock.fixer.expire(deadline)
        sock.request()  # the next request on the socket is managed as well
        sock.server(*HEALTHY)
    finally:
        logging.getLogger("codexfix").removeHandler(handler)
    assert not sock.fixer.passthrough
    assert not [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    first = sock.received[: len(sock.received) - len(HEALTHY)]
    kinds = [built.get(m) or json.loads(m)["type"] for m in first]
    assert sum(kind in ENDS for kind in kinds) == 1, kinds
    assert kinds[-1] in ENDS
    # Nothing lost: every message before the end left byte for byte, in order.
    position = 0
    for upstream in sent[:-1] if ending in ("terminal", "error") else sent:
        position = first.index(upstream, position) + 1
    # What codex-fix wrote itself a client decodes strictly.
    for written in first[position:]:
        written.decode("utf-8")
    assert sock.received[-len(HEALTHY) :] == HEALTHY
    assert [str(r.outcome) for r in sock.ended][-1] == "completed"


def built_type(frame: bytes) -> str:
    """The type of the event the test built (its `event:` line)."""
    return frame.split(b"\n", 1)[0].removeprefix(b"event: ").decode()
