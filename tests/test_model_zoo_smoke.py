"""benchmarks/model_zoo.py --smoke runs in a subprocess and prints sane tables.

Two tiny MLPs trained on sklearn's digits (cached in a temporary directory),
one sparsity, one CHITA++ run; no checkpoint or download needed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_benchmarks_smoke import tables

REPO = Path(__file__).resolve().parents[1]


def test_model_zoo_smoke(tmp_path):
    if any(importlib.util.find_spec(m) is None for m in ("torch", "sklearn")):
        pytest.skip("needs torch and scikit-learn")
    env = dict(os.environ, CHITA_ZOO_CACHE=str(tmp_path), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "model_zoo.py"), "--smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, f"model_zoo.py failed:\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    assert "model_zoo.py --smoke" in out and "# load avg" in out
    found = tables(out)
    main = [t for t in found if t and "auto rule (damping; cpu)" in t[0]]
    assert main and len(main[0]) == 2, out
    for row in main[0]:
        for col in ("magnitude", "default 1e-3 (cpu)", "best fixed, hindsight on test (damping)",
                    "auto rule (damping; cpu)"):
            acc = float(row[col].split("%")[0])
            assert 0 < acc <= 100, row
    staged = [t for t in found if t and "CHITA++ auto per stage (cpu)" in t[0]]
    assert staged and len(staged[0]) == 1, out
    assert list(tmp_path.glob("smoke-mlp-adam-*.pt")), "trained weights cached by config hash"


def test_every_zoo_architecture_builds_and_classifies_its_digits():
    """The zoo's model configurations (CI trains only the smoke ones): each builds and maps
    a batch of its dataset's inputs to one score per class."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from model_zoo import HOLDOUT_ZOO, SMOKE_ZOO, ZOO, build

    pixels = {"digits": 64, "mnist14": 196, "mnist": 784, "synth": 40}
    classes = {"synth": 5}
    configs = {**SMOKE_ZOO, **ZOO, **HOLDOUT_ZOO}
    assert {cfg["arch"] for cfg in configs.values()} == {"mlp", "cnn-bn", "cnn", "resnet-bn",
                                                          "mlp-ln", "sepcnn-bn", "transformer",
                                                          "cnn-gn", "gru"}
    for name, cfg in configs.items():
        model = build(cfg).eval()
        with torch.no_grad():
            out = model(torch.randn(3, pixels[cfg["data"]]))
        assert out.shape == (3, classes.get(cfg["data"], 10)), name
        assert torch.isfinite(out).all(), name
