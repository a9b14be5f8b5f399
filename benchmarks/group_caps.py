"""Cost of group caps: a 2:4-capped solve against the uncapped one at the same k.

On a pruning-shaped problem (``chita_opt.datasets.make_gradient_like``,
float32, ``y = G w_bar``, ``l2 = n * damping``) with groups of 4 consecutive
coordinates and cap 2 (so ``k = p / 2`` is implied), the default method is
timed with and without the caps, in the same run, with the same k; the
script prints both median times, their ratio, the objectives and whether the
capped result holds exactly 2 non-zeros in every group. Also the IHT and
magnitude methods, whose per-iteration projection is what the caps change.

BLAS threads: ``threads=1`` in every solve (the setting the solver docs
recommend on a busy machine); set OMP/NUMBA/OPENBLAS_NUM_THREADS to pin the
rest. The header prints the thread settings in force.

    python benchmarks/group_caps.py                  # n = 500, p = 20,000
    python benchmarks/group_caps.py --n 200 --p 4000
    python benchmarks/group_caps.py --smoke          # tiny, seconds
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import print_header, print_table, time_call

import chita_opt
from chita_opt import L0Problem
from chita_opt.datasets import make_gradient_like

METHODS = ("magnitude", "iht", "chita")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--p", type=int, default=20_000)
    parser.add_argument("--n-keep", type=int, default=2, help="N of N:M")
    parser.add_argument("--m", type=int, default=4, help="M of N:M")
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.p, args.repeats = 30, 400, 1
    print_header("group caps (N:M) against the uncapped solve at the same k")
    print("# thread env: " + ", ".join(
        f"{v}={os.environ.get(v, 'unset')}"
        for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    ) + "; solves run with threads=1")
    data = make_gradient_like(args.n, args.p, random_state=0)
    groups = np.arange(args.p) // args.m
    capped = L0Problem.from_gradients(data.G, data.w_bar, k=args.p, damping=args.damping)
    capped = capped.replace(groups=groups, group_k=args.n_keep)
    plain = capped.replace(groups=None, k=capped.k)
    _ = plain.col_sq_norms, capped.col_sq_norms  # the shared setup, outside the timings
    print(f"# n = {args.n}, p = {args.p}, {args.n_keep}:{args.m} groups, k = {capped.k}, "
          f"dtype {plain.dtype}, l2 = {plain.l2:g}, repeats = {args.repeats} (median)\n")
    rows = []
    for method in METHODS:
        t_plain = time_call(lambda m=method: chita_opt.solve(plain, method=m, threads=1),
                            repeats=args.repeats)
        t_cap = time_call(lambda m=method: chita_opt.solve(capped, method=m, threads=1),
                          repeats=args.repeats)
        sol = t_cap.result
        counts = np.bincount(groups[sol.support], minlength=args.p // args.m)
        rows.append([
            method, t_plain.median, t_cap.median, t_cap.median / t_plain.median,
            t_plain.result.objective, sol.objective,
            "yes" if np.all(counts == args.n_keep) else f"no (min {counts.min()})",
        ])
    print_table(["method", "uncapped s", "capped s", "ratio", "f uncapped", "f capped",
                 f"{args.n_keep} per group"], rows)


if __name__ == "__main__":
    main()
