"""Smoke tests of scripts/bench.py (it runs and prints its goal lines) and of
scripts/profile_proxy.py.

No timing is asserted: the bench is a measurement, its numbers depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
PROFILE = BENCH.with_name("profile_proxy.py")


@pytest.mark.e2e
def test_bench_quick_runs_and_reports_every_goal() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for goal in ("goal (i) ", "goal (ii) ", "goal (iii) ", "  floor: "):
        assert goal in result.stdout, output


@pytest.mark.e2e
def test_profile_proxy_runs_and_attributes_time_to_codexfix() -> None:
    result = subprocess.run(
        [sys.executable, str(PROFILE), "--requests", "3", "--warmup", "1", "--top", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "== codex-fix: top 5 by tottime" in result.stdout, output
    assert "== baseline: top 5 by cumulative" in result.stdout, output
    # The addon's own functions are found in the codex-fix profile.
    assert "stream.py" in result.stdout and "fixer.py" in result.stdout, output
