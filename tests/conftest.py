"""Shared pytest fixtures: the scenario-playing mock backend and mitmdump.

``scripts/`` is not a package, so its directory is put on ``sys.path`` here
to make ``import mock_backend`` work from any test module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = REPO_ROOT / "scripts"
TESTS_DIR = Path(__file__).resolve().parent
for _path in (SCRIPTS_DIR, TESTS_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from harness import Mitmdump  # noqa: E402
from mock_backend import MockBackend  # noqa: E402

MitmdumpFactory = Callable[..., Mitmdump]


@pytest.fixture
def mock_backend() -> Iterator[MockBackend]:
    """A started MockBackend with no scenarios (tests add their own)."""
    with MockBackend() as backend:
        yield backend


@pytest.fixture
def mitmdump_factory(tmp_path: Path) -> Iterator[MitmdumpFactory]:
    """Start mitmdump instances in ``tmp_path``; all are stopped at teardown.

    Call as ``mitmdump_factory(mode="reverse:http://...", script=..., options={...})``;
    ``confdir`` and ``log_path`` default to fresh directories under ``tmp_path``.
    """
    started: list[Mitmdump] = []

    def factory(
        args: Sequence[str] = (),
        *,
        mode: str,
        script: Path | None = None,
        options: Mapping[str, str] | None = None,
        confdir: Path | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Mitmdump:
        n = len(started)
        proxy = Mitmdump(
            args,
            mode=mode,
            confdir=confdir or tmp_path / f"mitm{n}" / "conf",
            script=script,
            options=options,
            log_path=log_path or tmp_path / f"mitm{n}" / "mitmdump.log",
            env=env,
        )
        started.append(proxy)
        return proxy.start()

    yield factory
    for proxy in reversed(started):
        proxy.stop()
