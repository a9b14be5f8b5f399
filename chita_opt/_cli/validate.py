"""``chita-opt validate``: compare methods with the certified optimum on generated problems.

Example::

    chita-opt validate --p 20 --k 5 --instances 50 --methods chita,iht,magnitude
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--methods",
        default="chita,iht,magnitude",
        help="comma-separated method names (default: %(default)s)",
    )
    parser.add_argument(
        "--p", type=int, default=20, help="number of columns (default: %(default)s)"
    )
    parser.add_argument("--k", type=int, default=5, help="sparsity level (default: %(default)s)")
    parser.add_argument("--n", type=int, default=None, help="number of rows (default: 2p)")
    parser.add_argument(
        "--instances",
        type=int,
        default=20,
        help="number of generated problems (default: %(default)s)",
    )
    parser.add_argument(
        "--design",
        default="toeplitz",
        choices=("toeplitz", "equicorrelated", "independent"),
        help="row covariance (default: %(default)s)",
    )
    parser.add_argument("--rho", type=float, default=0.5, help="correlation (default: %(default)s)")
    parser.add_argument(
        "--snr", type=float, default=3.0, help="signal-to-noise ratio (default: %(default)s)"
    )
    parser.add_argument(
        "--pattern",
        type=int,
        default=1,
        choices=(1, 2, 3, 4, 5),
        help="coefficient pattern (default: %(default)s)",
    )
    parser.add_argument(
        "--l2", type=float, default=0.0, help="ridge strength (default: %(default)s)"
    )
    parser.add_argument(
        "--reference",
        default="auto",
        choices=("auto", "brute_force", "mip"),
        help="exact reference (default: %(default)s)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        help="seconds per MIP reference solve (default: %(default)s)",
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=1e-6,
        help="relative gap counted as optimal (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..validate import validate

    try:
        report = validate(
            args.methods,
            p=args.p,
            k=args.k,
            n=args.n,
            instances=args.instances,
            design=args.design,
            rho=args.rho,
            snr=args.snr,
            pattern=args.pattern,
            l2=args.l2,
            reference=args.reference,
            time_limit=args.time_limit,
            tol=args.tol,
            progress=args.progress,
            random_state=args.seed,
        )
    except (ValueError, TypeError, ImportError) as exc:
        print(f"chita-opt validate: error: {exc}", file=sys.stderr)
        return 2
    print(report.describe_settings())
    print(report.to_table("markdown" if args.markdown else "text"))
    return 0
