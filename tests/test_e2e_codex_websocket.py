"""End to end: the real Codex CLI over its Responses WebSocket, with and without codex-fix.

The Codex CLI with a (fake) ChatGPT login talks to the mock's TLS port (`ChatGptBackend`,
one `/s/<case>/` endpoint per fault and target, from `chatgpt.websocket_faults()`), in four
setups ("targets"):

* `straight`: at the mock, no proxy (today's behaviour without any proxy);
* `plain`: through mitmdump without codex-fix, reverse mode (today's behaviour through
  mitmproxy);
* `regular`: through codex-fix in regular-proxy mode: Codex's own provider (the user's
  setup with a ChatGPT login), `HTTPS_PROXY`, mitmproxy's CA as `CODEX_CA_CERTIFICATE`;
* `reverse`: through codex-fix in reverse mode: a custom provider with
  `requires_openai_auth` and `supports_websockets = true`.

`straight`, `plain` and `reverse` use the same custom provider with `stream_max_retries =
1` (Codex's own provider retries 5 times, which makes a malformed response cost ~13 s):
with it a close or a drop mid-response is still recovered by one silent reconnect.
codex-fix runs with `codexfix_websocket=repair` and a 2 s `codexfix_idle_timeout`.

Each test asserts the exit code, stdout, stderr and what the mock saw: the handshakes,
the `response.create` messages on each socket (incremental or not) and the SSE POSTs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy.version import VERSION as MITMPROXY_VERSION

from codexfix.testing import chatgpt, codex
from codexfix.testing.bodies import CODEX_TRANSCRIPT, sse_events
from codexfix.testing.chatgpt import (
    TOOL_CALL_RESPONSE_ID,
    USAGE_LIMIT_MESSAGE,
    WARMUP_ID,
    ChatGptBackend,
)
from codexfix.testing.codex import CodexCli, CodexResult
from codexfix.testing.faults import TOOL_CALL_ID, streamed_text
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import RecordedRequest

from support.codex import requires_codex
from support.harness import ADDON, E2E_OPTIONS, mitmdump, wait_until

pytestmark = [pytest.mark.e2e, requires_codex]

ANSWER = streamed_text(sse_events(CODEX_TRANSCRIPT.read_bytes())) + "\n"
FAULTS = chatgpt.websocket_faults()
TARGETS = ("straight", "plain", "regular", "reverse")
FIXED = ("regular", "reverse")
IDLE_TIMEOUT = 2  # codexfix_idle_timeout (s): a stall ends after it
FIX_OPTIONS = {
    **E2E_OPTIONS,
    "codexfix_websocket": "repair",
    "codexfix_idle_timeout": str(IDLE_TIMEOUT),
}
PLAIN_OPTIONS = {"ssl_insecure": "true"}
RETRIES = {"stream_max_retries": 1}
HANG = 6.0  # how long a run that is expected to hang is given before it is killed
FALLBACK = "Falling back from WebSockets to HTTPS transport"
# What the Codex CLI prints for a 429 `usage_limit_reached` error frame (its own words).
USAGE_LIMIT = "You\u2019ve hit your usage limit. Try again later."


@dataclass(frozen=True)
class Seen:
    """What the mock saw of one run: the WebSocket upgrades and the SSE POSTs to
    `…/codex/responses`."""

    handshakes: list[RecordedRequest]
    posts: list[RecordedRequest]

    @property
    def accepted(self) -> list[RecordedRequest]:
        return [h for h in self.handshakes if h.handshake_status == 101]

    def creates(self) -> list[list[tuple[bool | None, str | None]]]:
        """Per socket: each `response.create`'s `generate` and `previous_response_id`."""
        return [
            [(m.get("generate"), m.get("previous_response_id")) for m in h.response_creates()]
            for h in self.handshakes
        ]


@dataclass(frozen=True)
class Run:
    result: CodexResult
    seen: Seen
    log: str  # mitmdump's log ("" straight at the mock)

    def describe(self) -> str:
        return f"{self.result.describe()}\nmock saw {self.seen.creates()}\n{self.log[-3000:]}"


class Proxies:
    """The module's mitmdumps, each started on first use: a proxy that fails to start
    fails only the tests that use it."""

    def __init__(self, backend: ChatGptBackend, directory: Path) -> None:
        self.backend, self.directory = backend, directory
        self.started: dict[str, Mitmdump] = {}

    def __getitem__(self, target: str) -> Mitmdump:
        if target not in self.started:
            mode = "regular" if target == "regular" else f"reverse:{self.backend.https_url}"
            plain = target == "plain"
            proxy = mitmdump(
                self.directory / target,
                mode,
                script=None if plain else ADDON,
                options=PLAIN_OPTIONS if plain else FIX_OPTIONS,
            )
            self.started[target] = proxy.start()
        return self.started[target]

    def stop(self) -> None:
        for proxy in self.started.values():
            proxy.stop()


