"""End to end: hostile and malformed input through a real mitmdump with codex-fix (issue 10).

The hostile classes of `test_hostile` (the core fuzz), each in a Responses stream over
HTTP/1.1 and HTTP/2, followed by each way an upstream ends: a clean EOF, a cut mid-event,
a TCP reset, a stall, an `error` event, or its own terminal that Python cannot read. The
client (httpx) must get every upstream event byte for byte, exactly one terminal, and a
clean end of body; mitmdump must log no internal error and never give up on the stream.
A body that is no event stream passes untouched, with one warning.

The oracle is `sse_oracle` (the SSE spec, read plainly) and the types the test built.
"""

from __future__ import annotations

import itertools
import json
import ssl
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import split_bytes
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import End, Scenario

from support.harness import E2E_OPTIONS
from support.hostile import (
    BASE,
    BASE_EVENTS,
    CLASSES,
    CREATED,
    ERROR,
    HOSTILE_VALUES,
    MIDDLE,
    NOT_EVENTS,
    TERMINAL,
    assert_one_terminal_last,
    healthy,
    hostile_events,
    remember,
    replaced,
    sse_frame,
    to_json,
)
from support.sse_oracle import client_events

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0  # every client read and every wait for the log is bounded
IDLE = 1.0  # codexfix_idle_timeout: a stall ends quickly
DROP_PAUSE = 0.1
OPTIONS = {**E2E_OPTIONS, "codexfix_idle_timeout": str(IDLE)}
VERSIONS = ("h1", "h2")
REQUEST = {"model": "gpt-5", "input": "hi", "stream": True}
# mitmdump lines that must never appear for these inputs: fail-open, a crash in a hook.
FAILURES = ("internal error", "raw passthrough", "Traceback", "Addon error")

# -- the upstream streams -----------------------------------------------------------------

DELTA = next(e for e in BASE_EVENTS if e["type"] == "response.output_text.delta")
ITEM_DONE, MESSAGE_DONE = (e for e in BASE_EVENTS if e["type"] == "response.output_item.done")


def hostile_in(
    event: dict[str, object], path: tuple[str, ...], value: str, dup: bool = False
) -> bytes:
    """`event` with the hostile `value` at `path` (`dup`: after the healthy one, same key)."""
    data = to_json(replaced(event, path, HOSTILE_VALUES[value], dup))
    return sse_frame(str(event["type"]), data)


# A hostile `response.created` replaces the upstream's; any other hostile event comes after
# `response.in_progress`, and healthy events follow it.
HOSTILE_CREATED = {
    "lone surrogate in created": CLASSES["surrogate in created"](),
    "nesting 100000 in created": CLASSES["nesting 100000 in created"](),
    "nesting 100000 objects in created": CLASSES["nesting 100000 objects in created"](),
    "integer of 5000 digits in created": CLASSES["integer over the digit limit in created"](),
}
HOSTILE_MIDDLE = {
    "nesting 1000 in a delta": hostile_in(DELTA, ("delta",), "nesting 1000"),
    "item id a list": hostile_in(ITEM_DONE, ("item", "id"), "list"),
    "duplicate key, the last a list": hostile_in(DELTA, ("item_id",), "list", dup=True),
    "duplicate type, the last not a terminal": sse_frame(
        "response.output_text.delta",
        b'{"type":"response.completed","type":"response.output_text.delta","delta":"x"}',
    ),
    "NUL escape in a delta": hostile_in(DELTA, ("delta",), "NUL escape"),
    "invalid UTF-8 in a delta": hostile_in(DELTA, ("delta",), "invalid UTF-8"),
    "reversed surrogate pair in an item": hostile_in(
        MESSAGE_DONE, ("item", "role"), "surrogate pair halves reversed"
    ),
}
HOSTILE = {**HOSTILE_CREATED, **HOSTILE_MIDDLE}
for _frame in HOSTILE.values():
    remember(_frame)


def upstream_events(hostile: bytes, created: bool) -> list[bytes]:
    """The upstream's frames before its end: the transcript with `hostile` in it."""
    if created:
        return [hostile, *BASE[1:-1]]
    return [BASE[0], BASE[1], hostile, *BASE[2:-1]]


