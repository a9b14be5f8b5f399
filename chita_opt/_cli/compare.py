"""``chita-opt compare``: every method on a built-in sparse-regression problem."""

from __future__ import annotations

import argparse
import time

import numpy as np

from ._common import UsageError, float_in, int_in, method_list

#: Largest design generated (n * p float64 entries, 4 GB): beyond it numpy's
#: MemoryError would be the user's first message.
MAX_ENTRIES = 500_000_000


def heuristic_methods() -> list[str]:
    """The registry's methods minus the exact references (they do not scale to p = 2000)."""
    from ..reference import EXACT_METHODS
    from ..solvers import available_methods

    return [m for m in available_methods() if m not in EXACT_METHODS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..solvers import available_methods

    default = heuristic_methods()
    parser.add_argument("--n", type=int_in(1), default=200, help="rows of A (default 200)")
    parser.add_argument("--p", type=int_in(1), default=2000, help="columns of A (default 2000)")
    parser.add_argument("--k", type=int_in(0), default=20,
                        help="non-zeros allowed, in [0, p] (default 20)")
    parser.add_argument("--rho", type=float_in(-1.0, 1.0, low_open=True), default=0.7,
                        help="Toeplitz correlation rho^|i-j| between columns, in (-1, 1) "
                        "(default 0.7)")
    parser.add_argument("--snr", type=float_in(0.0, low_open=True, allow_inf=True), default=5.0,
                        help="signal-to-noise ratio, > 0; inf for no noise (default 5)")
    parser.add_argument("--l2", type=float_in(0.0), default=0.0,
                        help="ridge strength, >= 0 (default 0)")
    parser.add_argument("--seed", type=int_in(0), default=0, help="random seed (default 0)")
    parser.add_argument("--methods", type=method_list(available_methods()), default=default,
                        help=f"comma-separated methods (default: {','.join(default)})")


def demo_problem(n: int, p: int, k: int, rho: float, snr: float, seed: int):
    """Toeplitz-correlated design with a planted k-sparse signal at the given SNR.

    Columns follow an AR(1) recursion, so ``corr(a_i, a_j) = rho^|i-j|``; the
    planted support is spread evenly with alternating-sign unit coefficients.
    """
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, p))
    A = np.empty_like(Z)
    A[:, 0] = Z[:, 0]
    scale = np.sqrt(1.0 - rho**2)
    for j in range(1, p):
        A[:, j] = rho * A[:, j - 1] + scale * Z[:, j]
    truth = np.zeros(p)
    support = np.linspace(0, p - 1, k).astype(int)
    truth[support] = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)
    signal = A @ truth
    noise_sd = np.sqrt(np.var(signal) / snr) if 0 < snr < np.inf else 0.0
    y = signal + noise_sd * rng.standard_normal(n)
    return A, y, truth


def run(args: argparse.Namespace) -> int:
    import chita_opt as co

    from ..reference import EXACT_METHODS

    if args.k > args.p:
        raise UsageError(f"argument --k: expected an integer in [0, p={args.p}], got {args.k}")
    if args.n * args.p > MAX_ENTRIES:
        raise UsageError(
            f"arguments --n, --p: expected n * p <= {MAX_ENTRIES:,} (a 4 GB design), "
            f"got {args.n} * {args.p} = {args.n * args.p:,}"
        )
    methods = args.methods
    t0 = time.perf_counter()
    A, y, truth = demo_problem(args.n, args.p, args.k, args.rho, args.snr, args.seed)
    planted = set(np.flatnonzero(truth))
    print(f"Toeplitz design n={args.n}, p={args.p}, rho={args.rho}, SNR={args.snr}, "
          f"k={args.k}, l2={args.l2} (generated in {time.perf_counter() - t0:.2f} s)")
    problem = co.L0Problem(A, y, args.k, l2=args.l2)
    co.solve(problem.with_k(min(2, args.k)), method="chita")  # compile the kernels first
    rows = []
    for method in methods:
        try:
            sol = co.solve(problem, method=method)
        except ValueError as exc:
            # Only the exact references refuse problems (brute force beyond a
            # minute of enumeration); a heuristic's ValueError is a bug to see.
            if method not in EXACT_METHODS:
                raise
            msg = f"argument --methods: {method!r} refused this problem: {exc}"
            raise UsageError(msg) from None
        hits = len(planted & set(sol.support.tolist()))
        f1 = 2 * hits / (len(planted) + sol.support.size) if sol.support.size else 0.0
        rows.append((method, sol.objective, f1, sol.time, sol.status))
    best = min(r[1] for r in rows)
    print(f"{'method':12s} {'objective':>14s} {'vs best':>9s} {'F1':>6s} {'time s':>8s}  status")
    for method, obj, f1, secs, status in rows:
        rel = (obj - best) / max(abs(best), 1e-12)
        print(f"{method:12s} {obj:14.6g} {rel:+9.2%} {f1:6.2f} {secs:8.3f}  {status}")
    return 0
