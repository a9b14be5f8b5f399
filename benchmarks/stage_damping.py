"""CHITA++ at prune()'s defaults on several models: the damping of the stages before the last.

    python benchmarks/stage_damping.py --sweep   # choose STAGE_DAMPING on VALIDATION digits
    python benchmarks/stage_damping.py           # the defaults on TEST digits
    python benchmarks/stage_damping.py --holdout # the same on the held-out models, TEST digits
    python benchmarks/stage_damping.py --smoke   # seconds (CI: tests/test_benchmarks_smoke.py)
    python benchmarks/stage_damping.py --sweep --values 1e-2 1e-3 --seeds 3   # mean of 3 draws

With ``damping="auto"`` the stages before the last use ``STAGE_DAMPING * lambda_0`` of
their own gradients (``chita_opt/pruning/damping.py``) and the last stage searches.
``--sweep`` runs ``prune(model, loss, train digits, sparsity=s, stages=T)`` for several
values of the constant and prints the accuracy on the validation digits; the default
mode compares, on the test digits, one-shot magnitude pruning, CHITA++ with the old fixed
damping 1e-3, CHITA++ at the defaults and one-shot at the defaults. The models are the
zoo's (trained and cached by ``benchmarks/model_zoo.py``) plus the paper's MLPNet when
``../shared/data`` has it; ``--holdout`` takes the zoo's held-out models (``HOLDOUT_ZOO``,
never used to choose a setting) at their highest sparsity, 5 stages. ``--seeds N``
averages every prune over ``random_state`` 0 .. N-1 (gradient rows and held-out share are
random draws). CPU seconds of one thread (the mean over the draws).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
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
from model_zoo import (  # noqa: E402
    HOLDOUT_ZOO,
    SMOKE_ZOO,
    SPARSITIES,
    ZOO,
    dataset,
    loss_function,
    paper_mlpnet,
    train,
)

import chita_opt.pruning.damping as damping_rule  # noqa: E402
from chita_opt.adapters.torch import prune  # noqa: E402

#: model -> (sparsity, stages)
RUNS = {
    "mnist14-lenet-sgd": (0.95, 5),
    "digits-mlp3-adam-conv": (0.9, 5),
    "mnist14-cnn-bn-adam": (0.9, 5),
    "digits-mlp3-adam-early": (0.9, 5),
    "digits-mlp2-sgd": (0.95, 5),
    "mlpnet-paper": (0.98, 15),
    # added 2026-12-07 night: the zoo's other two models
    "digits-mlp4-nobias-sgd": (0.9, 5),
    "digits-cnn-bn-adam": (0.9, 5),
}
SMOKE_RUNS = {"smoke-mlp-adam": (0.9, 3)}
SWEEP = (1e-1, 1e-2, 1e-3, 1e-4)


def holdout_runs() -> dict[str, tuple[float, int]]:
    """Every held-out model at the highest sparsity of its dataset, 5 stages."""
    return {name: (SPARSITIES[cfg["data"]][-1], 5) for name, cfg in HOLDOUT_ZOO.items()}


def models(smoke: bool, holdout: bool = False, only: Any = (),
           ) -> list[tuple[str, torch.nn.Module, dict[str, Any], float, int]]:
    out = []
    runs = SMOKE_RUNS if smoke else holdout_runs() if holdout else RUNS
    zoo = SMOKE_ZOO if smoke else HOLDOUT_ZOO if holdout else ZOO
    unknown = set(only) - set(runs)
    if unknown:
        raise SystemExit(f"--only: expected names among {sorted(runs)}, got {sorted(unknown)}")
    for name, (sparsity, stages) in runs.items():
        if only and name not in only:
            continue
        if name == "mlpnet-paper":
            paper = paper_mlpnet()
            if paper is None:
                print("# paper MLPNet skipped: no checkpoint in ../shared/data", flush=True)
                continue
            model, cfg = paper
        else:
            cfg = zoo[name]
            model = train(name, cfg)
        out.append((name, model, cfg, sparsity, stages))
    return out


def prune_quietly(model: torch.nn.Module, loss: Any, data: Any,
                  **kwargs: Any) -> tuple[torch.nn.Module, Any, float]:
    """``prune`` a copy of ``model`` without progress bars or warnings:
    (the copy, its report, CPU seconds of the call)."""
    m = copy.deepcopy(model)
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prune(m, loss, data, progress=False, **kwargs)
    return m, report, time.process_time() - c0


def prune_copy(model: torch.nn.Module, cfg: dict[str, Any],
               **kwargs: Any) -> tuple[torch.nn.Module, Any, float]:
    """``prune`` a copy on the training digits: (the copy, its report, CPU seconds)."""
    loss = loss_function(cfg.get("loss"))
    return prune_quietly(model, loss, dataset(cfg["data"]).part("train"), **kwargs)


def accuracy(model: torch.nn.Module, cfg: dict[str, Any], part: str) -> float:
    """Accuracy on the ``part`` ("val" or "test") digits of the model's dataset."""
    Xs, ys = dataset(cfg["data"]).part(part)
    model.eval()
    with torch.no_grad():
        return float((model(Xs).argmax(1) == ys).float().mean())


