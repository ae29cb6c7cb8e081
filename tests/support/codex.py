"""The real Codex CLIs the end-to-end tests run: the pinned one (`@openai/codex` in
tests/codex/package.json, which the README's tables use) and the latest one
(`codex-latest`, an npm alias of it); `scripts/test` installs them with `npm ci`."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexfix.testing.codex import npm_clis

CODEX_DIR = Path(__file__).resolve().parents[1] / "codex"
# The versions the end-to-end tests run against (one, when the pin is the latest).
VERSIONS = npm_clis(CODEX_DIR)
PINNED = VERSIONS[0]

requires_codex = pytest.mark.skipif(
    not PINNED.installed(),
    reason=f"Codex CLI not installed in {PINNED.bin} (scripts/test runs npm ci)",
)