# The upstream's own terminal, typed but unreadable to Python (and pydantic): counted, so
# never followed by an injected one.
HOSTILE_TERMINAL = remember(
    hostile_in(TERMINAL, ("response", "metadata"), "integer of 5000 digits"),
    "response.completed",
)
ERROR_FRAME = remember(healthy(ERROR))
PARTIAL = BASE[-1][:60]  # the start of `response.completed`: never dispatched

ENDINGS = (
    "eof",
    "cut mid-event",
    "drop",
    "stall",
    "error then eof",
    "hostile terminal",
    "hostile terminal then cut",
)
# How the mock ends the response (after the frames, and the tail below).
ENDS: dict[str, End] = {
    "cut mid-event": "cut",
    "drop": "drop",
    "stall": "stall",
    "hostile terminal then cut": "cut",
}
TAILS = {
    "cut mid-event": PARTIAL,
    "stall": PARTIAL,
    "error then eof": ERROR_FRAME,
    "hostile terminal": HOSTILE_TERMINAL,
    "hostile terminal then cut": HOSTILE_TERMINAL,
}


@dataclass(frozen=True)
class Upstream:
    scenario: Scenario
    kept: bytes  # what the client must get first, byte for byte
    terminal: bytes  # the upstream's terminal, after `kept` (or nothing)


def upstream(events: list[bytes], ending: str, piece: int | None = None) -> Upstream:
    """The scenario for `events` then `ending`; each frame one write, or pieces of `piece`."""
    tail = TAILS.get(ending, b"")
    body = b"".join(events)
    kept = body + ERROR_FRAME if ending == "error then eof" else body
    terminal = HOSTILE_TERMINAL if ending.startswith("hostile terminal") else b""
    end = ENDS.get(ending, "eof")
    if ending == "drop":
        # A reset discards what the peer has not read yet (and the mock's unsent buffer):
        # the whole body in one write, then a pause in which mitmdump reads it, then RST.
        return Upstream(Scenario(parts=(body, b""), delay=DROP_PAUSE, end=end), kept, terminal)
    parts = (*events, tail) if piece is None else split_bytes(body + tail, piece)
    return Upstream(Scenario(parts=tuple(p for p in parts if p), end=end), kept, terminal)


# -- the rig: one mock, one mitmdump per HTTP version ------------------------------------------


@dataclass(frozen=True)
class Played:
    status: int
    headers: httpx.Headers
    body: bytes
    log: list[str]  # mitmdump's lines for the flow, and those naming no flow, meanwhile
    summary: str


