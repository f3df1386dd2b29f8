"""The soak benchmark runs end to end, so `python -m bench.soak` cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_soak_runs_every_kind_of_request_and_reports_the_drift():
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--seconds", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("resident memory") for line in lines), done.stdout
    for kind in ("metrics", "push", "create", "lease", "complete"):
        row = next(line for line in lines if line.startswith(f"{kind} p50"))
        assert "nan" not in row, row  # each kind was measured in both windows
    assert "failed: 0" in done.stdout
