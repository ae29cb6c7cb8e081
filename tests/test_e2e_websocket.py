"""The Codex WebSocket repaired in place, at the protocol level, through a real mitmdump.

A wsproto client does what `codex exec` never does (interrupts, many requests on one
socket, fragmented, binary, huge and garbage messages, permessage-deflate on and off)
against the mock backend's scripted WebSocket; each test asserts the exact messages
the client received, the Close it got, what the backend saw, and mitmdump's lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http, io
from mitmproxy.version import VERSION
from wsproto.events import AcceptConnection
from wsproto.extensions import PerMessageDeflate

from codexfix.testing.backend import MockBackend
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.faults import payload
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import (
    Fragmented,
    Handshake,
    RecordedRequest,
    Reply,
    Scenario,
    WebSocketScript,
)
from codexfix.testing.websocket import WebSocketClient

from support.harness import E2E_OPTIONS, mitmdump, wait_until

pytestmark = pytest.mark.e2e

FRAMES = sse_events(CODEX_TRANSCRIPT.read_bytes())
EVENTS = [json.dumps(payload(f), separators=(",", ":")) for f in FRAMES]
CREATE = json.dumps({"type": "response.create", "model": "gpt-5", "input": []})
WARMUP = json.dumps({"type": "response.create", "model": "gpt-5", "generate": False})


def event(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def without(kind: str, events: list[str]) -> list[str]:
    return [e for e in events if json.loads(e)["type"] != kind]


def completed_with(**changes: Any) -> str:
    """The transcript's response.completed with its response changed (None: removed)."""
    obj = json.loads(EVENTS[-1])
    obj["response"] = {k: v for k, v in (obj["response"] | changes).items() if v is not None}
    return event(obj)


EMPTY = [
    event({"type": "response.created", "response": {"id": "resp_w", "output": []}}),
    event(
        {
            "type": "response.completed",
            "response": {
                "id": "resp_w",
                "output": [],
                "usage": json.loads(EVENTS[-1])["response"]["usage"],
            },
        }
    ),
]
DELTAS_ONLY = [*without("response.output_item.done", EVENTS[:-1]), completed_with(output=None)]
ERROR_429 = event(
    {"type": "error", "status": 429, "error": {"type": "usage_limit_reached", "message": "slow"}}
)
INCOMPLETE = event(
    {
        "type": "response.incomplete",
        "response": {"id": json.loads(EVENTS[0])["response"]["id"], "status": "incomplete"},
    }
)
BIG_DELTA = event(json.loads(EVENTS[6]) | {"delta": "x" * (10 * 1024 * 1024)})


def wide_text_events() -> list[str]:
    """Deltas only, of a text far over mitmproxy's 4,000-byte re-fragmenting, in two-
    and three-byte characters: the synthesized done must reach the client intact."""
    head = [e for e in EVENTS if json.loads(e)["type"] in ("response.created",)]
    added = next(e for e in EVENTS if '"type":"message"' in e and "output_item.added" in e)
    delta = json.loads(next(e for e in EVENTS if "output_text.delta" in e))
    deltas = [event(delta | {"delta": "é€" * 1500, "sequence_number": 10 + i}) for i in range(4)]
    return [*head, added, *deltas, completed_with(output=None)]


def script(*replies: Reply, **kwargs: Any) -> Scenario:
    return Scenario(websocket_script=WebSocketScript(replies=replies, **kwargs))


SCENARIOS = {
    "healthy": script(Reply(tuple(EVENTS)), warmup=Reply(tuple(EMPTY))),
    "deltas-only": script(Reply(tuple(DELTAS_ONLY))),
    "no-id": script(Reply((*EVENTS[:-1], completed_with(id=None)))),
    "partial-usage": script(Reply((*EVENTS[:-1], completed_with(usage={"input_tokens": 3})))),
    "wide": script(Reply(tuple(wide_text_events()))),
    "interrupt": script(
        Reply(tuple(EVENTS[:8])),
        Reply((INCOMPLETE,)),
        answers=frozenset({"response.create", "response.interrupt"}),
    ),
    "fragmented": script(Reply(tuple(Fragmented.split(e, 3) for e in EVENTS))),
    "odd": script(Reply((*EVENTS[:4], b"\x00\x01 binary", "not json {", *EVENTS[4:]))),
    "big": script(Reply((*EVENTS[:7], BIG_DELTA, *EVENTS[7:]))),
    "close": script(Reply(tuple(EVENTS[:8]), end="close", close_code=1011)),
    "cut": script(Reply(tuple(EVENTS[:8]), end="cut")),
    "drop": script(Reply(tuple(EVENTS[:8]), end="drop")),
    "stall": script(Reply(tuple(EVENTS[:8]), end="stall")),
    "done-then-close": script(Reply(tuple(EVENTS), end="close")),
    "error-429": script(Reply((EVENTS[0], ERROR_429), end="close")),
    "refused-503": script(handshakes=(Handshake(503, body=b"busy"),)),
    "refused-reset": script(handshakes=(Handshake(reset=True),)),
    "refused-silent": script(handshakes=(Handshake(delay=None),)),
}


