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

``--probe`` also prints, after every stage, the loss increase on the gradient
digits that the stage's quadratic model predicted (objective minus the damping
term, over n; meaningful without the first-order term only) next to the one
measured, how far the surviving weights moved,
and the validation accuracy (a diagnostic; it wraps a private function of
``chita_opt.pruning.multistage``).
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


def install_probe(model, data: bench.Data) -> None:
    """Print the quadratic model's predicted loss change next to the measured one, per stage."""
    import copy

    import chita_opt.pruning.multistage as multistage
    from chita_opt.adapters.torch import selected_params
    from chita_opt.demo.mlpnet import evaluate

    probe = copy.deepcopy(model)
    tensors = [probe.get_parameter(name) for name in selected_params(probe)]
    X, y = data.X[data.grad], data.y[data.grad]
    run_stage = multistage.run_stage

    def load(w):
        import torch

        offset = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(torch.from_numpy(w[offset:offset + t.numel()].reshape(t.shape)))
                offset += t.numel()

    def probed(ctx, t, level, k, w, alive, **kwargs):
        load(w)
        before = evaluate(probe, X, y).loss
        w_new, alive_new, record, alt = run_stage(ctx, t, level, k, w, alive, **kwargs)
        load(w_new)
        after = evaluate(probe, X, y).loss
        val = evaluate(probe, data.X[data.val], data.y[data.val]).accuracy
        n, dw = record.n_rows, w_new - w
        predicted = (record.objective - 0.5 * n * record.damping * float(dw @ dw)) / n
        print(f"    stage {t:2d} k {k:6d}: predicted loss change {predicted:9.2e}, measured "
              f"{after - before:9.2e} on the gradient digits; |dw|/|w| "
              f"{np.linalg.norm(dw) / np.linalg.norm(w):.3f}; val acc {100 * val:.1f}%",
              flush=True)
        return w_new, alive_new, record, alt

    multistage.run_stage = probed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sparsity", type=float)
    p.add_argument("configs", help="JSON list of Run keyword arguments")
    p.add_argument("seeds", type=int, nargs="*", default=[0])
    p.add_argument("--protocol", choices=tuple(bench.PROTOCOLS), default="held-out")
    p.add_argument("--checkpoint", type=Path, default=bench.DEFAULT_CHECKPOINT)
    p.add_argument("--probe", action="store_true",
                   help="per stage: predicted and measured loss increase, weight move")
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
    if args.probe:
        install_probe(model, data)
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