@pytest.fixture(scope="module")
def backend(cli: CodexCli) -> Iterator[ChatGptBackend]:
    """Every fault once per target, as `<fault>.<target>`, for each Codex CLI version."""
    cases = {f"{name}.{target}": case for name, case in FAULTS.items() for target in TARGETS}
    with ChatGptBackend(cases=cases) as mock:
        yield mock


@pytest.fixture(scope="module")
def proxies(backend: ChatGptBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    started = Proxies(backend, tmp_path_factory.mktemp("mitmdump-websocket"))
    try:
        yield started
    finally:
        started.stop()


def seen(backend: ChatGptBackend, name: str) -> Seen:
    responses = [r for r in backend.requests_for(name) if r.path.endswith("/codex/responses")]
    return Seen(
        [r for r in responses if r.is_websocket_upgrade()],
        [r for r in responses if r.method == "POST"],
    )


Runner = Callable[..., Run]


@pytest.fixture
def run(cli: CodexCli, backend: ChatGptBackend, proxies: Proxies, tmp_path: Path) -> Runner:
    """`run(fault, target, timeout=60)`: `codex exec` of `cli` against the fault's case."""

    def run(fault: str, target: str, timeout: float = 60.0) -> Run:
        name = f"{fault}.{target}"
        origin = f"{backend.https_url}/s/{name}"
        env = {"CODEX_CA_CERTIFICATE": str(backend.cert_path)}
        proxy = None if target == "straight" else proxies[target]
        if target == "regular":
            assert proxy is not None
            config = codex.chatgpt_config(origin)
            env = {"HTTPS_PROXY": proxy.url, "CODEX_CA_CERTIFICATE": str(proxy.ca_cert)}
        else:
            base = f"{proxy.url}/s/{name}" if proxy else origin
            config = codex.chatgpt_provider_config(
                f"{base}/backend-api/codex", origin, True, **RETRIES
            )
        home = codex.make_home(tmp_path / "home", config, codex.chatgpt_auth())
        result = codex.run_codex(home, env=env, timeout=timeout, cli=cli)
        if proxy is None:
            return Run(result, seen(backend, name), "")
        if target != "plain":
            await_summaries(proxy, name, seen(backend, name))
        return Run(result, seen(backend, name), case_log(proxy, name))

    return run


def case_log(proxy: Mitmdump, name: str) -> str:
    """The lines of the module's mitmdump log about one case (its flows' paths)."""
    return "\n".join(line for line in proxy.log_text().splitlines() if f"/s/{name}/" in line)


def await_summaries(proxy: Mitmdump, name: str, saw: Seen) -> None:
    """codex-fix logs a socket's summary when it closes, an SSE stream's when it ends:
    just after the Codex CLI exits. Wait (bounded) for one per socket and stream."""

    def complete() -> bool:
        log = case_log(proxy, name)
        sockets, streams = log.count("websocket summary:"), log.count("summary: POST")
        return sockets >= len(saw.accepted) and streams >= len(saw.posts)

    wait_until(complete, lambda: f"summaries missing:\n{proxy.log_tail()}", timeout=10)


def request_lines(log: str) -> list[str]:
    """codex-fix's per-request lines on the WebSockets (`websocket request=<n> …`)."""
    return [line for line in log.splitlines() if "websocket request=" in line]


def outcome(line: str) -> str:
    found = re.search(r"outcome=(\S+)", line)
    assert found, line
    return found.group(1).rstrip(":")


def repairs(line: str) -> str:
    found = re.search(r"repairs=(\S+)", line)
    assert found, line
    return found.group(1)


def assert_answered(done: Run) -> None:
    assert done.result.returncode == 0, done.describe()
    assert done.result.stdout == ANSWER, done.describe()


def assert_one_socket(done: Run, follow_ups: int = 1) -> None:
    """One handshake, one socket: the warm-up, then `follow_ups` requests, each
    incremental on the previous response; no SSE."""
    (socket,) = done.seen.creates()
    assert socket[0] == (False, None), done.describe()
    assert socket[1] in TURN, socket
    assert [previous is not None for _, previous in socket[2:]] == [True] * (follow_ups - 1)
    assert done.seen.posts == []


# The turn's first request on a socket: incremental on the warm-up, or in full when the CLI
# sent it before the warm-up's answer came (it does, on a loaded machine: seen in CI).
TURN = ((None, WARMUP_ID), (None, None))


# -- healthy ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_healthy_turn_runs_on_one_socket(run: Runner, target: str) -> None:
    done = run("healthy", target)
    assert_answered(done)
    assert FALLBACK not in done.result.stderr
    assert_one_socket(done)
    (socket,) = done.seen.handshakes
    assert (socket.header("openai-beta") or "").startswith("responses_websockets=")
    assert socket.header("chatgpt-account-id") == codex.ACCOUNT_ID
    # permessage-deflate is offered by the Codex CLI and negotiated end to end.
    assert socket.extensions.startswith("permessage-deflate")
    if target in FIXED:
        lines = request_lines(done.log)
        assert len(lines) == 2, done.log  # the warm-up and the turn
        assert [(outcome(line), repairs(line)) for line in lines] == [("completed", "-")] * 2
        assert done.log.count("websocket summary:") == 1
        assert "answered 426" not in done.log


@pytest.mark.parametrize("target", ("straight", *FIXED))
def test_tool_call_and_its_follow_up_share_the_socket(run: Runner, target: str) -> None:
    done = run("tool-call", target)
    assert_answered(done)
    assert_one_socket(done, follow_ups=2)
    (socket,) = done.seen.handshakes
    follow_up = socket.response_creates()[2]
    assert follow_up["previous_response_id"] == TOOL_CALL_RESPONSE_ID
    # Incremental: only the tool's output, not the conversation again.
    assert [(i.get("type"), i.get("call_id")) for i in follow_up["input"]] == [
        ("function_call_output", TOOL_CALL_ID)
    ]
    if target in FIXED:
        assert [outcome(line) for line in request_lines(done.log)] == ["completed"] * 3


# -- malformed responses -----------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_deltas_only_prints_the_answer_only_through_codexfix(run: Runner, target: str) -> None:
    done = run("deltas-only", target)
    assert done.result.returncode == 0, done.describe()
    assert_one_socket(done)
    if target in FIXED:
        assert done.result.stdout == ANSWER, done.describe()
        turn = request_lines(done.log)[-1]
        assert outcome(turn) == "completed" and repairs(turn) != "-", turn
    else:  # the CLI takes its answer from output_item.done only: it prints nothing
        assert done.result.stdout == "", done.describe()


# Plain mitmdump relays a partial usage as it relays a missing id: run once.
@pytest.mark.parametrize(
    ("fault", "target"),
    [("no-id", t) for t in TARGETS] + [("partial-usage", t) for t in TARGETS if t != "plain"],
)
def test_malformed_completed_is_repaired_on_the_socket(
    run: Runner, fault: str, target: str
) -> None:
    done = run(fault, target)
    if target in FIXED:
        assert_answered(done)
        assert "failed to parse ResponseCompleted" not in done.result.stderr
        assert FALLBACK not in done.result.stderr
        assert_one_socket(done)  # one request: no retry, no fallback
        turn = request_lines(done.log)[-1]
        assert outcome(turn) == "completed" and repairs(turn) != "-", turn
        return
    # Today: every WebSocket attempt fails to parse the completed event, then the CLI
    # falls back to SSE, where the same backend bug fails again.
    assert done.result.returncode == 1, done.describe()
    assert done.result.stdout == ""
    assert FALLBACK in done.result.stderr
    assert "failed to parse ResponseCompleted: missing field" in done.result.errors[-1]
    assert len(done.seen.handshakes) == 2 and len(done.seen.posts) == 2  # 1 + 1 retry each
    assert done.seen.creates()[1] == [(None, None)]  # a retry is a fresh, full request


# -- the upstream fails mid-response -----------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fault", ["close", "drop"])
def test_close_or_drop_mid_response_is_recovered_by_one_reconnect(
    run: Runner, fault: str, target: str
) -> None:
    if target == "plain" and fault == "drop" and MITMPROXY_VERSION.startswith("12"):
        # mitmproxy 12.3.1 sometimes loses an upstream's TCP reset on a WebSocket (about
        # one time in eight here): plain mitmdump then never closes the client's socket,
        # and the CLI waits for its own 300 s idle timeout. (codex-fix's idle timer ends
        # such a request: the "regular" and "reverse" targets recover either way.)
        done = run(fault, target, timeout=15)
        if done.result.returncode is None:
            assert done.seen.creates()[0][0] == (False, None), done.describe()
            return
    else:
        done = run(fault, target)
    assert_answered(done)
    assert FALLBACK not in done.result.stderr
    assert done.result.errors == []  # silent: no "Reconnecting..."
    assert_reconnected_once(done)
    first = done.seen.handshakes[0].close
    assert first is not None and first.by == "server", first
    if target in FIXED:
        assert_injected_then_completed(done)


@pytest.mark.parametrize("target", TARGETS)
def test_stall_mid_response(run: Runner, target: str) -> None:
    if target in FIXED:
        done = run("stall", target)
        assert_answered(done)
        # Recovered after codex-fix's idle timeout, far from the CLI's own 300 s.
        assert done.result.duration < 30, done.describe()
        assert_reconnected_once(done)
        assert_injected_then_completed(done)
        # codex-fix closed the stalled upstream socket (the mock never answered).
        wait_until(lambda: done.seen.handshakes[0].close is not None, "upstream left open")
        assert done.seen.handshakes[0].close.by == "client"  # type: ignore[union-attr]
        return
    # Today: the CLI waits for its own idle timeout (300 s): cut after HANG seconds.
    done = run("stall", target, timeout=HANG)
    assert done.result.returncode is None, done.describe()
    ((warmup, turn),) = done.seen.creates()
    assert warmup == (False, None) and turn in TURN
    assert done.seen.posts == []


def assert_reconnected_once(done: Run) -> None:
    """Two sockets: the warm-up and the turn on the first; the second carries the turn
    again, in full (not incremental: the state died with the first socket)."""
    first, second = done.seen.creates()
    assert first[0] == (False, None) and first[1] in TURN and len(first) == 2, done.describe()
    assert second == [(None, None)], done.describe()
    assert done.seen.posts == []


def assert_injected_then_completed(done: Run) -> None:
    outcomes = [outcome(line) for line in request_lines(done.log)]
    # The warm-up, the failed turn (codex-fix injected its terminal), the reconnect's.
    assert outcomes == ["completed", "injected", "completed"], done.log
    assert done.log.count("websocket summary:") == 2


# -- the upgrade is refused --------------------------------------------------------------


# What the 426 line names: the upstream's status, or its error (mitmproxy's words for a
# connection that ends before an answer).
REFUSALS = {
    "handshake-503": "503",
    "handshake-403": "403",
    "handshake-reset": "closed connection",
}


# Plain mitmdump relays a 403 as it relays a 503: run once.
@pytest.mark.parametrize(
    ("fault", "target"),
    [(f, t) for f in REFUSALS for t in TARGETS if (f, t) != ("handshake-403", "plain")],
)
def test_refused_upgrade(run: Runner, fault: str, target: str) -> None:
    named = REFUSALS[fault]
    done = run(fault, target)
    assert_answered(done)
    assert len(done.seen.posts) == 1  # the turn, over SSE
    if target in FIXED:
        # 426 at once: the CLI falls back without a warning, after one handshake.
        assert FALLBACK not in done.result.stderr, done.describe()
        assert len(done.seen.handshakes) == 1, done.describe()
        (line,) = [x for x in done.log.splitlines() if "websocket upgrade answered 426" in x]
        assert named in line
        return
    # Today: the warm-up's handshake, the turn's, one retry; then a warning and SSE.
    assert FALLBACK in done.result.stderr
    assert len(done.seen.handshakes) == 3, done.describe()


@pytest.mark.parametrize("target", FIXED)
def test_unanswered_upgrade_is_downgraded_after_the_header_timeout(
    run: Runner, target: str
) -> None:
    """Without codex-fix the CLI waits for the upgrade's answer forever (README's table)."""
    done = run("handshake-silent", target)
    assert_answered(done)
    assert FALLBACK not in done.result.stderr, done.describe()
    assert len(done.seen.handshakes) == 1 and len(done.seen.posts) == 1, done.describe()
    assert done.log.count("websocket upgrade answered 426") == 1, done.log
    assert done.result.duration < 30, done.describe()
    wait_until(lambda: done.seen.handshakes[0].abandoned, "the upstream upgrade was left open")


# -- an error frame ----------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_rate_limit_error_frame_ends_the_turn_as_without_codexfix(run: Runner, target: str) -> None:
    done = run("error-429", target)
    assert done.result.returncode == 1, done.describe()
    assert done.result.stdout == ""
    assert done.result.errors[-1] == USAGE_LIMIT, done.describe()
    assert USAGE_LIMIT_MESSAGE not in done.result.stderr  # the CLI has its own words
    assert_one_socket(done)  # fatal: no retry, no fallback
    if target in FIXED:
        assert outcome(request_lines(done.log)[-1]).startswith("error"), done.log
