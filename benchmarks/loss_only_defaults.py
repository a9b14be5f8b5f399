"""prune() at its defaults on models scored by a loss alone: autoencoders and a language model.

    python benchmarks/loss_only_defaults.py            # about 5 minutes on 2 cores
    python benchmarks/loss_only_defaults.py --smoke    # seconds (CI)

``damping="auto"`` ranks its candidates by the held-out classification error,
ties broken by the loss, when the outputs are class scores (the digit zoo of
``zoo_defaults.py``, on which the rule was chosen). Anything else -- a
reconstruction, a regression, the next-byte logits of a language model -- is
ranked by the held-out loss alone, a path the zoo never exercises. These models
took no part in choosing the rule:

* ``digits-ae-adam`` / ``digits-ae-sgd``: a 64-128-16-128-64 ReLU autoencoder of
  the sklearn 8x8 digits (MSE), trained with Adam (200 epochs) or SGD with
  momentum (100 epochs) on 1,000 shuffled digits; scored by the test MSE on the
  other 797 digits.
* ``bytelm-2x64``: a 2-layer byte-level transformer (d_model 64, LayerNorm, GELU,
  ``benchmarks/_lm_model.py``) trained 600 steps on CPython's help topics;
  gradients from 1,500 windows of the training text; scored by the perplexity
  of the held-out 10% of the text.

Every prune gets the same data (``prune`` holds part of it out for the choice;
a fixed damping fits on all it reads). Columns: magnitude pruning, the
defaults (chosen damping, CPU seconds), the best fixed damping of ``GRID`` in
hindsight on the test data (an upper bound, not a method), and the CPU ratio
of the defaults to ``prune(damping=<the chosen damping>)``. Lower is better
in every score column. One thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402
from _lm_model import SMOKE, Config, corpus, perplexity, trained_model, windows  # noqa: E402
from stage_damping import prune_quietly  # noqa: E402

GRID = (1e-11, 1e-9, 1e-7, 1e-5, 1e-3, 1e-1)
SMOKE_GRID = (1e-7, 1e-3)
LM = Config(d_model=64, n_layers=2, n_heads=2, d_ff=256, context=64, steps=600, batch=16)


@dataclass
class Case:
    """A trained model, the data ``prune`` reads, and how the pruned copy is scored."""

    name: str
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    data: tuple[torch.Tensor, torch.Tensor]
    score: Callable[[nn.Module], float]
    score_name: str
    sparsities: tuple[float, ...]
    stages: int  # CHITA++ stages of the extra row at the highest sparsity


def autoencoder_cases(smoke: bool) -> list[Case]:
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.float32) / 16
    X = torch.from_numpy(X[np.random.default_rng(0).permutation(len(X))])
    train, test = X[:1000], X[1000:]

    def test_mse(m: nn.Module) -> float:
        with torch.no_grad():
            return float(F.mse_loss(m(test), test))

    cases = []
    for optimiser, epochs in (("adam", 200), ("sgd", 100)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16), nn.ReLU(),
                              nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64))
        opt = (torch.optim.Adam(model.parameters(), 1e-3) if optimiser == "adam"
               else torch.optim.SGD(model.parameters(), 0.1, momentum=0.9))
        for _ in range(5 if smoke else epochs):
            for batch in torch.randperm(len(train)).split(32):
                loss = F.mse_loss(model(train[batch]), train[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        cases.append(Case(f"digits-ae-{optimiser}", model.eval(), F.mse_loss, (train, train),
                          test_mse, "test MSE", (0.5,) if smoke else (0.5, 0.8, 0.9),
                          2 if smoke else 5))
        if smoke:
            break
    return cases


def language_model_case(smoke: bool) -> Case:
    cfg = SMOKE if smoke else LM
    model = trained_model(cfg, log=lambda *a, **k: None)
    train, held = corpus()
    w = windows(train, cfg.context, n=300 if smoke else 1500, seed=1)

    def next_byte_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    held = held[: 20_000] if smoke else held
    return Case("bytelm-2x64" if not smoke else "bytelm-smoke", model, next_byte_loss,
                (w[:, :-1], w[:, 1:]), lambda m: perplexity(m, held, cfg.context),
                "held-out perplexity", (0.5,) if smoke else (0.5, 0.7), 2 if smoke else 3)


def prune_copy(case: Case, **kwargs) -> tuple[float, object, float]:
    """(score of the pruned copy, report, CPU seconds of the ``prune`` call)."""
    m, report, cpu = prune_quietly(case.model, case.loss, case.data, **kwargs)
    return case.score(m), report, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _common.print_header("prune() at its defaults on loss-scored models (no error rate)",
                         ["torch"])
    cases = [*autoencoder_cases(args.smoke), language_model_case(args.smoke)]
    prune_copy(cases[0], sparsity=0.5)  # compile the Numba kernels first
    grid = SMOKE_GRID if args.smoke else GRID
    headers = ["model", "score", "sparsity", "dense", "magnitude", "prune() defaults",
               "chosen damping", "cpu s", "best fixed, hindsight (damping)", "cost ratio"]
    rows, ratios, beats = [], [], []
    one_shot: dict[tuple[str, float], tuple[float, float]] = {}  # (magnitude, defaults)
    for case in cases:
        dense = case.score(case.model)
        for sparsity in case.sparsities:
            mag, _, _ = prune_copy(case, sparsity=sparsity, method="magnitude")
            auto, report, cpu = prune_copy(case, sparsity=sparsity)
            chosen = report.stages[-1].damping
            fixed = {d: prune_copy(case, sparsity=sparsity, damping=d)[0] for d in grid}
            d_best = min(fixed, key=lambda d: (fixed[d], -d))
            ratio = "-"
            if chosen != float("inf"):
                ratios.append(cpu / prune_copy(case, sparsity=sparsity, damping=chosen)[2])
                ratio = f"{ratios[-1]:.1f}x"
            beats.append(auto < mag)
            one_shot[case.name, sparsity] = mag, auto
            row = [case.name, case.score_name, sparsity, f"{dense:.4g}", f"{mag:.4g}",
                   f"{auto:.4g}", f"{chosen:.2g}", f"{cpu:.1f}",
                   f"{fixed[d_best]:.4g} ({d_best:.0e})", ratio]
            rows.append(row)
            print("  " + " | ".join(map(str, row)), flush=True)
    print()
    _common.print_table(headers, rows)
    staged_headers = ["model", "score", "sparsity", "stages", "magnitude", "one-shot defaults",
                      "CHITA++ defaults (cpu s)", "CHITA++ damping 1e-3"]
    staged = []
    for case in cases:
        sparsity = case.sparsities[-1]
        mag, one = one_shot[case.name, sparsity]
        multi, _, cpu = prune_copy(case, sparsity=sparsity, stages=case.stages)
        fixed = prune_copy(case, sparsity=sparsity, stages=case.stages, damping=1e-3)[0]
        beats.append(multi < mag)
        staged.append([case.name, case.score_name, sparsity, case.stages, f"{mag:.4g}",
                       f"{one:.4g}", f"{multi:.4g} ({cpu:.1f})", f"{fixed:.4g}"])
        print("  " + " | ".join(map(str, staged[-1])), flush=True)
    print()
    _common.print_table(staged_headers, staged)
    print(f"\ndefaults below magnitude pruning's score (better) in {sum(beats)} of {len(beats)} "
          f"rows")
    if ratios:
        print(f"cost ratio (prune() / prune(damping=chosen), CPU): median "
              f"{statistics.median(ratios):.1f}x, max {max(ratios):.1f}x over {len(ratios)} rows")


if __name__ == "__main__":
    main()
