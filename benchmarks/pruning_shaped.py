"""Problem 2: pruning-shaped problems (gradient-like float32 A, n << p, w_bar != 0).

``A = G`` is n = 1000 gradient-like rows over p = 32,360 (MLPNet) or
p = 268,336 (ResNet20) weights in float32 (a shared low-rank part, noise and
lognormal column scales, see ``_common.gradient_like``), ``y = G w_bar``,
``l2 = n * 1e-4`` and k at sparsity 0.9 and 0.98: the problem
``L0Problem.from_gradients`` builds for CHITA pruning. For each method it
prints the objective, the median time (BLAS threads as the process has them,
``thr=all``, and ``threads=1``), that time divided by the time of one
``A.T @ r`` on the same array measured in the same run (``x pass``), and the
peak memory the solve adds on top of ``A`` (tracemalloc and sampled RSS; the
target is a total within 1.3x the size of ``A``, i.e. extra <= 0.3x).

The solves run on an ``L0Problem`` built once; the ``setup`` row is that
construction (validation, a finiteness scan of ``A``, plus the column norms
every method needs), which a user pays once per problem.

    python benchmarks/pruning_shaped.py                    # both sizes (minutes; ~1.1 GB for A)
    python benchmarks/pruning_shaped.py --sizes 32360      # the MLPNet size only
    python benchmarks/pruning_shaped.py --smoke            # tiny, seconds
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import (
    gradient_like,
    measure_memory,
    one_pass_time,
    print_header,
    print_table,
    profile_call,
    time_call,
)

import chita_opt
from chita_opt import L0Problem
from chita_opt.problem import k_from_sparsity

METHODS = ("magnitude", "backsolve", "iht", "active_set", "chita")


def build(G: np.ndarray, w_bar: np.ndarray, k: int, damping: float) -> L0Problem:
    """What a pruning user builds: ``L0Problem.from_gradients`` plus the column norms."""
    problem = L0Problem.from_gradients(G, w_bar, k=k, damping=damping)
    _ = problem.col_sq_norms  # cached: the one setup cost every method shares
    return problem


def warm_up() -> None:
    """Compile / load every Numba kernel once so that no timing includes JIT time."""
    G, w_bar = gradient_like(30, 300, seed=1)
    for k in (20, 60):  # k < n and k > n take different code paths
        problem = build(G, w_bar, k, 1e-4)
        for method in METHODS:
            # no restarts: they reuse the same kernels and only cost time here
            options = {"restarts": 0} if method == "chita" else {}
            chita_opt.solve(problem, method=method, **options)


def run_size(p: int, args: argparse.Namespace) -> list[list]:
    t0 = time.perf_counter()
    G, w_bar = gradient_like(args.n, p, seed=args.seed)
    gen_time = time.perf_counter() - t0
    l2 = args.n * args.damping
    repeats = args.repeats if args.repeats else (1 if G.size > 1e8 else 3)
    pass_all = one_pass_time(G)
    pass_one = one_pass_time(G, threads=1)
    print(f"## n={args.n} p={p} float32: A is {G.nbytes / 2**20:.0f} MiB (generated in "
          f"{gen_time:.1f} s); one A.T @ r: {pass_all * 1e3:.2f} ms (thr=all), "
          f"{pass_one * 1e3:.2f} ms (thr=1); l2={l2:g}; median of {repeats} run(s)")
    summary = []
    for sparsity in args.sparsities:
        k = k_from_sparsity(p, sparsity)
        _, setup_mem = measure_memory(lambda kk=k: build(G, w_bar, kk, args.damping))
        t0 = time.perf_counter()
        problem = build(G, w_bar, k, args.damping)
        t_setup = time.perf_counter() - t0
        rows = [["setup", "all", "-", t_setup, t_setup / pass_all, None,
                 setup_mem.traced / G.nbytes,
                 None if setup_mem.rss is None else setup_mem.rss / G.nbytes, "", ""]]
        f_back = None
        for method in args.methods:

            def solve(m=method, pr=problem, th=None):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # max_iter is shown as the status
                    return chita_opt.solve(pr, method=m, threads=th)

            mem_ratio = rss_ratio = None
            if not args.no_memory:
                # a separate run: tracemalloc slows allocation-heavy code down
                _, mem = measure_memory(lambda: solve(th=1))
                mem_ratio = mem.traced / G.nbytes
                rss_ratio = None if mem.rss is None else mem.rss / G.nbytes
            for threads in args.threads:
                th = None if threads == "all" else int(threads)
                t = time_call(lambda th=th: solve(th=th), repeats=repeats, warmup=0)
                sol, elapsed = t.result, t.median
                if method == "backsolve":
                    f_back = sol.objective
                unit = pass_all if th is None else pass_one
                rows.append([method, threads, sol.objective, elapsed, elapsed / unit,
                             None, mem_ratio, rss_ratio, sol.status, sol.message[:48]])
                summary.append([p, sparsity, method, threads, sol.objective, elapsed,
                                elapsed / unit, mem_ratio, rss_ratio])
        for row in rows:
            if f_back and isinstance(row[2], float):
                row[5] = f"{row[2] / f_back:.4f}"
        print(f"### sparsity {sparsity}: k = {k}")
        print_table(["method", "thr", "objective", "time s", "x pass", "obj/backsolve",
                     "extra mem/A (traced)", "extra mem/A (RSS)", "status", "message"], rows)
        if args.profile:
            print("cProfile of one chita solve (threads=1):")
            profile_call(lambda pr=problem: chita_opt.solve(pr, threads=1))
            print("cProfile of 20 plain IHT iterations from the magnitude point (threads=1):")
            profile_iht(problem)
    return summary


def profile_iht(problem: L0Problem, iters: int = 20) -> None:
    """cProfile of ``iters`` IHT iterations with no refit (as benchmarks/iht_cost.py times)."""
    from threadpoolctl import threadpool_limits

    from chita_opt.solvers.iht import lipschitz_constant, run_iht

    L = lipschitz_constant(problem)
    w0 = np.zeros(problem.p)
    support = np.argsort(-np.abs(problem.w_bar))[: problem.k]
    w0[support] = problem.w_bar[support]
    with threadpool_limits(limits=1, user_api="blas"):
        profile_call(lambda: run_iht(problem, w0, lipschitz=L, max_iter=iters, tol=1e-300,
                                     refit_after=10**9))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32_360, 268_336],
                        help="numbers of columns p (default: 32360 268336)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.98])
    parser.add_argument("--damping", type=float, default=1e-4, help="l2 = n * damping")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", nargs="+", default=None,
                        help="BLAS thread settings to time ('all' = leave as is; default: "
                        "all 1, and only 1 with --smoke)")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed runs per solve (default: 3, or 1 when n*p > 1e8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one chita solve per setting")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.sizes, args.repeats = 30, [300], 1
    if args.threads is None:
        args.threads = ["1"] if args.smoke else ["all", "1"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_header("problem 2: pruning-shaped problems (float32 gradient-like A)",
                 packages=["psutil", "threadpoolctl"])
    warm_up()
    summary = []
    for p in args.sizes:
        summary += run_size(p, args)
    print("## summary (x pass = time / one A.T @ r with the same thread setting)")
    print_table(["p", "sparsity", "method", "thr", "objective", "time s", "x pass",
                 "extra mem/A traced", "extra mem/A RSS"], summary)
    worst = max((max(s[7] or 0.0, s[8] or 0.0) for s in summary), default=0.0)
    if not args.no_memory:
        print(f"largest extra memory of a solve: {worst:.2f}x A, total {1 + worst:.2f}x A "
              f"(target: total <= 1.3x A): {'met' if worst <= 0.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
