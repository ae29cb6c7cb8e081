"""Run the real Codex CLI (`codex exec`) against local servers only.

The CLIs come from an npm project (codex-fix's own: tests/codex, installed there by
`scripts/test`): `npm_clis` finds `@openai/codex` and its npm aliases. Each run gets its
own CODEX_HOME holding a config.toml that turns off everything that would talk to
anything but the configured backend (analytics, feedback, OpenTelemetry, plugins and
apps, the update check, the endless "waiting for network" retries), and HOME points
there too, so nothing of the user's own setup is read. `--strict-config` makes a
misspelled key an error instead of a silently ignored line. stdin is /dev/null (`codex
exec` otherwise waits for more prompt on it), and every run is bounded: on timeout the
whole process group is killed (the npm launcher is a node process that spawns the
native binary).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bodies import CODEX_TRANSCRIPT, sse_events
from .faults import CUT, SequenceBackend, payload, rewrite_completed, tool_call_turn
from .scenario import (
    Handshake,
    Headers,
    Reply,
    Scenario,
    WebSocketScript,
    select_scenario_name,
)

PACKAGE = "@openai/codex"
MODEL = "gpt-5"
# The README's check command; `--strict-config` rejects a misspelled config key.
EXEC_ARGS = ("exec", "--strict-config", "--skip-git-repo-check")
API_KEY_ENV = "CODEXFIX_TEST_KEY"
ACCOUNT_ID = "acct-codexfix-test"

# Keeps a run offline: every key below is checked by --strict-config.
OFFLINE = """\
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
trace_exporter = "none"
metrics_exporter = "none"

