"""Settings of CHITA++ on the paper's MLPNet, averaged over gradient-digit draws.

    python benchmarks/mlpnet_levers.py 0.98 '[{"stages": 15, "damping": 1e-4}]' 0 1 2
    python benchmarks/mlpnet_levers.py 0.98 \\
        '[{"stages": 15, "damping": 0.3, "first_order": true}]' 0 1 2 --protocol research

Arguments: the sparsity, a JSON list of ``Run`` keyword arguments (see
``benchmarks/mlpnet_mnist.py``: ``stages``, ``damping``, ``first_order``,
``mini_batch``, ``fresh``, ``method``, ``schedule``, ``solver_options``, ...)
and the seeds of the gradient-digit draws. Prints validation, test and
all-digit accuracy per seed and their means, under the chosen protocol.
Used to choose the defaults quoted in docs/benchmarks_mlpnet.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlpnet_mnist as bench
from _common import print_header


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sparsity", type=float)
    p.add_argument("configs", help="JSON list of Run keyword arguments")
    p.add_argument("seeds", type=int, nargs="*", default=[0])
    p.add_argument("--protocol", choices=tuple(bench.PROTOCOLS), default="held-out")
    p.add_argument("--checkpoint", type=Path, default=bench.DEFAULT_CHECKPOINT)
    args = p.parse_args(argv)
    configs = json.loads(args.configs)
    print_header("CHITA++ settings on the paper's MLPNet", packages=["torch"])
    import torch

    from chita_opt.demo.mlpnet import load_checkpoint

    torch.manual_seed(0)
    data = bench.protocol_data(bench.load_data(), args.protocol)
    model = load_checkpoint(args.checkpoint)
    # Warm-up: JIT compilation and torch start-up outside the timings.
    bench.prune_once(model, data, bench.Run("warm-up", 0.9, stages=2, first_order=True,
                                            n_samples=100), parts=())
    for cfg in configs:
        res = []
        for seed in args.seeds:
            o = bench.prune_once(model, data, bench.Run(json.dumps(cfg), args.sparsity, **cfg),
                                 seed=seed)
            res.append((o.acc["val"], o.acc["test"], o.acc["all"], o.time))
            print(f"  sp {args.sparsity:g} seed {seed} {json.dumps(cfg)}: val "
                  f"{100 * o.acc['val']:.1f}% test {100 * o.acc['test']:.1f}% all "
                  f"{100 * o.acc['all']:.1f}% time {o.time:.1f}s", flush=True)
        r = 100 * np.array(res)[:, :3]
        t = np.array(res)[:, 3]
        print(f"MEAN sp {args.sparsity:g} {args.protocol} {json.dumps(cfg)}: val "
              f"{r[:, 0].mean():.1f}% test {r[:, 1].mean():.1f}% all {r[:, 2].mean():.1f}% "
              f"(all: min {r[:, 2].min():.1f}%, max {r[:, 2].max():.1f}%) time {t.mean():.1f}s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
