"""One-shot ``prune()`` at its defaults on the model zoo's rows (quick; no oracle by default).

    python benchmarks/zoo_defaults.py                      # test digits, the zoo
    python benchmarks/zoo_defaults.py --val                # validation digits (to choose on)
    python benchmarks/zoo_defaults.py --holdout --hindsight --cost
                                                           # models no choice was made on
    python benchmarks/zoo_defaults.py --hindsight --seeds 5 --only mnist14-lenet-sgd:0.95
    python benchmarks/zoo_defaults.py --holdout --hindsight --val-choice
    python benchmarks/zoo_defaults.py --smoke              # seconds (CI)

``--seeds N`` averages the defaults and every fixed damping over ``random_state`` 0 .. N-1
(the gradient rows and the held-out split are random draws: a single draw moved a
0.9-sparse BN CNN by several points), ``--only MODEL[:SPARSITY] ...`` picks rows.

``prune(model, loss, train digits, sparsity=s)`` -- everything at the package defaults,
``damping="auto"`` included -- against magnitude pruning, for every model of
``benchmarks/model_zoo.py`` (trained and cached there) and the paper's MLPNet when
``../shared/data`` has it. ``--holdout`` takes the zoo's held-out models instead
(``HOLDOUT_ZOO``: never used to choose any setting). ``--hindsight`` adds the best fixed
damping in hindsight: ``prune(damping=d)`` for every d of ``ABS_GRID`` (1e-12 .. 1), the
best accuracy on the reported digits -- an upper bound, not a method. ``--val-choice``
(with ``--hindsight`` on the test digits) also scores those prunes on the validation
digits and reports the test accuracy of the damping best there: a choice made with a
labelled validation set the model never trained on (1,000 MNIST digits, four times the
defaults' 250 held-out samples; 401 sklearn digits), i.e. how close to the test-digit
hindsight any held-out choice can be expected to come. ``--cost`` adds
``prune(damping=<the damping the defaults chose>)`` and the ratio of CPU times.
``--held-out-val`` passes the validation digits as ``prune(held_out=...)`` (what a user
with a validation set can do) instead of holding out a share of the training digits. The full
zoo table (research IHT, the low-level rule) is ``benchmarks/model_zoo.py``; this script
is what a user gets. CPU seconds of one thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402
from model_zoo import (  # noqa: E402
    ABS_GRID,
    HOLDOUT_ZOO,
    SMOKE_ZOO,
    SPARSITIES,
    ZOO,
    dataset,
    paper_mlpnet,
    train,
)
from stage_damping import accuracy, mean_run, prune_copy, run  # noqa: E402

import chita_opt.pruning.damping as damping_rule  # noqa: E402

SMOKE_GRID = (1e-6, 1e-3, 1.0)


def tolerance(cfg: dict[str, Any]) -> float:
    """The issue's "within" tolerance: 2 points on the 397 sklearn test digits, else 1."""
    return 0.02 if cfg["data"] == "digits" else 0.01


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", action="store_true", help="score on the validation digits")
    ap.add_argument("--holdout", action="store_true",
                    help="the held-out models (HOLDOUT_ZOO) instead of the zoo")
    ap.add_argument("--hindsight", action="store_true",
                    help="add the best fixed damping of ABS_GRID on the reported digits")
    ap.add_argument("--val-choice", action="store_true",
                    help="with --hindsight on test digits: add the damping of ABS_GRID best on "
                         "the validation digits, scored on the test digits")
    ap.add_argument("--held-out-val", action="store_true",
                    help="pass the validation digits to prune() as held_out= (what a user "
                         "with a validation set can do); report on the test digits")
    ap.add_argument("--cost", action="store_true",
                    help="add a prune at the damping the defaults chose, and the CPU ratio")
    ap.add_argument("--rule", default="",
                    help="override the rule's constants of chita_opt.pruning.damping, e.g. "
                         "N_POINTS=2,TOP=0,DECADES=5,REFINE_STEPS=2 (to choose them on --val)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="average every prune over random_state = 0 .. N-1 (row draws and "
                         "held-out split); the hindsight damping is the best mean")
    ap.add_argument("--only", nargs="*", default=[],
                    help="rows to run, as MODEL or MODEL:SPARSITY")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.val_choice and (args.val or not args.hindsight):
        ap.error("--val-choice: expected --hindsight on the test digits (without --val)")
    if args.held_out_val and args.val:
        ap.error("--held-out-val: expected the test digits (without --val)")
    for item in filter(None, args.rule.split(",")):
        name, value = item.split("=")
        old = getattr(damping_rule, name)  # AttributeError on a misspelt name
        setattr(damping_rule, name, type(old)(float(value)))
    torch.set_num_threads(1)
    part = "val" if args.val else "test"
    which = "held-out models" if args.holdout else "zoo"
    _common.print_header(f"prune() at its defaults, one-shot, {part} digits, {which}"
                         + (", held_out=validation digits" if args.held_out_val else "")
                         + (f", rule {args.rule}" if args.rule else "")
                         + (f", mean over random_state 0..{args.seeds - 1}"
                            if args.seeds > 1 else ""), ["torch"])
    configs = SMOKE_ZOO if args.smoke else HOLDOUT_ZOO if args.holdout else ZOO
    zoo = [(name, train(name, cfg), cfg) for name, cfg in configs.items()]
    paper = None if args.smoke or args.holdout else paper_mlpnet()
    if paper is not None:
        zoo.append(("mlpnet-paper", *paper))
    run(zoo[0][1], zoo[0][2], part, sparsity=0.5)  # compile the Numba kernels first
    headers = ["model", "sparsity", "magnitude", "prune() defaults", "cpu s", "chosen damping",
               "defaults - magnitude"]
    if args.hindsight:
        headers += ["best fixed, hindsight (damping)", "defaults - hindsight", "within"]
    if args.val_choice:
        headers += ["best fixed on validation digits (damping)", "within, validation choice"]
    if args.cost:
        headers += ["cpu s at the chosen damping", "cost ratio"]
    seeds = range(max(args.seeds, 1))

    def mean_accuracy(model: torch.nn.Module, cfg: dict[str, Any], **kwargs: Any) -> float:
        return mean_run(model, cfg, part, len(seeds), **kwargs)[0]

    def mean_parts(model: torch.nn.Module, cfg: dict[str, Any],
                   **kwargs: Any) -> tuple[float, float]:
        """(validation, test) accuracy of the same prunes, averaged over the draws."""
        pruned = [prune_copy(model, cfg, random_state=r, **kwargs)[0] for r in seeds]
        return (statistics.mean(accuracy(m, cfg, "val") for m in pruned),
                statistics.mean(accuracy(m, cfg, "test") for m in pruned))

    rows, ratios, within, within_val, val_accs = [], [], [], [], []
    for name, model, cfg in zoo:
        for sparsity in (0.9,) if args.smoke else SPARSITIES[cfg["data"]]:
            if args.only and not {name, f"{name}:{sparsity}"} & set(args.only):
                continue
            mag, _ = run(model, cfg, part, sparsity=sparsity, method="magnitude")
            # the defaults, held out from the training digits or given the validation digits
            given = {"held_out": dataset(cfg["data"]).part("val")} if args.held_out_val else {}
            pruned, report, cpu = prune_copy(model, cfg, sparsity=sparsity, **given)
            acc = accuracy(pruned, cfg, part)
            if len(seeds) > 1:  # seed 0 above gives the chosen damping and the time
                acc = statistics.mean([acc, *(run(model, cfg, part, sparsity=sparsity,
                                                  random_state=r, **given)[0]
                                              for r in seeds[1:])])
            chosen = report.stages[-1].damping
            row: list[Any] = [name, sparsity, f"{mag:.1%}", f"{acc:.1%}", f"{cpu:.1f}",
                              f"{chosen:.2g}", f"{100 * (acc - mag):+.1f}"]
            if args.hindsight:
                grid = SMOKE_GRID if args.smoke else ABS_GRID
                if args.val_choice:  # one prune per damping and draw, scored on both parts
                    both = {d: mean_parts(model, cfg, sparsity=sparsity, damping=d)
                            for d in grid}
                    fixed = {d: test for d, (_, test) in both.items()}
                else:
                    fixed = {d: mean_accuracy(model, cfg, sparsity=sparsity, damping=d)
                             for d in grid}
                d_best = max(fixed, key=lambda d: (fixed[d], d))
                ok = acc >= fixed[d_best] - tolerance(cfg) - 1e-9
                within.append(ok)
                row += [f"{fixed[d_best]:.1%} ({d_best:.0e})",
                        f"{100 * (acc - fixed[d_best]):+.1f}", "yes" if ok else "NO"]
                if args.val_choice:
                    d_val = max(both, key=lambda d: (both[d][0], d))
                    ok_val = fixed[d_val] >= fixed[d_best] - tolerance(cfg) - 1e-9
                    within_val.append(ok_val)
                    val_accs.append(fixed[d_val])
                    row += [f"{fixed[d_val]:.1%} ({d_val:.0e})", "yes" if ok_val else "NO"]
            if args.cost:
                if chosen == float("inf"):  # magnitude pruning was chosen: nothing to solve
                    row += ["-", "-"]
                else:
                    _, _, cpu_fixed = prune_copy(model, cfg, sparsity=sparsity, damping=chosen)
                    ratios.append(cpu / cpu_fixed)
                    row += [f"{cpu_fixed:.1f}", f"{ratios[-1]:.1f}x"]
            rows.append(row)
            print("  " + " | ".join(map(str, row)), flush=True)
    print()
    _common.print_table(headers, rows)
    mags = [float(r[2].rstrip("%")) for r in rows]
    accs = [float(r[3].rstrip("%")) for r in rows]
    print(f"\nmean over {len(rows)} rows: magnitude {statistics.mean(mags):.2f}%, "
          f"defaults {statistics.mean(accs):.2f}%; below magnitude in "
          f"{sum(a < m for a, m in zip(accs, mags, strict=True))} rows")
    if within:
        print(f"within tolerance of the hindsight damping (2 points on sklearn digits, else 1): "
              f"{sum(within)} of {len(within)}")
    if within_val:
        print(f"the damping best on the validation digits: {statistics.mean(val_accs):.2%} on "
              f"test, within tolerance of the hindsight damping in {sum(within_val)} of "
              f"{len(within_val)}")
    if ratios:
        print(f"cost ratio (prune() / prune(damping=chosen), CPU): median "
              f"{statistics.median(ratios):.1f}x, max {max(ratios):.1f}x over {len(ratios)} rows")


if __name__ == "__main__":
    main()
