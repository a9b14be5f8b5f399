"""benchmarks/nm_patterns.py --smoke runs and prints a table with a 2:4 row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_nm_patterns_smoke():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "nm_patterns.py"), "--smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| smoke-mlp-adam")]
    assert len(rows) == 1 and "| 2:4 |" in rows[0]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    dense, magnitude, chita = (float(c.split("%")[0]) for c in cells[2:5])
    assert 0 < magnitude <= 100 and 0 < chita <= 100 and dense > 50