class Rig:
    """Plays scenarios through mitmdump, each under a fresh name: a flow's lines in the log
    are the ones naming `/s/<name>/`; lines naming no flow (mitmproxy's own, a traceback)
    count for every flow that ran meanwhile."""

    def __init__(self, backend: MockBackend, proxies: dict[str, Mitmdump]) -> None:
        self.backend, self.proxies = backend, proxies
        self.names = (f"hostile-{n}" for n in itertools.count())
        self.tls = ssl.create_default_context(cafile=str(proxies["h2"].ca_cert))

    def play(self, version: str, scenario: Scenario) -> Played:
        [played] = self.play_all(version, [scenario])
        return played

    def play_all(self, version: str, scenarios: list[Scenario]) -> list[Played]:
        """Play `scenarios` at once: stalls cost the idle timeout once, not each."""
        names = [next(self.names) for _ in scenarios]
        self.backend.scenarios.update(zip(names, scenarios, strict=True))
        proxy = self.proxies[version]
        start = len(proxy.log_text())
        with ThreadPoolExecutor(len(names)) as pool:
            responses = list(pool.map(partial(self.request, version), names))
        lines = self._log_to_summaries(proxy, start, names)
        played = []
        for name, (response, body) in zip(names, responses, strict=True):
            del self.backend.scenarios[name]
            where = f"/s/{name}/"
            log = [line for line in lines if where in line or "/s/hostile-" not in line]
            [summary] = [line for line in log if "summary:" in line]
            played.append(Played(response.status_code, response.headers, body, log, summary))
        return played

    def request(self, version: str, name: str) -> tuple[httpx.Response, bytes]:
        proxy, http2 = self.proxies[version], version == "h2"
        base = proxy.url if version == "h1" else f"https://127.0.0.1:{proxy.port}"
        headers = {"accept": "text/event-stream", "authorization": "Bearer sk-test"}
        url = f"{base}/s/{name}/v1/responses"
        with (
            httpx.Client(http1=not http2, http2=http2, verify=self.tls, timeout=TIMEOUT) as client,
            client.stream("POST", url, json=REQUEST, headers=headers) as response,
        ):
            body = b"".join(response.iter_raw())  # raises unless the body ends cleanly
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        return response, body

    @staticmethod
    def _log_to_summaries(proxy: Mitmdump, start: int, names: list[str]) -> list[str]:
        """The log from `start` until each flow's summary line (bounded wait)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            lines = proxy.log_text()[start:].splitlines()
            summaries = "\n".join(line for line in lines if "summary:" in line)
            if all(f"/s/{name}/" in summaries for name in names):
                return lines
            time.sleep(0.02)
        raise AssertionError(f"no summary line for some of {names}:\n{proxy.log_tail()}")


@pytest.fixture(scope="module")
def proxy_options() -> Mapping[str, str]:
    return OPTIONS


@pytest.fixture(scope="module")
def rig(backend: MockBackend, proxies: dict[str, Mitmdump]) -> Rig:
    """The module's mock and its h1 and h2 proxies (conftest), with a short idle timeout."""
    return Rig(backend, proxies)


# -- the checks -----------------------------------------------------------------------------


def check_one_terminal(played: Played, sent: Upstream) -> None:
    """Every upstream event before its terminal byte for byte, then exactly one terminal,
    then only `[DONE]`; what codex-fix wrote is UTF-8; no fail-open, no crash."""
    body = played.body
    assert played.status == 200
    assert body.startswith(sent.kept + sent.terminal), (body[:200], body[-400:])
    assert_one_terminal_last("responses", client_events(body))
    if sent.terminal:  # the upstream's terminal counted: nothing injected after it
        assert b"response.failed" not in body[len(sent.kept) :], body[-400:]
        assert "outcome=completed" in played.summary, played.summary
    else:
        added = body[len(sent.kept) :]
        added.decode("utf-8")  # strictly: whatever the upstream sent, ours is encodable
        failed = json.loads(client_events(added)[-2].data)
        assert failed["type"] == "response.failed", added
    bad = [line for line in played.log if any(f in line for f in (*FAILURES, "untouched"))]
    assert not bad, "\n".join(played.log)
    assert "outcome=passthrough" not in played.summary, played.summary


def check_h1_framing(played: Played, version: str) -> None:
    if version == "h1":  # httpx read up to the chunked terminator (else it raised)
        assert played.headers.get("transfer-encoding") == "chunked"


# -- each hostile class, each ending ----------------------------------------------------------


