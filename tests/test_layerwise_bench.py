"""``benchmarks/lm_layerwise.py --smoke`` runs end to end and prints its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def test_lm_layerwise_smoke(tmp_path):
    env = dict(os.environ, CHITA_OPT_CACHE=str(tmp_path), OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lm_layerwise.py"), "--smoke"],
        capture_output=True, text=True, env=env, timeout=300, check=True,
    ).stdout
    assert "## Held-out perplexity" in out
    for method in ("magnitude", "wanda", "sparsegpt", "chita", "chita+grad"):
        assert f"| {method}" in out or f"{method} |" in out
    assert "layers chita <= SparseGPT" in out
    assert any(p.suffix == ".pt" for p in (tmp_path / "lm").iterdir())  # trained and cached
