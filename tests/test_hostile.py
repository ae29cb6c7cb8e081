"""Hostile and malformed input through the core (issue 10): whatever an upstream sends,
the stream stays managed and the client gets exactly one terminal; a body that is not
an event stream of a known protocol passes untouched.

The oracle is independent of the code under test: `sse_oracle` reads the client's bytes
by the SSE spec, and the test knows the type of every event it built (support/hostile.py
builds them).
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexfix import StreamFixer
from codexfix.failures import EndCause, UpstreamBroken, UpstreamEnded, UpstreamIdle

from support.hostile import (
    BASE,
    CLASSES,
    CREATED,
    ERROR,
    HOSTILE_VALUES,
    KNOWN,
    MIDDLE,
    NOT_EVENTS,
    TERMINAL,
    assert_one_terminal_last,
    deep,
    healthy,
    maybe_hostile,
    remember,
    replaced,
    sse_frame,
    to_json,
)
from support.sse_oracle import TERMINALS, client_events, loads
from support.transcripts import ALL, frames, new_fixer

# How the upstream ends: its own terminal (healthy or hostile), an error then EOF, or a
# fault before any terminal.
ENDINGS = ("terminal", "error then eof", "eof", "cut", "stall")


def run(fixer: StreamFixer, body: bytes, sizes: list[int], cause: EndCause) -> bytes:
    """Feed `body` in pieces of `sizes` (cycled); the client's bytes."""
    out, pos, i = b"", 0, 0
    while pos < len(body):
        size = sizes[i % len(sizes)]
        out += fixer.feed(body[pos : pos + size], float(i))
        pos, i = pos + size, i + 1
    return out + fixer.finish(cause)


def cause_of(ending: str) -> EndCause:
    if ending == "cut":
        return UpstreamBroken("peer closed connection without sending complete message body")
    if ending == "stall":
        return UpstreamIdle(240.0)
    return UpstreamEnded()


def errors_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- the fuzz: JSON values ---------------------------------------------------------------


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    created=maybe_hostile(CREATED),
    middle=st.lists(st.sampled_from(MIDDLE).flatmap(maybe_hostile), max_size=6),
    ending=st.sampled_from(ENDINGS),
    terminal=maybe_hostile(TERMINAL),
    error=maybe_hostile(ERROR),
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=4),
)
def test_hostile_values_keep_the_stream_managed_with_one_terminal(
    created: bytes,
    middle: list[bytes],
    ending: str,
    terminal: bytes,
    error: bytes,
    sizes: list[int],
) -> None:
    upstream = [remember(f) for f in (created, *middle)]
    if ending == "terminal":
        upstream.append(remember(terminal))
    elif ending == "error then eof":
        upstream.append(remember(error))
    body = b"".join(upstream)
    fixer = new_fixer()
    out, errors = run_logged(fixer, body, sizes, cause_of(ending))
    assert not fixer.passthrough, [r.getMessage() for r in errors]
    assert not [r for r in errors if r.levelno >= logging.ERROR]
    events = client_events(out)
    assert_one_terminal_last("responses", events)
    # Nothing lost: every upstream frame before the terminal left byte for byte, in order.
    kept = upstream[:-1] if ending == "terminal" else upstream
    position = 0
    for frame in kept:
        found = out.find(frame, position)
        assert found >= 0, frame[:100]
        position = found + len(frame)
    # What codex-fix wrote itself is UTF-8 a client decodes strictly.
    added = out[position:]
    added.decode("utf-8")


def run_logged(
    fixer: StreamFixer, body: bytes, sizes: list[int], cause: EndCause
) -> tuple[bytes, list[logging.LogRecord]]:
    """`run`, and every record codex-fix logged meanwhile."""
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logger = logging.getLogger("codexfix")
    logger.addHandler(handler)
    try:
        return run(fixer, body, sizes, cause), records
    finally:
        logger.removeHandler(handler)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


# -- the fuzz: bytes ---------------------------------------------------------------------

PROTOCOL_FRAMES: dict[str, list[bytes]] = {}
for _protocol, _path in ALL:
    PROTOCOL_FRAMES.setdefault(_protocol, []).extend(frames(_path.read_bytes())[:40])
