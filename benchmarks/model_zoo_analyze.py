"""Simulate damping rules on the sweeps saved by ``model_zoo.py --explore``.

    python benchmarks/model_zoo_analyze.py [explore.json]

Each sweep holds, for one (model, sparsity, held-out fraction, seed), the pruned
network at ``lambda_0 * 10^e`` for e = +1 .. -9 (one per decade), solved with
full CHITA and with a cheap CHITA (``max_swaps=0``), each chain warm-started
from the largest damping down; for every point: held-out loss / accuracy (on
the held-out gradient samples), validation and test accuracy, solve time.

A rule = (window [top - decades, top], step in decades, signal: held-out loss
or accuracy, candidate solver: full or cheap + one full solve at the chosen
damping). Rules are RANKED ON VALIDATION accuracy only (gap to the best point
of the sweep on validation); the test figures are then reported for the
chosen rule.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np


def pick(points, window, signal, cheap):
    key_l = "cheap_held_loss" if cheap else "held_loss"
    key_a = "cheap_held_acc" if cheap else "held_acc"
    cand = [q for q in points if any(abs(q["exp"] - e) < 1e-9 for e in window)]
    if signal == "loss":
        best = min(cand, key=lambda q: (q[key_l], -q["exp"]))
    else:
        best = min(cand, key=lambda q: (-q[key_a], q[key_l], -q["exp"]))
    cost = sum(q["cheap_time" if cheap else "time"] for q in cand) + (best["time"] if cheap else 0)
    return best, cost, len(cand)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else
                Path.home() / ".cache/chita_opt/model_zoo/explore.json")
    runs = [r for r in json.loads(path.read_text()) if not r["first_order"]]
    frac = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    runs = [r for r in runs if r["fraction"] == frac and r["seed"] == 0]
    print(f"# {len(runs)} sweeps from {path}, held-out fraction {frac}")
    rules = []
    for top, decades, step, signal, cheap in itertools.product(
        (1.0, 0.0, -1.0, -2.0), (2, 3, 4, 5, 6, 7, 8, 9, 10), (1, 2, 3), ("loss", "acc"),
        (False, True),
    ):
        if decades % step or top - decades < -9:
            continue
        window = [top - i * step for i in range(decades // step + 1)]
        vgap, tgap, costs, tvsmag = [], [], [], []
        for r in runs:
            pts = r["points"]
            fixed_t = np.median([q["time"] for q in pts]) + r["grad_time"]
            best, cost, _ = pick(pts, window, signal, cheap)
            vgap.append(best["val_acc"] - max(q["val_acc"] for q in pts))
            tgap.append(best["test_acc"] - max(q["test_acc"] for q in pts))
            tvsmag.append(best["test_acc"] - r["magnitude"]["test_acc"])
            costs.append((cost + r["grad_time"]) / fixed_t)
        rules.append(dict(top=top, decades=decades, step=step, n=len(window), signal=signal,
                          cheap=cheap, val_mean=np.mean(vgap), val_min=np.min(vgap),
                          test_mean=np.mean(tgap), test_min=np.min(tgap),
                          vs_mag_min=np.min(tvsmag), cost=np.median(costs),
                          cost_max=np.max(costs)))
    rules.sort(key=lambda d: (-round(d["val_mean"], 3), -d["val_min"], d["cost"]))
    hdr = ["top", "decades", "step", "points", "signal", "candidates", "val gap mean",
           "val gap worst", "test gap mean", "test gap worst", "test - magnitude worst",
           "cost x fixed (median)", "cost max"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for d in rules[:25]:
        print(f"| {d['top']:+.0f} | {d['decades']} | {d['step']} | {d['n']} | {d['signal']} | "
              f"{'cheap+1 full' if d['cheap'] else 'full'} | {d['val_mean']:+.2%} | "
              f"{d['val_min']:+.2%} | {d['test_mean']:+.2%} | {d['test_min']:+.2%} | "
              f"{d['vs_mag_min']:+.2%} | {d['cost']:.1f} | {d['cost_max']:.1f} |")
    # where the best points lie (relative exponent), per sweep
    print("\n| model | sparsity | lambda_0 | best val exp | best test exp | test at best | "
          "magnitude |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        pts = r["points"]
        bv = max(pts, key=lambda q: (q["val_acc"], q["exp"]))
        bt = max(pts, key=lambda q: (q["test_acc"], q["exp"]))
        print(f"| {r['model']} | {r['sparsity']} | {r['lambda0']:.2g} | {bv['exp']:+.0f} | "
              f"{bt['exp']:+.0f} | {bt['test_acc']:.1%} | {r['magnitude']['test_acc']:.1%} |")




def summarize_main(path: str) -> None:
    """Summary of ``model_zoo.py --json`` output: the rule against the targets."""
    recs = [r for r in json.loads(Path(path).read_text()) if "rule" in r]
    print(f"# {len(recs)} one-shot rows from {path}")
    hdr = ["model", "sparsity", "auto - hindsight", "auto - best-on-val fixed",
           "auto - default", "auto - magnitude", "target met", "cost / default",
           "cost / prune at the hindsight damping"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    met = 0
    for r in recs:
        a = r["rule"]["test_acc"]
        tol = 0.02 if r["model"].startswith("digits") else 0.01
        ok = a >= r["best"]["test_acc"] - tol and a >= r["magnitude"]["test_acc"]
        met += ok
        best_cpu = r["fixed"][f"{r['best']['damping']:g}"]["cpu"]
        print(f"| {r['model']} | {r['sparsity']} | {a - r['best']['test_acc']:+.1%} | "
              f"{a - r['val_choice']['test_acc']:+.1%} | {a - r['default']['test_acc']:+.1%} | "
              f"{a - r['magnitude']['test_acc']:+.1%} | {'yes' if ok else 'NO'} | "
              f"{r['rule']['cpu'] / r['default']['cpu']:.1f}x | "
              f"{r['rule']['cpu'] / best_cpu:.1f}x |")
    gaps = [r["rule"]["test_acc"] - r["best"]["test_acc"] for r in recs]
    dgaps = [r["default"]["test_acc"] - r["best"]["test_acc"] for r in recs]
    costs = [r["rule"]["cpu"] / r["default"]["cpu"] for r in recs]
    print(f"\ntarget met in {met}/{len(recs)} rows; auto - hindsight: mean {np.mean(gaps):+.2%}, "
          f"worst {np.min(gaps):+.2%}; default - hindsight: mean {np.mean(dgaps):+.2%}, "
          f"worst {np.min(dgaps):+.2%}; cost / default: median {np.median(costs):.1f}x, "
          f"max {np.max(costs):.1f}x")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--main":
        summarize_main(sys.argv[2])
    else:
        main()