@pytest.mark.parametrize("ending", [e for e in ENDINGS if e != "stall"])
@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("version", VERSIONS)
def test_a_hostile_event_then_any_ending_gives_the_client_one_terminal(
    rig: Rig, version: str, name: str, ending: str
) -> None:
    sent = upstream(upstream_events(HOSTILE[name], name in HOSTILE_CREATED), ending)
    played = rig.play(version, sent.scenario)
    check_h1_framing(played, version)
    check_one_terminal(played, sent)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_hostile_event_then_a_stall_gives_the_client_one_terminal(rig: Rig, version: str) -> None:
    sent = {
        name: upstream(upstream_events(frame, name in HOSTILE_CREATED), "stall")
        for name, frame in HOSTILE.items()
    }
    played = rig.play_all(version, [s.scenario for s in sent.values()])
    failed: dict[str, str] = {}
    for (name, one), result in zip(sent.items(), played, strict=True):
        try:
            check_h1_framing(result, version)
            check_one_terminal(result, one)
        except AssertionError as exc:  # every class's verdict, not only the first
            failed[name] = str(exc)[:3000]
    assert not failed, "\n\n".join(f"{name}: {why}" for name, why in failed.items())


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    hostile=st.one_of(  # (the frame, whether it is the `response.created`)
        st.sampled_from(sorted(HOSTILE)).map(lambda name: (HOSTILE[name], name in HOSTILE_CREATED)),
        hostile_events(CREATED).map(lambda frame: (frame, True)),
        st.sampled_from(MIDDLE).flatmap(hostile_events).map(lambda frame: (frame, False)),
    ),
    ending=st.sampled_from(ENDINGS),
    version=st.sampled_from(VERSIONS),
    piece=st.one_of(st.none(), st.sampled_from([1, 7, 100, 1000, 16384])),
)
def test_hypothesis_hostile_class_ending_and_version(
    rig: Rig, hostile: tuple[bytes, bool], ending: str, version: str, piece: int | None
) -> None:
    frame, created = hostile
    events = upstream_events(remember(frame), created)
    if piece is not None:  # at most some hundred writes, however large the events
        piece = max(piece, len(b"".join(events)) // 300)
    sent = upstream(events, ending, piece)
    played = rig.play(version, sent.scenario)
    check_h1_framing(played, version)
    check_one_terminal(played, sent)


# -- bodies of no known protocol, and an error first ------------------------------------------


@pytest.mark.parametrize("name", sorted(NOT_EVENTS))
@pytest.mark.parametrize("version", VERSIONS)
def test_a_body_of_no_known_protocol_reaches_the_client_untouched_with_one_warning(
    rig: Rig, version: str, name: str
) -> None:
    body = NOT_EVENTS[name]
    played = rig.play(version, Scenario(parts=split_bytes(body, 300)))
    check_h1_framing(played, version)
    assert played.body == body
    untouched = [line for line in played.log if "untouched" in line]
    assert len(untouched) == 1, "\n".join(played.log)
    assert "/v1/responses]" in untouched[0]  # the flow's line
    assert not [line for line in played.log if any(f in line for f in FAILURES)]
    assert "outcome=passthrough" in played.summary


ERRORS_FIRST = {
    "with its event line": healthy(ERROR),
    "data only": b"data: " + json.dumps(ERROR).encode() + b"\n\n",
    "a lone surrogate in its message": sse_frame(
        "error", b'{"type":"error","code":"rate_limit_exceeded","message":"wait \\ud83d 1.5s"}'
    ),
}


@pytest.mark.parametrize("name", list(ERRORS_FIRST))
@pytest.mark.parametrize("version", VERSIONS)
def test_an_error_event_first_gets_one_injected_failure_with_its_code(
    rig: Rig, version: str, name: str
) -> None:
    error = ERRORS_FIRST[name]
    played = rig.play(version, Scenario(parts=(error,)))
    check_h1_framing(played, version)
    assert played.body.startswith(error)
    events = client_events(played.body)
    assert_one_terminal_last("responses", events)
    assert events[0].data == client_events(error)[0].data
    # Then what codex-fix adds: a `response.created` of its own (none came), the failure.
    created, failed = (json.loads(e.data) for e in events[1:-1])
    assert created["type"] == "response.created"
    assert failed["response"]["id"] == created["response"]["id"]
    upstream_error = json.loads(events[0].data)
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["code"] == upstream_error["code"]
    assert failed["response"]["error"]["message"] == upstream_error["message"]
    assert not [line for line in played.log if any(f in line for f in (*FAILURES, "untouched"))]


@pytest.mark.parametrize("end", ["cut", "drop"])
@pytest.mark.parametrize("version", VERSIONS)
def test_a_body_of_no_known_protocol_cut_short_reaches_the_client_broken(
    rig: Rig, version: str, end: End
) -> None:
    # Untouched means untouched to the end: the truncation is the client's to see, as
    # without codex-fix, not hidden behind a clean end of body.
    body = NOT_EVENTS["HTML"]
    name = next(rig.names)
    rig.backend.scenarios[name] = Scenario(parts=(body,), end=end)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            rig.request(version, name)
    finally:
        del rig.backend.scenarios[name]
