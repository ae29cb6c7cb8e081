"""Shared fixtures: the mock backend, the module's mitmdump proxies, the Codex CLIs.

An end-to-end module gets a `backend` (a `MockBackend` playing the module's `scenarios`)
and `proxies` (one mitmdump with codex-fix per `proxy_modes` entry, with `proxy_options`),
all started once for the module. A module changes what they play or how they run by
overriding `scenarios`, `proxy_modes`, `proxy_options` or `backend` itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack

import pytest

from codexfix.testing.backend import MockBackend
from codexfix.testing.codex import CodexCli
from codexfix.testing.mitmdump import Mitmdump
from codexfix.testing.scenario import Scenario

from support.codex import VERSIONS
from support.harness import E2E_OPTIONS, mitmdump


@pytest.fixture
def mock_backend() -> Iterator[MockBackend]:
    """A started MockBackend of its own with no scenarios (the test adds its own)."""
    with MockBackend() as backend:
        yield backend


@pytest.fixture(scope="module")
def scenarios() -> Mapping[str, Scenario]:
    """What the module's `backend` plays, by name."""
    return {}


@pytest.fixture(scope="module")
def backend(scenarios: Mapping[str, Scenario]) -> Iterator[MockBackend]:
    """The module's mock backend."""
    with MockBackend(scenarios) as mock:
        yield mock


@pytest.fixture(scope="module")
def proxy_modes(backend: MockBackend) -> dict[str, str]:
    """The module's proxies by name: reverse proxies to the mock's HTTP/1.1 port ("h1")
    and to its TLS port ("h2": HTTP/2 when the client speaks it to mitmproxy)."""
    return {"h1": f"reverse:{backend.http_url}", "h2": f"reverse:{backend.https_url}"}


@pytest.fixture(scope="module")
def proxy_options() -> Mapping[str, str]:
    """The options of the module's proxies."""
    return E2E_OPTIONS


@pytest.fixture(scope="module")
def proxies(
    proxy_modes: dict[str, str],
    proxy_options: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Mitmdump]]:
    """One mitmdump with codex-fix per `proxy_modes` entry, each in its own folder."""
    with ExitStack() as stack:
        started = {}
        for name, mode in proxy_modes.items():
            directory = tmp_path_factory.mktemp(f"mitmdump-{name}")
            started[name] = stack.enter_context(mitmdump(directory, mode, options=proxy_options))
        yield started


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda cli: cli.test_id)
def cli(request: pytest.FixtureRequest) -> CodexCli:
    """Each Codex CLI version in turn (a module's tests are grouped by it)."""
    cli: CodexCli = request.param
    if not cli.installed():
        pytest.skip(f"Codex CLI {cli.version} not installed in {cli.bin} (scripts/test)")
    return cli