def run(model: torch.nn.Module, cfg: dict[str, Any], part: str,
        **kwargs: Any) -> tuple[float, float]:
    """``prune`` a copy on the training digits: (accuracy on ``part``, CPU seconds)."""
    m, _, cpu = prune_copy(model, cfg, **kwargs)
    return accuracy(m, cfg, part), cpu


def mean_run(model: torch.nn.Module, cfg: dict[str, Any], part: str, seeds: int = 1,
             **kwargs: Any) -> tuple[float, float]:
    """:func:`run` averaged over ``random_state`` 0 .. seeds-1: (accuracy, CPU seconds)."""
    runs = [run(model, cfg, part, random_state=r, **kwargs) for r in range(seeds)]
    return statistics.mean(a for a, _ in runs), statistics.mean(c for _, c in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="STAGE_DAMPING on validation digits")
    ap.add_argument("--values", type=float, nargs="*", default=list(SWEEP),
                    help="--sweep: the STAGE_DAMPING values to try")
    ap.add_argument("--holdout", action="store_true",
                    help="the held-out models (HOLDOUT_ZOO) at their highest sparsity")
    ap.add_argument("--seeds", type=int, default=1,
                    help="average every prune over random_state = 0 .. N-1")
    ap.add_argument("--only", nargs="*", default=[], help="models to run (default: all)")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.sweep and args.holdout:
        ap.error("--sweep chooses a setting: not on the held-out models")
    torch.set_num_threads(1)
    _common.print_header("CHITA++ at prune()'s defaults: STAGE_DAMPING", ["torch"])
    zoo = models(args.smoke, args.holdout, args.only)

    run(zoo[0][1], zoo[0][2], "val", sparsity=0.5)  # compile the Numba kernels first
    rows = []
    if args.sweep:
        values = args.values[:2] if args.smoke else args.values
        default = damping_rule.STAGE_DAMPING
        headers = ["model", "sparsity", "stages",
                   *[f"STAGE_DAMPING {v:g} (val; cpu)" for v in values]]
        for name, model, cfg, sparsity, stages in zoo:
            row = [name, sparsity, stages]
            for v in values:
                damping_rule.STAGE_DAMPING = v
                try:
                    acc, cpu = mean_run(model, cfg, "val", args.seeds, sparsity=sparsity,
                                        stages=stages)
                finally:
                    damping_rule.STAGE_DAMPING = default
                row.append(f"{acc:.1%} ({cpu:.1f} s)")
            rows.append(row)
            print("  " + " | ".join(map(str, row)), flush=True)
    else:
        headers = ["model", "sparsity", "stages", "magnitude", "CHITA++ damping 1e-3 (cpu)",
                   "CHITA++ defaults (cpu)", "one-shot defaults (cpu)"]
        for name, model, cfg, sparsity, stages in zoo:
            mag, _ = mean_run(model, cfg, "test", args.seeds, sparsity=sparsity,
                              method="magnitude")
            row: list[Any] = [name, sparsity, stages, f"{mag:.1%}"]
            for kwargs in (dict(stages=stages, damping=1e-3), dict(stages=stages), {}):
                acc, cpu = mean_run(model, cfg, "test", args.seeds, sparsity=sparsity, **kwargs)
                row.append(f"{acc:.1%} ({cpu:.1f} s)")
            rows.append(row)
            print("  " + " | ".join(map(str, row)), flush=True)
    print()
    _common.print_table(headers, rows)


if __name__ == "__main__":
    main()