[features]
plugins = false
apps = false
remote_plugin = false
# On by default: a refused connection is retried forever ("waiting for network").
unbounded_connection_retries = false
"""


@dataclass(frozen=True)
class CodexResult:
    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str
    duration: float

    @property
    def errors(self) -> list[str]:
        """The `ERROR: …` lines `codex exec` prints for the user."""
        return [line[7:] for line in self.stderr.splitlines() if line.startswith("ERROR: ")]

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.duration:.1f}s\n{self.stderr[-3000:]}"


@dataclass(frozen=True)
class CodexCli:
    """One Codex CLI: its version and its launcher (the npm package's `bin/codex.js`)."""

    version: str
    bin: Path

    @property
    def test_id(self) -> str:
        return f"codex-{self.version}"

    def installed(self) -> bool:
        return self.bin.exists()


def npm_clis(folder: Path) -> tuple[CodexCli, ...]:
    """The Codex CLIs that the npm project in `folder` depends on, installed or not:
    `@openai/codex` itself first, then each npm alias of it (`"codex-latest":
    "npm:@openai/codex@0.171.0"`), one CLI per version."""
    manifest = json.loads((folder / "package.json").read_text())
    dependencies: dict[str, str] = manifest["dependencies"]
    alias = f"npm:{PACKAGE}@"
    versions = {PACKAGE: dependencies[PACKAGE]} | {
        name: spec.removeprefix(alias)
        for name, spec in dependencies.items()
        if spec.startswith(alias)
    }
    clis: dict[str, CodexCli] = {}
    for name, version in versions.items():
        bin_path = folder / "node_modules" / name / "bin" / "codex.js"
        clis.setdefault(version, CodexCli(version, bin_path))
    return tuple(clis.values())


def provider_config(
    base_url: str,
    *,
    stream_max_retries: int = 0,
    request_max_retries: int = 0,
    stream_idle_timeout_ms: int = 300_000,
) -> str:
    """A custom Responses provider at `base_url` (the README's reverse-mode setup)."""
    return f"""\
model = "{MODEL}"
model_provider = "codexfix"
{OFFLINE}
[model_providers.codexfix]
name = "OpenAI through codex-fix"
base_url = "{base_url}"
wire_api = "responses"
env_key = "{API_KEY_ENV}"
supports_websockets = false
stream_max_retries = {stream_max_retries}
request_max_retries = {request_max_retries}
stream_idle_timeout_ms = {stream_idle_timeout_ms}
"""


def chatgpt_config(backend: str) -> str:
    """Codex's own provider with a ChatGPT login, its ChatGPT backend moved to `backend`.

    `chatgpt_base_url` moves the account, routing and plugin calls; `openai_base_url`
    the built-in provider's responses and models calls (both must be https).
    """
    return f"""\
model = "{MODEL}"
chatgpt_base_url = "{backend}/backend-api/"
openai_base_url = "{backend}/backend-api/codex"
{OFFLINE}"""


def chatgpt_provider_config(
    base_url: str, chatgpt_backend: str, supports_websockets: bool, **settings: int
) -> str:
    """A custom provider that uses the ChatGPT login (the README's reverse mode for it).

    Account routing still goes to `chatgpt_base_url` directly (chatgpt.com, normally).
    `settings`: more provider keys, e.g. `stream_max_retries`, `request_max_retries`,
    `stream_idle_timeout_ms` (Codex's own `openai` provider cannot be overridden in
    config.toml: "Built-in providers cannot be overridden").
    """
    more = "".join(f"{key} = {value}\n" for key, value in settings.items())
    return f"""\
model = "{MODEL}"
model_provider = "codexfix"
chatgpt_base_url = "{chatgpt_backend}/backend-api/"
{OFFLINE}
[model_providers.codexfix]
name = "ChatGPT through codex-fix"
base_url = "{base_url}"
wire_api = "responses"
requires_openai_auth = true
supports_websockets = {str(supports_websockets).lower()}
{more}"""


def chatgpt_auth() -> dict[str, object]:
    """A ChatGPT login in auth.json's shape: unsigned tokens that expire in a day.

    Fresh `last_refresh` and `exp` keep Codex from refreshing them (which would call
    auth.openai.com).
    """
    expires = int(time.time()) + 86_400
    claims = {
        "exp": expires,
        "email": "codexfix@example.invalid",
        "https://api.openai.com/auth": {
            "chatgpt_plan_type": "plus",
            "chatgpt_account_id": ACCOUNT_ID,
            "chatgpt_user_id": "user-codexfix-test",
        },
    }
    token = ".".join(_b64(part) for part in ({"alg": "none", "typ": "JWT"}, claims, "sig"))
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {
            "id_token": token,
            "access_token": token,
            "refresh_token": "refresh-codexfix-test",
            "account_id": ACCOUNT_ID,
        },
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def accounts_check() -> dict[str, object]:
    """`/wham/accounts/check`: Codex routes every ChatGPT request by it (0.169); the
    backend origin `NO_CONSTRAINT` keeps it on `chatgpt_base_url`."""
    account = {
        "id": ACCOUNT_ID,
        "structure": "personal",
        "plan_type": "plus",
        "workspace_backend_origin": "NO_CONSTRAINT",
        "account_routing_override": "NO_CONSTRAINT",
    }
    return {"accounts": [account], "account_ordering": [ACCOUNT_ID]}


def _b64(part: object) -> str:
    raw = part.encode() if isinstance(part, str) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_home(directory: Path, config: str, auth: Mapping[str, object] | None = None) -> Path:
    """A CODEX_HOME with this config.toml (and auth.json); also the run's working folder."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(config)
    if auth is not None:
        (directory / "auth.json").write_text(json.dumps(auth))
    return directory


def run_codex(
    home: Path,
    prompt: str = "Say hello",
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cli: CodexCli,
) -> CodexResult:
    """`codex exec` of `cli` with CODEX_HOME=HOME=`home`, stdin /dev/null, bounded by
    `timeout`."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "LANG": "C.UTF-8",
        API_KEY_ENV: "sk-codexfix-test",
        **(env or {}),
    }
    started = time.monotonic()
    with subprocess.Popen(
        [str(cli.bin), *EXEC_ARGS, prompt],
        cwd=home,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            returncode: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate(timeout=10)
            returncode = None
    return CodexResult(
        returncode,
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
        time.monotonic() - started,
    )


def json_scenario(body: object) -> Scenario:
    """A JSON response with a content-length."""
    return Scenario(
        headers=(("content-type", "application/json"),),
        parts=(json.dumps(body).encode(),),
        framing="content-length",
    )


@dataclass(frozen=True)
class ChatGptCase:
    """What `/s/<name>/backend-api/codex/responses` plays: a WebSocket upgrade is played
    by `websocket`; the n-th POST (SSE) gets `sse[n]`, the last one repeating."""

    websocket: WebSocketScript
    sse: tuple[Scenario, ...]
    description: str = ""


class ChatGptBackend(SequenceBackend):
    """The ChatGPT backend as Codex 0.169 needs it: account routing, a models list, and
    `…/codex/responses` answering a POST with `sse_frames` and a WebSocket upgrade with
    `ws_messages` (the same events, one JSON message each).

    `cases`: more `…/codex/responses` endpoints, one per `/s/<name>/` path prefix
    (`chatgpt_config(f"{backend.https_url}/s/{name}")` points the Codex CLI at one); the
    requests of a case are recorded under its name, WebSocket upgrades and POSTs alike.
    """

    def __init__(
        self,
        sse_frames: Sequence[bytes] = (),
        ws_messages: Sequence[bytes] = (),
        *,
        cases: Mapping[str, ChatGptCase] | None = None,
        **ports: int,
    ) -> None:
        routes = {
            "/wham/accounts/check": json_scenario(accounts_check()),
            "/codex/models": json_scenario({"models": []}),
        }
        super().__init__({}, routes, **ports)
        self.responses = Scenario(parts=tuple(sse_frames))
        self.websocket = Scenario(parts=tuple(ws_messages), websocket=True)
        self.cases = dict(cases or {})

    def resolve(self, path: str, headers: Headers) -> tuple[str, Scenario]:
        if not path.split("?", 1)[0].endswith("/codex/responses"):
            return super().resolve(path, headers)
        upgrade = any(k.lower() == "upgrade" and "websocket" in v.lower() for k, v in headers)
        name = select_scenario_name(path, headers)
        case = self.cases.get(name)
        if case is None:
            return "/codex/responses", self.websocket if upgrade else self.responses
        if upgrade:
            return name, Scenario(websocket_script=case.websocket)
        posts = [r for r in self.requests_for(name) if r.method == "POST"]
        return name, case.sse[min(len(posts), len(case.sse) - 1)]


# -- The Codex WebSocket transport's faults -------------------------------------------------
# One `ChatGptCase` per fault, shared by tests/test_e2e_codex_websocket.py and
# scripts/websocket_matrix.py. A warm-up gets an empty completed. A transport fault (a
# close, a drop, a stall, a refused upgrade) is transient: the request after it (a
# reconnect's) gets the healthy answer, and so does SSE (the CLI's fallback). A malformed
# response is the backend's bug: every request gets it, over the WebSocket and over SSE.

WARMUP_ID = "resp_codexfix_warmup"
TOOL_CALL_RESPONSE_ID = "resp_codexfix_tool_call"
USAGE_LIMIT_MESSAGE = "The usage limit has been reached"


def ws_text(frames: Sequence[bytes], response_id: str | None = None) -> tuple[str, ...]:
    """SSE frames as WebSocket messages (the event's JSON, compact, one message each), the
    response's `id` replaced by `response_id` when given."""
    messages = []
    for frame in frames:
        event = payload(frame)
        response = event.get("response")
        if response_id is not None and isinstance(response, dict) and "id" in response:
            event["response"] = {**response, "id": response_id}
        messages.append(json.dumps(event, separators=(",", ":")))
    return tuple(messages)


def warmup_reply(frames: Sequence[bytes], response_id: str = WARMUP_ID) -> Reply:
    """The answer to a warm-up (`generate: false`): `response.created` and an empty but
    well-formed `response.completed` (an id, no output, zero usage)."""
    created, completed = payload(frames[0]), payload(frames[-1])
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    created["response"] = {**created["response"], "id": response_id}
    completed["response"] = {
        **completed["response"],
        "id": response_id,
        "output": [],
        "usage": usage,
    }
    completed["sequence_number"] = 1
    events = (created, completed)
    return Reply(tuple(json.dumps(e, separators=(",", ":")) for e in events))


def error_frame(status: int, error_type: str, message: str) -> str:
    """An error as the Codex backend sends it on the WebSocket: the Codex CLI treats it as
    an HTTP error `status` (codex-api's `WrappedWebsocketErrorEvent`)."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    return json.dumps({"type": "error", "status": status, "error": error})


def refused(status: int, message: str) -> Handshake:
    """An upgrade answered with `status` and an OpenAI-style JSON error."""
    body = {"error": {"message": message, "type": "server_error", "code": None}}
    return Handshake(status, (("content-type", "application/json"),), json.dumps(body).encode())


def websocket_faults(transcript: bytes | None = None) -> dict[str, ChatGptCase]:
    """The faults of the Codex WebSocket transport, made from `transcript` (default: the
    shipped one), by name."""
    frames = sse_events(transcript or CODEX_TRANSCRIPT.read_bytes())
    head = ws_text(frames[:CUT])
    healthy = Reply(ws_text(frames))
    sse = (Scenario(parts=tuple(frames)),)
    warmup = warmup_reply(frames)

    def case(description: str, *replies: Reply, handshake: Handshake | None = None) -> ChatGptCase:
        script = WebSocketScript(
            replies=(*replies, healthy),
            handshakes=(handshake or Handshake(),),
            warmup=warmup,
        )
        return ChatGptCase(script, sse, description)

    def malformed(description: str, bad: list[bytes]) -> ChatGptCase:
        script = WebSocketScript(replies=(Reply(ws_text(bad)),), warmup=warmup)
        return ChatGptCase(script, (Scenario(parts=tuple(bad)),), description)

    no_done = [f for f in frames if b'"type":"response.output_item.done"' not in f]
    partial_usage = rewrite_completed(frames, usage={"input_tokens": 2239})
    tool_call = ws_text(tool_call_turn(frames), TOOL_CALL_RESPONSE_ID)
    unavailable = refused(503, "The service is temporarily unavailable.")
    return {
        "healthy": case("healthy turn", healthy),
        "tool-call": case("a tool call (`get_goal`), then the answer", Reply(tool_call)),
        "deltas-only": malformed("no `output_item.done`", no_done),
        "no-id": malformed("completed without `response.id`", rewrite_completed(frames, id=None)),
        "partial-usage": malformed(
            "completed with `usage` without output/total tokens", partial_usage
        ),
        "close": case("Close frame mid-response", Reply(head, "close", close_code=1011)),
        "drop": case("TCP reset mid-response", Reply(head, "drop")),
        "stall": case("silent mid-response, socket open", Reply(head, "stall")),
        "handshake-503": case("upgrade answered 503", handshake=unavailable),
        "handshake-403": case(
            "upgrade answered 403", handshake=refused(403, "Forbidden: WebSockets not allowed")
        ),
        "handshake-reset": case(
            "TCP reset after the upgrade request", handshake=Handshake(reset=True)
        ),
        "handshake-silent": case("upgrade never answered", handshake=Handshake(delay=None)),
        "error-429": case(
            "`error` message with `status: 429`",
            Reply((error_frame(429, "usage_limit_reached", USAGE_LIMIT_MESSAGE),)),
        ),
    }
