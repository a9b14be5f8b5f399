"""Problem 3: time of the default method (``chita``) against p, at n = 200 and k = p / 20.

For p on a log grid from 10^3 to 10^6 it builds a float32 gradient-like
problem (``_common.gradient_like``: n = 200 rows, ``y = G w_bar``,
``l2 = n * 1e-4``, so k = p / 20 > n is the pruning regime), times one solve
(median of ``--repeats`` after a warm-up on a tiny problem) with the process's
BLAS threads and with ``threads=1``, and prints the time, the time divided by
one ``A.T @ r`` on the same array (same run, same thread setting), and the
least-squares slope of ``log(time)`` against ``log(p)`` -- 1 means linear in
p. The slope is printed over the whole grid and over ``p >= 10^4`` (below
that, fixed per-call overheads dominate).

    python benchmarks/scaling.py                     # 10^3 .. 10^6 (minutes; A up to 800 MB)
    python benchmarks/scaling.py --ps 1000 10000 100000
    python benchmarks/scaling.py --smoke             # tiny, seconds
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import gradient_like, one_pass_time, print_header, print_table, time_call

import chita_opt
from chita_opt import L0Problem

DEFAULT_PS = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]


def slope(ps: list[int], times: list[float], p_min: int = 0) -> float | None:
    """Least-squares slope of log(time) against log(p) over ``p >= p_min``."""
    pts = [(p, t) for p, t in zip(ps, times, strict=True) if p >= p_min and t > 0]
    if len(pts) < 2:
        return None
    x = np.log([p for p, _ in pts])
    y = np.log([t for _, t in pts])
    return float(np.polyfit(x, y, 1)[0])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--ps", type=int, nargs="+", default=DEFAULT_PS)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--k-fraction", type=float, default=1 / 20, help="k = round(p * this)")
    parser.add_argument("--damping", type=float, default=1e-4, help="l2 = n * damping")
    parser.add_argument("--method", default="chita")
    parser.add_argument("--threads", nargs="+", default=None,
                        help="BLAS thread settings to time ('all' = leave as is; default: "
                        "all 1, and only 1 with --smoke)")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed runs per size (default: 3, or 1 when n*p > 2e7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.ps, args.repeats = 30, [300, 600], 1
    if args.threads is None:
        args.threads = ["1"] if args.smoke else ["all", "1"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_header(f"problem 3: scaling of method={args.method!r} in p (n={args.n}, "
                 f"k = p * {args.k_fraction:g}, float32)")
    G, w_bar = gradient_like(30, 300, seed=1)
    for k in (15, 60):  # warm-up: load every Numba kernel (k < n and k > n paths)
        chita_opt.solve(L0Problem.from_gradients(G, w_bar, k=k), method=args.method,
                        **({"restarts": 0} if args.method == "chita" else {}))
    rows = []
    times: dict[str, list[float]] = {th: [] for th in args.threads}
    for p in args.ps:
        G, w_bar = gradient_like(args.n, p, seed=args.seed)
        k = max(1, round(p * args.k_fraction))
        problem = L0Problem.from_gradients(G, w_bar, k=k, damping=args.damping)
        _ = problem.col_sq_norms
        repeats = args.repeats if args.repeats else (3 if G.size <= 2e7 else 1)
        for threads in args.threads:
            th = None if threads == "all" else int(threads)
            unit = one_pass_time(G, threads=th)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time_call(lambda th=th, pr=problem: chita_opt.solve(
                    pr, method=args.method, threads=th), repeats=repeats, warmup=0)
            times[threads].append(t.median)
            rows.append([p, k, threads, t.median, unit * 1e3, t.median / unit,
                         t.result.objective, t.result.message[:50]])
            print(f"p={p} thr={threads}: {t.median:.3f} s ({time.perf_counter() - t0:.1f} s "
                  "with repeats)", flush=True)
    print()
    print_table(["p", "k", "thr", "time s", "A.T@r ms", "x pass", "objective", "message"], rows)
    for threads, ts in times.items():
        s_all = slope(args.ps, ts)
        s_big = slope(args.ps, ts, p_min=10_000)
        print(f"thr={threads}: slope of log time vs log p = "
              f"{'-' if s_all is None else f'{s_all:.2f}'} (all p), "
              f"{'-' if s_big is None else f'{s_big:.2f}'} (p >= 1e4)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
