"""Cost of one IHT iteration relative to one pass ``A.T @ r`` over the same array.

Prints, for n = 1000 and p = 32,360 (the CHITA MLPNet size) in float64 and
float32, the time of one iteration of ``chita_opt``'s IHT (CHITA step-size
scheme: a gradient pass, an exact line search on the support and up to five
candidate steps) divided by the time of one ``A.T @ r``, both measured in this
run after a warm-up. Target: <= 1.5.

    python benchmarks/iht_cost.py            # full size
    python benchmarks/iht_cost.py --smoke    # tiny size, seconds (CI keeps it from rotting)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from chita_opt import L0Problem
from chita_opt.solvers.iht import lipschitz_constant, run_iht


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(
    n: int, p: int, sparsity: float, dtype, iters: int, repeats: int, order: str = "C"
) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    scales = np.exp(rng.standard_normal(p)).astype(dtype)
    A = (rng.standard_normal((n, p)).astype(dtype) * scales).astype(dtype, order=order)
    w_bar = rng.standard_normal(p)
    k = p - round(sparsity * p)
    P = L0Problem(A, rng.standard_normal(n), k, l2=n * 1e-4, w_bar=w_bar)
    L = lipschitz_constant(P)
    r = rng.standard_normal(n).astype(dtype)
    w0 = np.zeros(p)
    w0[:k] = w_bar[:k]

    def one_pass():
        for _ in range(iters):
            A.T @ r

    def iht():
        # refit disabled and tol tiny: every iteration is a plain CHITA-IHT step
        res = run_iht(P, w0, lipschitz=L, max_iter=iters, tol=1e-300, refit_after=10**9)
        assert res.n_iter == iters, "IHT converged early: the timing would be wrong"

    one_pass()
    iht()  # warm-up (Numba compilation, caches)
    t_pass = best_of(one_pass, repeats) / iters
    t_iht = best_of(iht, repeats) / iters
    return t_pass, t_iht


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny problem, a few seconds")
    parser.add_argument("--orders", nargs="+", choices=("C", "F"), default=["C", "F"],
                        help="memory layouts of A to time (default: both)")
    args = parser.parse_args()
    n, p, iters, repeats = (1000, 32_360, 20, 5) if not args.smoke else (50, 800, 3, 1)
    print(f"one IHT iteration vs one A.T @ r, n={n}, p={p} (median of {repeats} runs "
          f"of {iters} iterations)")
    header = ("order", "dtype", "sparsity", "k", "A.T@r ms", "IHT it ms", "ratio")
    print("{:5s} {:8s} {:>8s} {:>6s} {:>9s} {:>10s} {:>6s}".format(*header))
    for order in args.orders:
        for dtype in (np.float64, np.float32):
            for sparsity in (0.9, 0.98):
                t_pass, t_iht = measure(n, p, sparsity, dtype, iters, repeats, order)
                k = p - round(sparsity * p)
                print(f"{order:5s} {np.dtype(dtype).name:8s} {sparsity:8.2f} {k:6d} "
                      f"{t_pass * 1e3:9.2f} {t_iht * 1e3:10.2f} {t_iht / t_pass:6.2f}")


if __name__ == "__main__":
    main()
