"""Problem 1 (the abess benchmark): chita_opt's methods against abess, skglm MCP and the MIP.

Sparse regression ``y = A w_true + noise`` with n = 500 rows, p = 1000 and
8000 columns, k = 10 planted unit coefficients, Toeplitz correlation
``rho^|i-j|`` with rho = 0.3 and 0.7 and SNR 5
(``chita_opt.datasets.make_regression``). For every method it reports

* ``time``: median wall time of ``--repeats`` runs after one warm-up run, for
  chita_opt's methods both with the process's BLAS threads (``thr=all``) and
  with ``threads=1``;
* ``raw obj``: ``1/2 ||y - A w||^2`` at the returned coefficients;
* ``refit obj``: the same after the exact least-squares refit on the
  returned support (``chita_opt.solve(..., method="backsolve", support=S)``),
  so that every method is judged by the support it chose;
* ``F1``: support recovery against the planted support.

Peers: ``abess.LinearRegression(support_size=k, fit_intercept=False)`` (C++
splicing); ``skglm.MCPRegression`` (Numba CD with the MCP penalty) with
``alpha`` found by bisection so that it returns k non-zeros -- the time of the
whole search (``tune``) and of the single final fit at the chosen ``alpha``
are both reported; the exact MIP (``method="mip"``, SCIP through CVXPY) with a
time limit, on the first seed of settings with ``p <= --mip-max-p``.

    python benchmarks/regression_peers.py                 # full (several minutes)
    python benchmarks/regression_peers.py --smoke         # tiny, seconds
    python benchmarks/regression_peers.py --ps 1000 --peers abess --mip-time-limit 0
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from _common import f1_score, print_header, print_table, profile_call, time_call

import chita_opt
from chita_opt.datasets import make_regression

CHITA_METHODS = ("magnitude", "backsolve", "iht", "active_set", "swap", "chita")


@dataclass
class Row:
    method: str
    threads: str
    time: float | None
    raw: float | None
    refit: float | None
    f1: float | None
    nnz: int | None
    note: str = ""


def refit_objective(A: np.ndarray, y: np.ndarray, k: int, support: np.ndarray) -> float:
    """Objective of the exact least-squares refit on ``support`` (the common yardstick)."""
    return chita_opt.solve(A, y, k, method="backsolve", support=np.sort(support)).objective


def raw_objective(A: np.ndarray, y: np.ndarray, coef: np.ndarray) -> float:
    r = y.astype(np.float64) - A @ coef
    return 0.5 * float(r @ r)


# ------------------------------------------------------------------ methods
def run_chita_methods(data: Any, k: int, repeats: int) -> list[Row]:
    A, y, w_true, _ = data
    truth = np.flatnonzero(w_true)
    rows = []
    for method in CHITA_METHODS:
        for threads in (None, 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # max_iter warnings are shown as status
                t = time_call(lambda m=method, th=threads: chita_opt.solve(
                    A, y, k, method=m, threads=th), repeats=repeats)
            sol = t.result
            rows.append(Row(method, "all" if threads is None else "1", t.median, sol.objective,
                            refit_objective(A, y, k, sol.support),
                            f1_score(sol.support, truth), sol.support.size, sol.status))
    return rows


def run_abess(data: Any, k: int, repeats: int) -> Row:
    import abess

    A, y, w_true, _ = data

    def fit() -> Any:
        model = abess.LinearRegression(support_size=k, fit_intercept=False)
        model.fit(A, y)
        return model

    t = time_call(fit, repeats=repeats)
    coef = np.asarray(t.result.coef_, dtype=np.float64)
    support = np.flatnonzero(coef)
    return Row("abess", "1", t.median, raw_objective(A, y, coef),
               refit_objective(A, y, k, support), f1_score(support, np.flatnonzero(w_true)),
               support.size)


def _mcp_fit(A: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    from skglm import MCPRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skglm warns when a fit stops at max_iter
        model = MCPRegression(alpha=alpha, gamma=3.0, fit_intercept=False)
        model.fit(A, y)
    return np.asarray(model.coef_, dtype=np.float64)


def tune_mcp(
    A: np.ndarray, y: np.ndarray, k: int, max_fits: int = 40
) -> tuple[float, np.ndarray, int]:
    """Bisection on ``log(alpha)`` for k non-zeros; returns ``(alpha, coef, fits)``.

    At ``alpha_max = ||A^T y||_inf / n`` the solution is zero; the search
    keeps the fit with exactly k non-zeros, else the largest count <= k.
    """
    n = A.shape[0]
    hi = float(np.max(np.abs(A.T @ y))) / n
    lo = hi * 1e-4
    best: tuple[float, np.ndarray] | None = None
    fits = 0
    for _ in range(max_fits):
        mid = float(np.sqrt(lo * hi))
        coef = _mcp_fit(A, y, mid)
        fits += 1
        nnz = int(np.count_nonzero(coef))
        if nnz <= k and (best is None or nnz > np.count_nonzero(best[1])):
            best = (mid, coef)
        if nnz == k:
            break
        if nnz > k:
            lo = mid
        else:
            hi = mid
    if best is None:  # every fit had too many non-zeros: keep the k largest of the last
        coef = coef.copy()
        coef[np.argsort(-np.abs(coef))[k:]] = 0.0
        best = (mid, coef)
    return best[0], best[1], fits


def run_skglm(data: Any, k: int, repeats: int) -> list[Row]:
    A, y, w_true, _ = data
    truth = np.flatnonzero(w_true)
    t0 = time.perf_counter()
    alpha, coef, fits = tune_mcp(A, y, k)
    tune_time = time.perf_counter() - t0
    final = time_call(lambda: _mcp_fit(A, y, alpha), repeats=repeats)
    support = np.flatnonzero(coef)
    refit = refit_objective(A, y, k, support)
    raw = raw_objective(A, y, coef)
    f1 = f1_score(support, truth)
    return [
        Row("skglm MCP (tune)", "all", tune_time, raw, refit, f1, support.size,
            f"{fits} fits, alpha={alpha:.3g}"),
        Row("skglm MCP (1 fit)", "all", final.median, raw, refit, f1, support.size,
            "final alpha only"),
    ]


def run_mip(data: Any, k: int, time_limit: float) -> Row:
    A, y, w_true, _ = data
    sol = chita_opt.solve(A, y, k, method="mip", time_limit=time_limit)
    gap = "gap -" if sol.gap is None else f"gap {sol.gap:.2e}"
    bound = "" if sol.lower_bound is None else f", bound {sol.lower_bound:.6g}"
    return Row("mip (SCIP)", "all", sol.time, sol.objective,
               refit_objective(A, y, k, sol.support) if sol.support.size else sol.objective,
               f1_score(sol.support, np.flatnonzero(w_true)), sol.support.size,
               f"{sol.status}, {gap}{bound}, {sol.info.get('nodes', '?')} nodes")


def warm_up(have_abess: bool, have_skglm: bool) -> None:
    """Compile / load every Numba kernel once so no timing includes JIT time."""
    data = make_regression(40, 80, 4, rho=0.5, random_state=123)
    for method in CHITA_METHODS:
        options = {"restarts": 0} if method == "chita" else {}
        chita_opt.solve(data.A, data.y, 4, method=method, **options)
    if have_abess:
        run_abess(data, 4, 1)
    if have_skglm:
        _mcp_fit(data.A, data.y, 0.1)


# --------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--ps", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.3, 0.7])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--snr", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mip-time-limit", type=float, default=60.0,
                        help="seconds for the MIP reference (0 skips it)")
    parser.add_argument("--mip-max-p", type=int, default=1000,
                        help="run the MIP only where p <= this (first seed only)")
    parser.add_argument("--peers", nargs="*", default=None, choices=["abess", "skglm"],
                        help="peers to run (default: both; with --smoke only abess, because "
                        "skglm's Numba compilation alone takes 10-30 s per process)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one chita solve per setting")
    args = parser.parse_args(argv)
    if args.smoke:
        # p = 30 keeps the MIP (SCIP) down to about a second
        args.n, args.ps, args.k, args.seeds, args.repeats = 60, [30], 5, [0], 1
        args.rhos = [0.7]
        args.mip_time_limit = min(args.mip_time_limit, 10.0)
        args.mip_max_p = min(args.mip_max_p, 30)
    if args.peers is None:
        args.peers = ["abess"] if args.smoke else ["abess", "skglm"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    have_abess = "abess" in args.peers and importlib.util.find_spec("abess") is not None
    have_skglm = "skglm" in args.peers and importlib.util.find_spec("skglm") is not None
    have_mip = (args.mip_time_limit > 0 and importlib.util.find_spec("cvxpy") is not None
                and importlib.util.find_spec("pyscipopt") is not None)
    print_header("problem 1: sparse regression, chita_opt vs abess / skglm MCP / MIP",
                 packages=["abess", "skglm", "cvxpy", "PySCIPOpt"])
    for name, ok in (("abess", have_abess), ("skglm", have_skglm), ("mip", have_mip)):
        if not ok:
            print(f"# skipping {name}: not installed (pip install chita_opt[bench] / [mip]) "
                  "or not selected (--peers, --mip-time-limit)")
    warm_up(have_abess, have_skglm)
    summary = []
    for p in args.ps:
        for rho in args.rhos:
            for seed in args.seeds:
                data = make_regression(args.n, p, args.k, design="toeplitz", rho=rho,
                                       snr=args.snr, random_state=seed)
                rows = run_chita_methods(data, args.k, args.repeats)
                abess_row = run_abess(data, args.k, args.repeats) if have_abess else None
                if abess_row is not None:
                    rows.append(abess_row)
                if have_skglm:
                    rows += run_skglm(data, args.k, args.repeats)
                if have_mip and p <= args.mip_max_p and seed == args.seeds[0]:
                    rows.append(run_mip(data, args.k, args.mip_time_limit))
                best = min(r.refit for r in rows if r.refit is not None)
                print(f"## n={args.n} p={p} k={args.k} rho={rho} snr={args.snr} seed={seed}")
                print_table(
                    ["method", "thr", "time s", "raw obj", "refit obj", "refit/best-1", "F1",
                     "nnz", "note"],
                    [[r.method, r.threads, r.time, r.raw, r.refit,
                      None if r.refit is None else f"{r.refit / best - 1:.1e}", r.f1, r.nnz,
                      r.note] for r in rows],
                )
                if args.profile:
                    for method in ("chita", "iht"):
                        print(f"cProfile of one {method} solve (threads=1):")
                        profile_call(lambda d=data, m=method: chita_opt.solve(
                            d.A, d.y, args.k, method=m, threads=1))
                chita = {r.threads: r for r in rows if r.method == "chita"}
                if abess_row is not None:
                    summary.append([p, rho, seed, chita["all"].refit / abess_row.refit,
                                    chita["all"].time / abess_row.time,
                                    chita["1"].time / abess_row.time, abess_row.time])
    if summary:
        print("## chita / abess (refit objective ratio <= 1 and time ratio <= 2 are the targets)")
        print_table(["p", "rho", "seed", "obj ratio", "time ratio thr=all",
                     "time ratio thr=1", "abess s"], summary)
        obj_ok = all(s[3] <= 1 + 1e-9 for s in summary)
        time_ok = all(min(s[4], s[5]) <= 2.0 for s in summary)
        print(f"objective no worse than abess everywhere: {'met' if obj_ok else 'NOT met'}; "
              f"time within 2x of abess everywhere (best of the two thread settings): "
              f"{'met' if time_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
