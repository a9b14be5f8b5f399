"""Layer-wise pruning of a small byte-level transformer: perplexity, time, per-layer error.

    python benchmarks/lm_layerwise.py            # the table (trains once, then cached)
    python benchmarks/lm_layerwise.py --smoke    # tiny model, one setting (CI, < 60 s)

Model and data (see ``benchmarks/_lm_model.py``): a 4-layer pre-LayerNorm
causal transformer over bytes (d_model 128, 4 heads, d_ff 512, context 128,
0.88 M parameters; 400 AdamW steps, 24.5 min at 2 threads on the loaded 2-core
development machine) trained here on ``pydoc_data.topics`` (CPython's help
text); the last 10% of the bytes are held out and perplexity is measured on
all their non-overlapping 128-byte windows. Calibration: ``--calib`` random
128-byte windows of the training split (seed 0).

Methods, all through ``prune_layerwise`` (same Gram matrices, same sequential
order, same budgets; the 24 Linear layers of the blocks are pruned, not the
embeddings or ``lm_head``): magnitude (largest ``|w|`` per layer), Wanda and
SparseGPT (``benchmarks/_lm_baselines.py``, re-implemented from the papers),
chita (:func:`chita_opt.layerwise.solve_layer`), and chita+grad: chita with
each layer's gradient block (``prune_layerwise(..., gradient_block=loss)``,
the next-token cross-entropy of the calibration windows themselves, weight
``--gradient-weight`` relative to the trace-matched scale). Unstructured settings use
a whole-layer budget for magnitude, SparseGPT (its per-block adaptive mask)
and chita, and per-row for Wanda (as in its paper); N:M is per group for all.

Reported: held-out perplexity; wall time of the whole pruning (capture +
solve) and solver time alone; the relative reconstruction error of each layer
``||X (W - W̄)^T||^2 / ||X W̄^T||^2`` on its own (sequential) calibration
inputs; and, on identical inputs (the dense model's), how many layers chita
reconstructs at least as well as SparseGPT.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import print_header, print_table
from _lm_baselines import sparsegpt, wanda
from _lm_model import SMOKE, Config, corpus, perplexity, trained_model, windows

from chita_opt.adapters.torch._layerwise import _default_layers, prune_layerwise
from chita_opt.layerwise import budget_from_sparsity, solve_layer

METHODS = ("magnitude", "wanda", "sparsegpt", "chita", "chita+grad")


def next_token_loss(model, ids):
    """Mean next-token cross-entropy of a batch of byte windows (predicting ids[:, 1:])."""
    logits = model(ids)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def _setting(s: str):
    return (None, s) if ":" in s else (float(s), None)


def random_logits_loss(model, ids):
    """Control for chita+grad: a fixed random functional of the logits, no labels.

    Its gradients average to the Gauss-Newton of the network output
    (E[R R^T] = I), so it tells end-to-end output sensitivity from the
    information in the next-token loss itself.
    """
    g = torch.Generator().manual_seed(int(ids[0, 0]) * 131 + ids.shape[0])
    logits = model(ids)
    return (logits * torch.randn(logits.shape, generator=g)).sum() / ids.shape[0]


GRADIENT_LOSSES = {"next-token": next_token_loss, "random-logits": random_logits_loss}


def _prune(model, calib, setting, method, damping, chita_opts, gradient_weight=1.0,
           gradient_loss="next-token"):
    sparsity, pattern = _setting(setting)
    kw = dict(sparsity=sparsity, pattern=pattern, damping=damping, progress=False)
    if method == "chita+grad":
        # equal batches of calibration windows, so the batch mean weighs samples alike
        return prune_layerwise(model, calib, method="chita", solver_options=chita_opts,
                               gradient_block=GRADIENT_LOSSES[gradient_loss],
                               gradient_weight=gradient_weight,
                               **kw)
    if method == "wanda":
        return prune_layerwise(model, calib, solver=wanda, **kw)
    if method == "sparsegpt":
        return prune_layerwise(model, calib, solver=sparsegpt, **kw)
    if method == "magnitude":
        return prune_layerwise(model, calib, method="magnitude", **kw)
    return prune_layerwise(model, calib, method="chita", solver_options=chita_opts, **kw)


def _dense_grams(model, calib):
    """H of every prunable layer on the dense model's own inputs (one pass, no pruning)."""
    layers = _default_layers(model)
    Hs = {n: torch.zeros(m.weight.shape[1], m.weight.shape[1], dtype=torch.float64)
          for n, m in layers}
    handles = []
    for n, m in layers:
        def hook(mod, args, n=n):
            x = args[0].detach().reshape(-1, Hs[n].shape[0]).double()
            Hs[n].addmm_(x.T, x)
        handles.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        for b in calib:
            model(b)
    for h in handles:
        h.remove()
    return [(n, m.weight.detach().double().numpy(), Hs[n].numpy()) for n, m in layers]


