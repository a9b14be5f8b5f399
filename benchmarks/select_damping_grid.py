"""``select_damping``'s candidates: the default relative to the Fisher scale against absolute ones.

    python benchmarks/select_damping_grid.py                # six rows, zoo and held-out models
    python benchmarks/select_damping_grid.py --rows zoo     # the zoo's 21 rows (about 15 min)
    python benchmarks/select_damping_grid.py --rows holdout # the 66 held-out rows (about 45 min)
    python benchmarks/select_damping_grid.py --smoke        # seconds (test_benchmarks_smoke.py)

``select_damping(model, loss, train digits, validation digits, sparsity=s)`` runs the whole
pruning once per candidate damping and keeps the best on the validation digits
(error, then loss, as ``damping="auto"`` ranks; the loss alone until 2026-12-08); the chosen
damping is then pruned with ``prune(damping=<chosen>)`` and scored on the test digits.
Columns: the old absolute candidates ``(1e-4, 1e-3, 1e-2, 1e-1)``, the default
(``grid=None``: ``lambda_0 * 10^{+1,-1,-3,-5,-7}``, relative to the Fisher's own scale at
the weights), a dense grid (``damping_grid(G, n_points=13, decades=12, top=1)``:
``lambda_0 * 10^{+1 .. -11}``, the recipe of docs/pruning_pytorch.md; its CPU time
includes the gradient pass for ``G``), ``prune()`` at its defaults (held-out share of the
training digits) and magnitude pruning. The models are trained and cached by
``benchmarks/model_zoo.py``. CPU seconds of one thread. ``--rows zoo`` / ``--rows holdout``
run every sparsity of every model of ``ZOO`` (the paper's MLPNet aside) / ``HOLDOUT_ZOO``
(the tables of docs/benchmarks_zoo.md, "select_damping ranks as damping='auto' does").
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402
from model_zoo import HOLDOUT_ZOO, SMOKE_ZOO, SPARSITIES, ZOO, dataset, loss_function, train  # noqa: E402
from stage_damping import accuracy, prune_copy  # noqa: E402

from chita_opt.adapters.torch import gradient_matrix, select_damping  # noqa: E402
from chita_opt.pruning import DEFAULT_DAMPING_GRID  # noqa: E402
from chita_opt.pruning.damping import damping_grid  # noqa: E402

ROWS = (
    ("digits-mlp3-adam-conv", 0.8),
    ("mnist14-lenet-sgd", 0.9),
    ("ho-digits-mlp-tanh-adam", 0.8),
    ("ho-mnist14-cnn-sgd", 0.9),
    ("ho-mnist-mlp-adam-wd", 0.95),
    ("mnist14-cnn-bn-adam", 0.9),
)
SMOKE_ROWS = (("smoke-mlp-adam", 0.8),)


def zoo_rows(zoo: dict[str, dict[str, Any]]) -> tuple[tuple[str, float], ...]:
    """Every model of ``zoo`` at each sparsity of its dataset (as zoo_defaults.py runs them)."""
    return tuple((name, s) for name, cfg in zoo.items() for s in SPARSITIES[cfg["data"]])


ROW_SETS = {"six": lambda: ROWS, "zoo": lambda: zoo_rows(ZOO),
            "holdout": lambda: zoo_rows(HOLDOUT_ZOO)}


def dense_grid(model: torch.nn.Module, loss: Any, train_part: Any) -> Any:
    """The recipe of docs/pruning_pytorch.md; its gradient pass is part of its time."""
    G, _, _ = gradient_matrix(model, loss, train_part)
    return damping_grid(G, n_points=13, decades=12, top=1)


# the candidates of the three select_damping columns, from (model, loss, training digits)
GRIDS = (lambda model, loss, train_part: DEFAULT_DAMPING_GRID,
         lambda model, loss, train_part: None,  # select_damping's default, relative to lambda_0
         dense_grid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", choices=sorted(ROW_SETS), default="six",
                    help="which rows: six chosen ones (default), the zoo's, the held-out models'")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _common.print_header("select_damping: absolute against Fisher-relative candidates",
                         ["torch"])
    configs = {**SMOKE_ZOO, **ZOO, **HOLDOUT_ZOO}
    headers = ["model", "sparsity", "absolute grid (chosen; cpu)", "default grid (chosen; cpu)",
               "dense grid (chosen; cpu)", "prune() defaults", "magnitude"]
    rows: list[list[Any]] = []
    means: dict[str, list[float]] = {h: [] for h in headers[2:]}
    for name, sparsity in SMOKE_ROWS if args.smoke else ROW_SETS[args.rows]():
        cfg = configs[name]
        loss = loss_function(cfg.get("loss"))
        model = train(name, cfg)
        data = dataset(cfg["data"])
        train_part, val_part = data.part("train"), data.part("val")
        row: list[Any] = [name, sparsity]
        for column, make_grid in zip(headers[2:5], GRIDS, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c0 = time.process_time()
                sel = select_damping(model, loss, train_part, val_part,
                                     sparsity=sparsity, grid=make_grid(model, loss, train_part))
                cpu = time.process_time() - c0
            pruned, _, _ = prune_copy(model, cfg, sparsity=sparsity, damping=sel.damping)
            acc = accuracy(pruned, cfg, "test")
            means[column].append(acc)
            row.append(f"{acc:.1%} ({sel.damping:.2g}; {cpu:.1f} s)")
        for column, kwargs in ((headers[5], {}), (headers[6], {"method": "magnitude"})):
            pruned, _, _ = prune_copy(model, cfg, sparsity=sparsity, **kwargs)
            acc = accuracy(pruned, cfg, "test")
            means[column].append(acc)
            row.append(f"{acc:.1%}")
        rows.append(row)
        print("  " + " | ".join(map(str, row)), flush=True)
    print()
    _common.print_table(headers, rows)
    print("\nmean test accuracy: " + ", ".join(
        f"{h.split(' (')[0]} {statistics.mean(v):.2%}" for h, v in means.items()))
    magnitude = means[headers[6]]
    print(f"rows below magnitude pruning (of {len(magnitude)}): " + ", ".join(
        f"{h.split(' (')[0]} {sum(a < m - 1e-9 for a, m in zip(v, magnitude, strict=True))}"
        for h, v in list(means.items())[:-1]))


if __name__ == "__main__":
    main()