# Each proxy plays its own copy of a scenario (a script counts requests over all its
# connections), and so do the tests with a mitmdump of their own ("own").
VARIANTS = ("plain", "tls", "own")


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    return {f"{name}-{v}": sc for name, sc in SCENARIOS.items() for v in VARIANTS}


@pytest.fixture(scope="module")
def proxy_modes(backend: MockBackend) -> dict[str, str]:
    # Plain and TLS upstreams: mitmproxy's WebSocket layer sits on either.
    return {"plain": f"reverse:{backend.http_url}", "tls": f"reverse:{backend.https_url}"}


@pytest.fixture(params=["plain", "tls"])
def variant(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def proxy(variant: str, proxies: dict[str, Mitmdump]) -> Mitmdump:
    return proxies[variant]


def path(name: str) -> str:
    return f"/s/{name}/backend-api/codex/responses"


class Session:
    """One client socket through the proxy to a scenario, and what the backend saw."""

    def __init__(self, proxy: Mitmdump, backend: MockBackend, name: str, deflate: bool = False):
        self.proxy, self.backend, self.name = proxy, backend, name
        self.seen_before = len(backend.requests_for(name))
        self.lines_before = len(self._lines())
        self.client = WebSocketClient.open(proxy.port, timeout=10)
        extensions = [PerMessageDeflate()] if deflate else []
        self.handshake = self.client.connect(path(name), extensions=extensions)

    @property
    def accepted(self) -> bool:
        return isinstance(self.handshake, AcceptConnection)

    def upstream(self) -> RecordedRequest:
        """The upgrade the backend saw for this session (the latest of the scenario)."""
        (request,) = self.backend.requests_for(self.name)[self.seen_before :]
        return request

    def _lines(self) -> list[str]:
        return [line for line in self.proxy.log_text().splitlines() if f"/s/{self.name}/" in line]

    def log_lines(self) -> list[str]:
        """The proxy's lines about this scenario since the session opened."""
        return self._lines()[self.lines_before :]

    def ended(self) -> list[str]:
        """The socket's lines once its summary is written (the client closed first)."""
        if self.client.closed:  # the proxy closed it: the Close was answered
            self.client.sock.close()
        else:
            self.client.close()
        wait_until(
            lambda: any("websocket summary: " in line for line in self.log_lines()),
            lambda: "\n".join(self.log_lines()) or self.proxy.log_text()[-3000:],
            timeout=10,
        )
        return self.log_lines()


@pytest.fixture
def session(proxy: Mitmdump, backend: MockBackend, variant: str) -> Iterator[Any]:
    opened: list[Session] = []

    def open_session(name: str, deflate: bool = False) -> Session:
        s = Session(proxy, backend, f"{name}-{variant}", deflate)
        opened.append(s)
        return s

    yield open_session
    for s in opened:
        s.client.sock.close()


def types(messages: list[str | bytes]) -> list[str]:
    return [json.loads(m)["type"] if isinstance(m, str) else "<binary>" for m in messages]


def summaries(lines: list[str]) -> list[str]:
    return [line for line in lines if "websocket request=" in line]


@pytest.mark.parametrize("deflate", [False, True], ids=["no-deflate", "deflate"])
def test_requests_follow_each_other_on_one_socket_unchanged(session: Any, deflate: bool) -> None:
    s = session("healthy", deflate)
    assert s.accepted
    assert bool(s.handshake.extensions) == deflate
    s.client.send_text(WARMUP)
    assert s.client.receive(len(EMPTY)) == EMPTY
    for _ in range(3):
        s.client.send_text(CREATE)
        assert s.client.receive(len(EVENTS)) == EVENTS
    lines = s.ended()
    assert [line.split("websocket ", 1)[1].split(" ")[0] for line in summaries(lines)] == [
        "request=1",
        "request=2",
        "request=3",
        "request=4",
    ]
    assert all("outcome=completed repairs=- warnings=0" in line for line in summaries(lines))
    assert any("requests=4 outcomes=completed:4 " in line for line in lines)
    assert s.upstream().extensions.startswith("permessage-deflate") == deflate
    assert s.upstream().messages == [WARMUP.encode()] + [CREATE.encode()] * 3


@pytest.mark.parametrize("deflate", [False, True], ids=["no-deflate", "deflate"])
def test_deltas_only_get_their_done_items_and_output(session: Any, deflate: bool) -> None:
    s = session("deltas-only", deflate)
    s.client.send_text(CREATE)
    items = len(EVENTS) - len(DELTAS_ONLY)  # the transcript's output_item.done events
    received = s.client.receive(len(DELTAS_ONLY) + items)
    assert received[: len(DELTAS_ONLY) - 1] == DELTAS_ONLY[:-1]  # healthy: left unchanged
    *dones, completed = (json.loads(m) for m in received[len(DELTAS_ONLY) - 1 :])
    assert types(received[len(DELTAS_ONLY) - 1 :]) == [
        *["response.output_item.done"] * items,
        "response.completed",
    ]
    original = [json.loads(e)["item"] for e in EVENTS if "output_item.done" in e]
    assert [d["item"]["type"] for d in dones] == [i["type"] for i in original]
    text = "".join(json.loads(e)["delta"] for e in EVENTS if "output_text.delta" in e)
    assert dones[-1]["item"]["content"][0]["text"] == text
    assert completed["response"]["output"] == [d["item"] for d in dones]
    (line,) = summaries(s.ended())
    assert "outcome=completed repairs=output,output_item.done" in line


@pytest.mark.parametrize(("name", "repair"), [("no-id", "id"), ("partial-usage", "usage")])
def test_a_malformed_completed_is_repaired_in_place(session: Any, name: str, repair: str) -> None:
    s = session(name)
    s.client.send_text(CREATE)
    received = s.client.receive(len(EVENTS))
    assert received[:-1] == EVENTS[:-1]
    final = json.loads(received[-1])["response"]
    assert isinstance(final["id"], str)
    assert all(type(final["usage"][k]) is int for k in ("input_tokens", "output_tokens"))
    (line,) = summaries(s.ended())
    assert f"outcome=completed repairs={repair} " in line


def test_a_repaired_message_of_wide_characters_arrives_whole(session: Any) -> None:
    """mitmproxy re-fragments an edited text message into 4,000-byte frames decoded one by
    one (a character cut in two becomes U+FFFD): codex-fix writes its messages itself."""
    s = session("wide")
    s.client.send_text(CREATE)
    events = wide_text_events()
    received = s.client.receive(len(events) + 1)
    done = json.loads(received[-2])
    assert done["item"]["content"][0]["text"] == "é€" * 6000
    assert "\ufffd" not in received[-1]


def test_an_interrupt_is_answered_by_a_normal_incomplete(session: Any) -> None:
    s = session("interrupt")
    s.client.send_text(CREATE)
    assert s.client.receive(8) == EVENTS[:8]
    interrupt = event({"type": "response.interrupt", "response_id": "r", "mode": "x"})
    s.client.send_text(interrupt)
    assert s.client.receive(1) == [INCOMPLETE]
    lines = s.ended()
    (line,) = summaries(lines)
    assert "outcome=incomplete " in line
    assert s.upstream().messages == [CREATE.encode(), interrupt.encode()]


def test_fragmented_messages_pass_whole_and_unchanged(session: Any) -> None:
    s = session("fragmented")
    s.client.send_text(CREATE, fragments=4)
    assert s.client.receive(len(EVENTS)) == EVENTS
    assert s.upstream().messages == [CREATE.encode()]
    (line,) = summaries(s.ended())
    assert "outcome=completed repairs=- warnings=0" in line


def test_binary_and_garbage_messages_pass_with_warnings(session: Any) -> None:
    s = session("odd")
    s.client.send_text(CREATE)
    received = s.client.receive(len(EVENTS) + 2)
    assert received == [*EVENTS[:4], b"\x00\x01 binary", "not json {", *EVENTS[4:]]
    # Client messages pass unchanged too, whatever they are.
    unknown = event({"type": "codex.something_new", "n": 1})
    s.client.send_bytes(b"\x00client binary")
    s.client.send_text(unknown)
    wait_until(lambda: len(s.upstream().messages) == 3, "the client's messages did not arrive")
    assert s.upstream().messages == [CREATE.encode(), b"\x00client binary", unknown.encode()]
    lines = s.ended()
    (line,) = summaries(lines)
    assert "outcome=completed repairs=- warnings=2" in line
    assert not [x for x in lines if " ERROR" in x or "internal error" in x]


def test_a_10_mb_message_passes_unchanged(session: Any) -> None:
    s = session("big")
    s.client.send_text(CREATE)
    received = s.client.receive(len(EVENTS) + 1)
    assert received[7] == BIG_DELTA and received == [*EVENTS[:7], BIG_DELTA, *EVENTS[7:]]
    (line,) = summaries(s.ended())
    assert "outcome=completed repairs=- warnings=0" in line


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("close", "closed the WebSocket: code 1011"),
        ("cut", "dropped without a WebSocket Close"),
        ("drop", "dropped without a WebSocket Close"),
        ("stall", "sent nothing for 1.5s"),
    ],
)
@pytest.mark.parametrize("deflate", [False, True], ids=["no-deflate", "deflate"])
def test_a_request_the_upstream_breaks_ends_with_one_failure_and_a_close(
    session: Any, name: str, why: str, deflate: bool
) -> None:
    s = session(name, deflate)
    s.client.send_text(CREATE)
    received = s.client.receive(10)
    assert received[:8] == EVENTS[:8]
    assert types(received[8:]) == ["response.failed"]
    failed = json.loads(received[8])["response"]
    assert failed["id"] == json.loads(EVENTS[0])["response"]["id"]
    assert failed["error"]["code"] == "server_error"  # the Codex CLI retries it
    message = failed["error"]["message"]
    if name == "drop" and VERSION.startswith("12") and "sent nothing" in message:
        # mitmproxy 12.3.1 sometimes loses an upstream's TCP reset on a WebSocket (plain
        # mitmdump then leaves the client's socket open for good): the idle timer ends it.
        why = "sent nothing for 1.5s"
    assert message.startswith("codex-fix: ") and why in message
    assert s.client.closed and s.client.close_code == (1011 if name == "close" else 1000)
    (line,) = summaries(s.ended())
    assert "outcome=injected: " in line