def same_input_comparison(model, calib, settings, damping, chita_opts):
    rows = []
    grams = _dense_grams(model, calib)
    for setting in settings:
        sp, pat = _setting(setting)
        wins, ratios, t_s, t_c = 0, [], 0.0, 0.0
        for _, W, H in grams:
            bud = budget_from_sparsity(W.shape, sp, pat)
            damp = damping * float(np.mean(np.diag(H)))
            t0 = time.perf_counter()
            Ws, _ = sparsegpt(H, W, bud, damp)
            t_s += time.perf_counter() - t0
            sol = solve_layer(H, W, bud, damping=damp, **chita_opts)
            t_c += sol.seconds
            D = Ws - W
            e_s = 0.5 * float(np.einsum("ij,ij->", D @ H, D))
            wins += sol.error <= e_s * (1 + 1e-9)
            ratios.append(sol.error / e_s if e_s > 0 else 1.0)
        rows.append([setting, f"{wins}/{len(grams)}", float(np.min(ratios)),
                     float(np.median(ratios)), float(np.max(ratios)), t_s, t_c])
    print("## Same inputs (dense model's calibration activations): chita vs SparseGPT per layer")
    print_table(["setting", "layers chita <= SparseGPT", "min err ratio", "median", "max",
                 "SparseGPT s", "chita s"], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model and one setting (CI)")
    ap.add_argument("--settings", default="0.5,0.6,0.7,2:4,4:8")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--calib", type=int, default=128, help="calibration windows of 128 bytes")
    ap.add_argument("--calib-seed", type=int, default=0, help="seed of the calibration windows")
    ap.add_argument("--damping", type=float, default=0.01, help="relative to mean diag(H)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-layer", action="store_true", help="print every layer's errors")
    ap.add_argument("--damping-sweep", default="",
                    help="comma-separated relative dampings: chita's perplexity for each")
    ap.add_argument("--gradient-weight", type=float, default=1.0,
                    help="chita+grad: gradient block weight relative to the trace-matched scale")
    ap.add_argument("--gradient-loss", default="next-token", choices=sorted(GRADIENT_LOSSES),
                    help="chita+grad's loss (random-logits: a control without labels)")
    ap.add_argument("--gradient-weight-sweep", default="",
                    help="comma-separated gradient weights: chita+grad's perplexity for each")
    ap.add_argument("--chita", default="",
                    help="solver options, e.g. rounds=2,swap_rounds=10,exact_rounds=3")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = SMOKE if args.smoke else Config()
    settings = ["0.5", "2:4"] if args.smoke else args.settings.split(",")
    methods = args.methods.split(",")
    n_calib = 16 if args.smoke else args.calib
    chita_opts = {"swap_rounds": 5, "exact_rounds": 2} if args.smoke else {}
    for item in filter(None, args.chita.split(",")):
        key, value = item.split("=")
        chita_opts[key] = int(value)
    print_header(f"lm_layerwise{' --smoke' if args.smoke else ''}: byte-level LM, "
                 f"layer-wise pruning", packages=("numpy", "torch"))
    print(f"# config {cfg} (cache key {cfg.key()}); calibration {n_calib} x {cfg.context} bytes "
          f"(seed {args.calib_seed}); "
          f"damping {args.damping} x mean diag(H); torch threads {args.threads}; "
          f"chita options {chita_opts or 'defaults'}; chita+grad gradient weight "
          f"{args.gradient_weight}, loss {args.gradient_loss}")
    model = trained_model(cfg)
    train, held = corpus()
    calib_w = windows(train, cfg.context, n_calib, seed=args.calib_seed)[:, :-1]
    calib = list(calib_w.split(16))
    dense_ppl = perplexity(model, held, cfg.context)
    rows = [["dense", "-", dense_ppl, "-", "-", "-", "-"]]
    per_layer: dict[tuple[str, str], list[float]] = {}
    for setting in settings:
        for method in methods:
            pruned = copy.deepcopy(model)
            t0 = time.perf_counter()
            rep = _prune(pruned, calib, setting, method, args.damping, chita_opts,
                         args.gradient_weight, args.gradient_loss)
            wall = time.perf_counter() - t0
            ppl = perplexity(pruned, held, cfg.context)
            rel = [r.relative_error for r in rep.layers]
            per_layer[(setting, method)] = rel
            size = sum(r.shape[0] * r.shape[1] for r in rep.layers)
            kept = sum(r.kept for r in rep.layers) / size
            rows.append([setting, method, ppl, wall, sum(r.solve_seconds for r in rep.layers),
                         float(np.mean(rel)), f"{1 - kept:.1%}"])
            print(f"  {setting:>4} {method:<10} ppl {ppl:8.3f}  {wall:6.1f} s", flush=True)
    print()
    n_layers = len(_default_layers(model))
    print(f"## Held-out perplexity (sequential layer-wise pruning of the {n_layers} block Linears)")
    print_table(["setting", "method", "perplexity", "wall s", "solve s",
                 "mean rel. layer error", "sparsity"], rows)
    if "sparsegpt" in methods and "chita" in methods:
        rows2 = []
        for setting in settings:
            s, c = per_layer[(setting, "sparsegpt")], per_layer[(setting, "chita")]
            wins = sum(ci <= si for ci, si in zip(c, s, strict=True))
            rows2.append([setting, f"{wins}/{len(c)}", float(np.mean(s)), float(np.mean(c))])
        print("## Sequential runs: layers where chita's relative error <= SparseGPT's "
              "(each on its own pruned upstream)")
        print_table(["setting", "layers", "SparseGPT mean rel. err", "chita mean rel. err"], rows2)
        same_input_comparison(model, calib, settings, args.damping, chita_opts)

    def sweep(values: str, title: str, prune_at) -> None:
        """Perplexity per setting for each value of a comma-separated list."""
        rows = []
        for setting in settings:
            row = [setting]
            for value in values.split(","):
                pruned = copy.deepcopy(model)
                prune_at(pruned, setting, float(value))
                row.append(perplexity(pruned, held, cfg.context))
            rows.append(row)
        print(f"## {title} (measured on the held-out text itself)")
        print_table(["setting", *values.split(",")], rows)

    if args.damping_sweep:
        sweep(args.damping_sweep, "chita perplexity by relative damping",
              lambda m, setting, d: _prune(m, calib, setting, "chita", d, chita_opts))
    if args.gradient_weight_sweep:
        sweep(args.gradient_weight_sweep, "chita+grad perplexity by gradient weight",
              lambda m, setting, gw: _prune(m, calib, setting, "chita+grad", args.damping,
                                            chita_opts, gw, args.gradient_loss))
    if args.per_layer:
        names = [n for n, _ in _default_layers(model)]
        for setting in settings:
            print(f"## Per-layer relative error, {setting}")
            print_table(["layer", *methods],
                        [[n, *(per_layer[(setting, m)][i] for m in methods)]
                         for i, n in enumerate(names)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
