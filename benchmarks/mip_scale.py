"""How large a best-subset problem does ``solve_mip`` certify within a time limit?

Design: Toeplitz rows (Sigma_ij = rho^|i-j|, rho = 0.5), coefficient pattern 1
(k ones, equally spaced), SNR 3, n = 2p rows, l2 = 0 -- the Bertsimas-King-
Mazumder setting. For each k the script grows p until an instance is not
certified within the time limit (status "time_limit") and reports the largest
certified (n, p, k).

Run:
    python benchmarks/mip_scale.py                 # the documented figure (~15 min)
    python benchmarks/mip_scale.py --smoke         # a few seconds
    python benchmarks/mip_scale.py --ks 10 --ps 30 --no-shift   # without the shifted perspective

"wall" is the whole solve_mip call (heuristic start, big-M derivation, CVXPY
compilation and model building, SCIP); "SCIP" is SCIP's own solving time,
which is what the time limit bounds. On a shared machine both vary with its
load, which is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from chita_opt.datasets import make_regression
from chita_opt.reference import solve_mip


def run_one(n: int, p: int, k: int, seed: int, time_limit: float, rho: float, snr: float) -> dict:
    data = make_regression(
        n, p, k, design="toeplitz", rho=rho, snr=snr, pattern=1, random_state=seed
    )
    start = time.perf_counter()
    sol = solve_mip(data.A, data.y, k, time_limit=time_limit)
    wall = time.perf_counter() - start
    return {
        "n": n,
        "p": p,
        "k": k,
        "seed": seed,
        "status": sol.status,
        "wall_s": round(wall, 3),
        "gap": sol.gap,
        "nodes": sol.info.get("nodes"),
        "scip_s": sol.info.get("solver_time"),
        "big_m": sol.info.get("big_m"),
        "big_m_source": sol.info.get("big_m_source"),
        "objective": sol.objective,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run that takes seconds")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    parser.add_argument(
        "--ps",
        type=int,
        nargs="+",
        default=[20, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400],
    )
    parser.add_argument("--n-factor", type=float, default=2.0, help="n = n_factor * p")
    parser.add_argument("--rho", type=float, default=0.5)
    parser.add_argument("--snr", type=float, default=3.0)
    parser.add_argument(
        "--seeds", type=int, default=1, help="instances per size (all must certify)"
    )
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument(
        "--no-shift",
        action="store_true",
        help="do not move part of lambda_min(A^T A) into the perspective term (for comparison)",
    )
    args = parser.parse_args()
    if args.no_shift:
        import chita_opt.reference._formulation as formulation

        formulation._SHIFT_FRACTION = 0.0
    if args.smoke:
        args.time_limit, args.ks, args.ps, args.seeds = 10.0, [3], [10, 15], 1

    # Untimed warm-up: importing cvxpy / pyscipopt takes seconds the first time.
    warm = make_regression(12, 6, 2, random_state=0)
    solve_mip(warm.A, warm.y, 2)
    load_start = os.getloadavg()
    print(
        f"# mip_scale: Toeplitz rho={args.rho}, SNR={args.snr}, n={args.n_factor:g}p, "
        f"time limit {args.time_limit:g} s, {args.seeds} instance(s) per size"
    )
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average at start {load_start[0]:.1f}"
    )
    print("| n | p | k | seed | status | wall (s) | SCIP (s) | nodes | gap | big-M (source) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows, largest = [], {}
    for k in args.ks:
        for p in args.ps:
            if k >= p:
                continue
            n = round(args.n_factor * p)
            ok = True
            for seed in range(args.seeds):
                r = run_one(n, p, k, seed, args.time_limit, args.rho, args.snr)
                rows.append(r)
                gap = "-" if r["gap"] is None else f"{r['gap']:.1e}"
                print(
                    f"| {n} | {p} | {k} | {seed} | {r['status']} | {r['wall_s']:.1f} | "
                    f"{r['scip_s']:.1f} | {r['nodes']} | {gap} | "
                    f"{r['big_m']:.3g} ({r['big_m_source']}) |",
                    flush=True,
                )
                ok = ok and r["status"] == "optimal" and r["wall_s"] <= args.time_limit
            if not ok:
                break
            largest[k] = (n, p, k)
    load_end = os.getloadavg()
    print(f"\n# load average at end {load_end[0]:.1f}")
    for k in args.ks:
        if k in largest:
            n, p, _ = largest[k]
            print(f"largest certified within {args.time_limit:g} s for k={k}: n={n}, p={p}")
        else:
            print(f"k={k}: nothing certified within {args.time_limit:g} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"args": vars(args), "rows": rows, "load": [load_start, load_end]},
                fh,
                indent=1,
                default=str,
            )


if __name__ == "__main__":
    main()
