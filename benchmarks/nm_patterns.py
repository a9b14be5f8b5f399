"""N:M sparsity on the model zoo: magnitude N:M against CHITA N:M, one-shot and CHITA++.

    python benchmarks/nm_patterns.py                # zoo MLPs, 1:4 / 2:4 / 4:8 (minutes)
    python benchmarks/nm_patterns.py --lenet        # also LeNet-300-100 on 28x28 MNIST digits
    python benchmarks/nm_patterns.py --smoke        # one tiny model, 2:4, < 60 s

Models are trained (and cached) by ``benchmarks/model_zoo.py``; gradients come
from the training digits (``prune`` at its defaults: up to 1000 rows, 20% of
the samples read held out to choose the damping), accuracy from the test
digits, never used for any choice. ``gap closed`` is
``(CHITA - magnitude) / (dense - magnitude)``. The last column compares the
solve time of the final CHITA stage with group caps to an unstructured CHITA
prune to the same number of non-zeros, both at the damping CHITA N:M chose
(the issue's "at most 1.5x"). Times are CPU seconds of this process (one thread).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_zoo import SMOKE_ZOO, ZOO, dataset, paper_mlpnet, train  # noqa: E402

from chita_opt.adapters.torch import prune  # noqa: E402

torch.set_num_threads(1)

LENET = {"mnist-lenet300-sgd": dict(data="mnist", arch="mlp", sizes=[784, 300, 100, 10],
                                    bias=True, opt="sgd", lr=0.05, epochs=20, batch=32)}
LOSS: dict[int, Any] = {}  # models whose outputs are log-probabilities (MLPNet)
MODELS = ("digits-mlp2-sgd", "digits-mlp3-adam-conv", "digits-mlp4-nobias-sgd")
PATTERNS = ("1:4", "2:4", "4:8")


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def run(model: torch.nn.Module, data: Any, X: torch.Tensor, y: torch.Tensor,
        **kwargs: Any) -> tuple[float, float, Any]:
    m = copy.deepcopy(model)
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prune(m, LOSS.get(id(model), F.cross_entropy), data, progress=False, **kwargs)
    return accuracy(m, X, y), time.process_time() - c0, report


def rows_for(name: str, cfg: dict[str, Any], patterns: tuple[str, ...], staged: bool
             ) -> list[list[str]]:
    if name == "mlpnet-paper":
        loaded = paper_mlpnet()
        if loaded is None:
            return [[name, "-", "no checkpoint in ../shared/data: skipped"]]
        model = loaded[0]
        LOSS[id(model)] = F.nll_loss
    else:
        model = train(name, cfg)
    split = dataset(cfg["data"])
    Xtr, ytr = split.part("train")
    Xte, yte = split.part("test")
    data = (Xtr, ytr)
    dense = accuracy(model, Xte, yte)
    out = []
    for pattern in patterns:
        try:
            mag, _, _ = run(model, data, Xte, yte, pattern=pattern, method="magnitude")
        except ValueError as exc:  # M does not divide an input size
            out.append([name, pattern, f"{dense:.1%}", f"n/a ({str(exc)[:60]}...)"])
            continue
        acc1, cpu1, rep1 = run(model, data, Xte, yte, pattern=pattern)
        last = rep1.stages[-1]
        # one capped solve against one unstructured solve to the same number of
        # non-zeros, at the damping CHITA N:M chose, on the same gradient rows
        d = last.damping if last.damping is not None and last.damping < float("inf") else 1e-3
        _, _, capd = run(model, data, Xte, yte, pattern=pattern, damping=d)
        _, _, unstr = run(model, data, Xte, yte, sparsity=rep1.sparsity, damping=d)
        ratio = capd.stages[-1].solve_time / max(unstr.stages[-1].solve_time, 1e-9)
        row = [name, pattern, f"{dense:.1%}", f"{mag:.1%}", f"{acc1:.1%} ({cpu1:.1f} s)",
               f"{(acc1 - mag) / max(dense - mag, 1e-9):.0%}"]
        if staged:
            acc3, cpu3, _ = run(model, data, Xte, yte, pattern=pattern, stages=3)
            row.append(f"{acc3:.1%} ({cpu3:.1f} s)")
        else:
            row.append("-")
        row.append(f"{ratio:.2f}x (damping {d:.2g})")
        out.append(row)
        print("  " + " | ".join(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="one tiny model, 2:4 only")
    ap.add_argument("--lenet", action="store_true", help="add LeNet-300-100 (28x28 digits)")
    ap.add_argument("--no-staged", action="store_true", help="skip the CHITA++ column")
    ap.add_argument("--mlpnet", action="store_true",
                    help="also the paper's MLPNet (../shared/data; 2,000 training digits)")
    args = ap.parse_args()
    if args.smoke:
        models = {"smoke-mlp-adam": SMOKE_ZOO["smoke-mlp-adam"]}
        patterns: tuple[str, ...] = ("2:4",)
    else:
        models = dict(LENET) if args.lenet else {}  # the target model first
        models.update({n: ZOO[n] for n in MODELS})
        if args.mlpnet:
            models["mlpnet-paper"] = {"data": "mnist"}
        patterns = PATTERNS
    head = ["model", "pattern", "dense", "magnitude N:M", "CHITA N:M one-shot (cpu)",
            "gap closed", "CHITA++ N:M, 3 stages (cpu)", "capped / unstructured solve"]
    rows = []
    for name, cfg in models.items():
        rows += rows_for(name, cfg, patterns, staged=not (args.no_staged or args.smoke))
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r + ["-"] * (len(head) - len(r))) + " |")


if __name__ == "__main__":
    main()
