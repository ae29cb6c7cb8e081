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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