@pytest.mark.parametrize("name", ["done-then-close", "error-429"])
def test_nothing_is_injected_between_requests(session: Any, name: str) -> None:
    s = session(name)
    s.client.send_text(CREATE)
    received = s.client.receive(len(EVENTS) + 1)
    assert received == (EVENTS if name == "done-then-close" else [EVENTS[0], ERROR_429])
    assert s.client.closed and s.client.close_code == 1000
    (line,) = summaries(s.ended())
    assert ("outcome=completed" if name == "done-then-close" else "outcome=error ") in line


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("refused-503", "upstream answered 503"),
        ("refused-reset", "upstream failed: "),
        ("refused-silent", "upstream sent no answer within 1.5s"),
    ],
)
def test_an_upgrade_the_upstream_refuses_gets_426(
    session: Any, proxy: Mitmdump, name: str, why: str
) -> None:
    s = session(name)
    assert not s.accepted and s.handshake.status_code == 426
    assert why in json.loads(s.client.reject_body)["error"]["message"]
    wait_until(lambda: any("answered 426" in line for line in s.log_lines()), proxy.log_text)
    (line,) = [x for x in s.log_lines() if "answered 426" in x]
    assert why in line


def test_an_internal_error_relays_the_socket_unchanged(
    backend: MockBackend, tmp_path: Path
) -> None:
    """Fail-open: one ERROR line, then a plain relay; nothing lost or reordered."""
    broken = tmp_path / "broken.py"
    broken.write_text(
        "from codexfix.mitm import repaired_socket\n"
        "original = repaired_socket.RepairedSocket.server_message\n"
        "def server_message(self, message):\n"
        "    if b'output_text.delta' in message.content:\n"
        "        raise RuntimeError('broken on purpose')\n"
        "    return original(self, message)\n"
        "repaired_socket.RepairedSocket.server_message = server_message\n"
    )
    mode = f"reverse:{backend.http_url}"
    with mitmdump(tmp_path, mode, options=E2E_OPTIONS, args=["-s", str(broken)]) as proxy:
        s = Session(proxy, backend, "deltas-only-own")
        s.client.send_text(CREATE)
        assert s.client.receive(len(DELTAS_ONLY)) == DELTAS_ONLY  # not repaired: relayed
        lines = s.ended()
    errors = [line for line in lines if "internal error" in line]
    assert len(errors) == 1 and "plain relay" in errors[0]
    assert any("outcome=passthrough" in line for line in summaries(lines))