NOISE = [
    b"\n",
    b"\r",
    b"\r\n",
    b": keepalive\n\n",
    b"data: ",
    b"event: error\n",
    b"retry: " + b"9" * 30 + b"\n",
    b"id: a\x00b\n",
    b"data: [DONE]\n\n",
    b'data: {"type":"response.completed","response":{"id":"r","x":' + b"9" * 5000 + b"}}\n\n",
    b'data: {"type":"message_stop","x":' + deep(2000) + b"}\n\n",
    b'data: {"error":{"message":"\\ud83d","type":"server_error","code":null}}\n\n',
    b"data: \xff\xfe\x00\n\n",
]
remember(NOISE[-4], "response.completed")
remember(NOISE[-3], "message_stop")


@settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    protocol=st.sampled_from(sorted(PROTOCOL_FRAMES)),
    ending=st.sampled_from(("eof", "cut", "stall")),
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
)
def test_any_bytes_end_in_one_terminal_or_pass_untouched(
    data: st.DataObject, protocol: str, ending: str, sizes: list[int]
) -> None:
    pieces = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(PROTOCOL_FRAMES[protocol]),
                st.sampled_from(NOISE),
                st.binary(max_size=24),
            ),
            max_size=24,
        )
    )
    body = b"".join(pieces)
    fixer = new_fixer(protocol=protocol)
    out, records = run_logged(fixer, body, sizes, cause_of(ending))
    assert not [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    if str(fixer.report.outcome) == "passthrough":  # not this protocol's stream: untouched
        assert out == body
        return
    assert not fixer.passthrough
    events = client_events(out)
    assert_one_terminal_last(protocol, events)
    # What the upstream's events said reached the client in order, up to its end.
    sent = [e.data for e in client_events(body)]
    received = [e.data for e in events]
    ends = len(sent)
    for index, event_data in enumerate(sent):
        if _ends_stream(protocol, event_data):
            ends = index
            break
    assert received[:ends] == sent[:ends]


def _ends_stream(protocol: str, data: bytes) -> bool:
    """Where codex-fix may write into the stream: a terminal, `[DONE]`, a chat error."""
    if data == b"[DONE]":
        return True
    obj = loads(data)
    if protocol == "chat":
        return isinstance(obj, dict) and bool(obj.get("error"))
    event_type = obj.get("type") if isinstance(obj, dict) else KNOWN.get(data)
    return event_type in TERMINALS[protocol]


# -- each class, by name -----------------------------------------------------------------


def _stream(*events: bytes) -> bytes:
    return b"".join(remember(e) for e in events)


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("ending", ["eof", "cut", "stall"])
def test_a_hostile_created_then_a_fault_gets_one_injected_failure(name: str, ending: str) -> None:
    body = _stream(CLASSES[name](), healthy(MIDDLE[0]))
    fixer = new_fixer()
    out = run(fixer, body, [1000], cause_of(ending))
    assert not fixer.passthrough
    assert out.startswith(body)
    events = client_events(out)
    assert_one_terminal_last("responses", events)
    failed = json.loads(events[-2].data)
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["code"] == "server_error"
    assert fixer.report.outcome is not None and str(fixer.report.outcome).startswith("injected")


def test_an_error_message_with_a_lone_surrogate_is_injected_escaped() -> None:
    error = sse_frame("error", b'{"type":"error","code":"server_error","message":"bad \\ud83d"}')
    fixer = new_fixer()
    out = run(fixer, _stream(healthy(CREATED), error), [50], UpstreamEnded())
    injected = client_events(out)[-2].data
    assert b"bad \\ud83d" in injected  # escaped, as the upstream wrote it
    assert json.loads(injected)["response"]["error"]["message"] == "bad \ud83d"
    assert not fixer.passthrough


def test_an_item_id_of_the_wrong_type_is_ignored_not_fatal() -> None:
    done = {"type": "response.output_item.done", "output_index": 0, "item": {"id": ["x"]}}
    fixer = new_fixer()
    out = run(fixer, _stream(healthy(CREATED), healthy(done)), [7], UpstreamBroken("cut"))
    assert not fixer.passthrough
    assert_one_terminal_last("responses", client_events(out))


@pytest.mark.parametrize(
    "value", ["integer of 5000 digits", "nesting 3000 objects", "invalid UTF-8"]
)
def test_an_unreadable_terminal_counts_as_the_terminal(value: str) -> None:
    terminal = sse_frame(
        "response.completed",
        to_json(replaced(TERMINAL, ("response", "metadata"), HOSTILE_VALUES[value], False)),
    )
    body = _stream(*(f for f in BASE if b'"response.completed"' not in f), terminal)
    for cause in (UpstreamEnded(), UpstreamBroken("cut"), UpstreamIdle(3.0)):
        fixer = new_fixer()
        out = run(fixer, body, [64], cause)
        assert out.startswith(body)
        assert b"response.failed" not in out
        assert str(fixer.report.outcome) == "completed"
        assert_one_terminal_last("responses", client_events(out))


def test_a_duplicated_type_key_is_read_as_clients_read_it_the_last_one() -> None:
    # {"type": completed, "type": delta}: JSON parsers keep the last: not a terminal.
    data = b'{"type":"response.completed","type":"response.output_text.delta","delta":"x"}'
    fixer = new_fixer()
    out = run(fixer, _stream(healthy(CREATED), sse_frame("x", data)), [9], UpstreamEnded())
    assert_one_terminal_last("responses", client_events(out))
    assert json.loads(client_events(out)[-2].data)["type"] == "response.failed"


def test_a_retry_field_of_many_digits_is_ignored() -> None:
    body = healthy(CREATED) + b"retry: " + b"9" * 5000 + b"\n\n"
    fixer = new_fixer()
    out = run(fixer, body, [100], UpstreamEnded())
    assert out.startswith(body) and not fixer.passthrough


# -- bodies that are not a known protocol's events ----------------------------------------


@pytest.mark.parametrize("protocol", ["responses", "chat", "anthropic", None])
@pytest.mark.parametrize("name", sorted(NOT_EVENTS))
@pytest.mark.parametrize("cause", [UpstreamEnded(), UpstreamBroken("cut")], ids=["eof", "cut"])
def test_a_body_of_no_known_protocol_passes_untouched_with_one_warning(
    name: str, protocol: str | None, cause: EndCause, caplog: pytest.LogCaptureFixture
) -> None:
    body = NOT_EVENTS[name]
    for sizes in ([len(body)], [1], [5, 17]):
        caplog.clear()
        fixer = new_fixer(protocol=protocol)
        with caplog.at_level(logging.WARNING, logger="codexfix"):
            out = run(fixer, body, sizes, cause)
        assert out == body
        assert str(fixer.report.outcome) == "passthrough"
        assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
        assert "untouched" in caplog.records[0].getMessage()
        assert caplog.records[0].levelno == logging.WARNING


@pytest.mark.parametrize(
    ("protocol", "error"),
    [
        ("responses", b'{"type":"error","code":"server_error","message":"m"}'),
        ("chat", b'{"error":{"message":"m","type":"server_error","param":null,"code":null}}'),
        ("anthropic", b'{"type":"error","error":{"type":"overloaded_error","message":"m"}}'),
    ],
)
def test_an_error_event_first_counts_as_the_paths_protocol(protocol: str, error: bytes) -> None:
    body = b"event: error\ndata: " + error + b"\n\n"
    fixer = new_fixer(protocol=protocol)
    out = run(fixer, body, [11], UpstreamEnded())
    assert out.startswith(body)
    assert str(fixer.report.outcome) != "passthrough"
    assert_one_terminal_last(protocol, client_events(out))


def test_a_bom_split_across_chunks_still_opens_an_event_stream() -> None:
    body = b"\xef\xbb\xbf" + healthy(CREATED)
    fixer = new_fixer()
    out = run(fixer, body, [1], UpstreamEnded())
    assert out.startswith(body) and str(fixer.report.outcome) != "passthrough"
