"""Smoke test of scripts/bench.py: it runs and prints its three goal lines.

No timing is asserted: the bench is a measurement, its numbers depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


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
    for goal in ("goal (i) ", "goal (ii) ", "goal (iii) "):
        assert goal in result.stdout, output