@pytest.mark.skipif(not VERSION.startswith("12"), reason="tcp_timeout is mitmproxy 12's")
def test_an_idle_socket_between_requests_is_not_cut(backend: MockBackend, tmp_path: Path) -> None:
    """mitmproxy 12 closes a client connection idle for tcp_timeout seconds: the repaired
    socket's wake-ups keep it (a plain relay's would be cut)."""

    options = {**E2E_OPTIONS, "tcp_timeout": "2"}
    with mitmdump(tmp_path, f"reverse:{backend.http_url}", options=options) as proxy:
        s = Session(proxy, backend, "healthy-own")
        s.client.send_text(CREATE)
        assert s.client.receive(len(EVENTS)) == EVENTS
        time.sleep(5)  # the idle time itself (not a timing assertion)
        s.client.send_text(CREATE)
        assert s.client.receive(len(EVENTS)) == EVENTS
        lines = s.ended()
    assert any("requests=2 outcomes=completed:2 " in line for line in lines)


def test_each_request_is_captured_on_its_own_without_secrets(
    backend: MockBackend, tmp_path: Path
) -> None:
    captures = tmp_path / "captures"
    options = {**E2E_OPTIONS, "codexfix_capture_dir": str(captures)}
    secret = "sk-codexfix-secret-0123456789"
    with mitmdump(tmp_path, f"reverse:{backend.http_url}", options=options) as proxy:
        client = WebSocketClient.open(proxy.port, timeout=10)
        headers = [(b"authorization", f"Bearer {secret}".encode())]
        assert isinstance(
            client.connect(path("deltas-only-own"), headers=headers), AcceptConnection
        )
        client.send_text(CREATE)
        received = client.receive(len(EVENTS))
        client.close()
        wait_until(lambda: len(list(captures.glob("*.json"))) == 1, proxy.log_text, timeout=10)
    (record,) = captures.glob("*.json")
    stem = record.name.removesuffix(".json")
    assert stem.endswith("-1")  # the socket's first request
    upstream = (captures / f"{stem}.upstream.sse").read_bytes()
    client_body = (captures / f"{stem}.client.sse").read_bytes()
    assert upstream == b"".join(b"data: " + e.encode() + b"\n\n" for e in DELTAS_ONLY)
    assert client_body == b"".join(b"data: " + m.encode() + b"\n\n" for m in map(str, received))
    text = record.read_text()
    assert secret not in text and secret not in upstream.decode()
    saved = json.loads(text)
    assert saved["outcome"] == "completed" and saved["repairs"] == ["output", "output_item.done"]
    assert saved["request"]["body"]["type"] == "response.create"
    # The capture reads back like an SSE flow's: replay runs its upstream body again.
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    rows = subprocess.run(
        [sys.executable, str(scripts / "summarize.py"), str(captures), "--json"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    (row,) = json.loads(rows.stdout)["flows"]
    assert row["outcome"] == "completed" and row["repairs"] == ["output", "output_item.done"]
    replayed = subprocess.run(
        [sys.executable, str(scripts / "replay.py"), str(captures / f"{stem}.upstream.sse")],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert replayed.stdout == client_body  # the same repairs, offline


def test_a_socket_keeps_only_its_latest_messages_on_the_flow(
    backend: MockBackend, tmp_path: Path
) -> None:
    """A socket may live an hour: the flow keeps the latest `codexfix_keep_body` bytes of
    its messages (what a saved flow and mitmweb show), not all of them."""
    flows = tmp_path / "flows"
    options = {**E2E_OPTIONS, "codexfix_keep_body": "50k"}
    args = ["-w", str(flows)]
    with mitmdump(tmp_path, f"reverse:{backend.http_url}", options=options, args=args) as proxy:
        s = Session(proxy, backend, "healthy-own")
        for _ in range(3):
            s.client.send_text(CREATE)
            assert s.client.receive(len(EVENTS)) == EVENTS
        s.ended()
    with flows.open("rb") as file:
        (flow,) = [f for f in io.FlowReader(file).stream() if isinstance(f, http.HTTPFlow)]
    assert flow.websocket is not None
    kept = [m.content for m in flow.websocket.messages]
    assert sum(map(len, kept)) <= 50 * 1024
    assert kept[-1] == EVENTS[-1].encode()  # the latest
    assert len(kept) < 3 * (len(EVENTS) + 1)
