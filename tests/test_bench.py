"""Smoke tests of scripts/bench.py (it runs, HTTP and WebSocket parts, and prints its goal
lines) and of scripts/profile_proxy.py.

No timing is asserted: the bench is a measurement, its numbers depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
PROFILE = BENCH.with_name("profile_proxy.py")


def run_script(script: Path, *args: str) -> str:
    """Run a script to its end (bounded); its stdout, after checking it succeeded."""
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.e2e
def test_bench_quick_runs_and_reports_every_goal() -> None:
    output = run_script(BENCH, "--quick")
    for goal in ("goal (i) ", "goal (ii) ", "goal (iii) ", "  floor: ", "goal (iv) "):
        assert goal in output, output


@pytest.mark.e2e
def test_profile_proxy_runs_and_attributes_time_to_codexfix() -> None:
    output = run_script(PROFILE, "--requests", "3", "--warmup", "1", "--top", "5")
    assert "== codex-fix: top 5 by tottime" in output, output
    assert "== baseline: top 5 by cumulative" in output, output
    # The addon's own functions are found in the codex-fix profile.
    assert "stream.py" in output and "fixer.py" in output, output
