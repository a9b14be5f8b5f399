"""The JAX adapter at its defaults on the model zoo's MLPs, with and without ``error_fn``.

    python benchmarks/jax_defaults.py            # validation digits, every MLP (14 since
                                                 # 2026-12-07 night), about 8 minutes
    python benchmarks/jax_defaults.py --test     # the test digits
    python benchmarks/jax_defaults.py --test --only ho-synth-mlp-adam   # some MLPs only
    python benchmarks/jax_defaults.py --smoke    # one small MLP, one sparsity (CI)

The JAX adapter sees ``loss_fn(params, inputs, targets)``, not the model's
outputs, so ``damping="auto"`` ranks its candidates by held-out loss alone
unless ``error_fn=`` is given; the PyTorch adapter counts classification errors
by itself and ranks by error first. Each MLP of ``ZOO`` and ``HOLDOUT_ZOO`` (the
BatchNorm CNNs are left out: a plain-JAX CNN with BatchNorm is another model) is
copied into a list-of-dicts pytree and pruned through
``chita_opt.adapters.jax.prune`` with the same training digits as the PyTorch
run: magnitude pruning, the defaults without ``error_fn`` (loss alone), the
defaults with ``error_fn=classification_error(apply_fn)``, and
``chita_opt.adapters.torch.prune`` at its defaults. Accuracy on the validation
(or test) digits. One thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS",
                      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402
from model_zoo import HOLDOUT_ZOO, SMOKE_ZOO, SPARSITIES, ZOO, dataset, train  # noqa: E402
from stage_damping import run as torch_run  # noqa: E402

from chita_opt.adapters.jax import classification_error  # noqa: E402
from chita_opt.adapters.jax import prune as jax_prune  # noqa: E402

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh,
               "gelu": lambda x: jax.nn.gelu(x, approximate=False)}  # torch's exact GELU


def as_pytree(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The zoo MLP's Linear layers as ``[{"w": (out, in), "b": (out,)}, ...]``."""
    return [{"w": jnp.asarray(layer.weight.detach().numpy()),
             **({"b": jnp.asarray(layer.bias.detach().numpy())} if layer.bias is not None
                else {})}
            for layer in model.layers]


def apply_fn_for(cfg: dict[str, Any]):
    act = ACTIVATIONS[cfg.get("act", "relu")]

    def apply_fn(params: list[dict[str, Any]], x: Any) -> Any:
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(params):
            x = x @ layer["w"].T + layer.get("b", 0.0)
            if i < len(params) - 1:
                x = act(x)
        return x

    return apply_fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", action="store_true", help="score on the test digits")
    ap.add_argument("--n-samples", type=int, default=None,
                    help="gradient rows per prune (default: prune's; 20%% more are held out)")
    ap.add_argument("--only", nargs="*", default=None, metavar="MODEL",
                    help="run these MLPs only (names of ZOO / HOLDOUT_ZOO)")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    rows_read = {} if args.n_samples is None else {"n_samples": args.n_samples}
    torch.set_num_threads(1)
    part = "test" if args.test else "val"
    _common.print_header(f"the JAX adapter at its defaults, {part} digits"
                         + (f", n_samples={args.n_samples}" if rows_read else ""),
                         ["jax", "torch"])
    configs = SMOKE_ZOO if args.smoke else {**ZOO, **HOLDOUT_ZOO}
    mlps = {name: cfg for name, cfg in configs.items() if cfg["arch"] == "mlp"}
    if args.smoke:
        mlps = dict(list(mlps.items())[:1])
    if args.only:
        unknown = sorted(set(args.only) - set(mlps))
        if unknown:
            ap.error(f"--only: not MLPs of the zoo: {unknown}; choose from {sorted(mlps)}")
        mlps = {name: mlps[name] for name in args.only}
    headers = ["model", "sparsity", "magnitude (jax)", "jax defaults, loss alone",
               "jax defaults + error_fn", "torch defaults", "damping: loss alone / error_fn"]
    rows, columns = [], {h: [] for h in headers[2:6]}
    for name, cfg in mlps.items():
        model = train(name, cfg)
        apply_fn = apply_fn_for(cfg)

        def loss_fn(params: Any, x: Any, y: Any, apply_fn=apply_fn) -> Any:
            logp = jax.nn.log_softmax(apply_fn(params, x))
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        error_fn = classification_error(apply_fn)
        split = dataset(cfg["data"])
        X, y = (np.asarray(t) for t in split.part("train"))
        Xs, ys = (np.asarray(t) for t in split.part(part))
        params = as_pytree(model)

        def accuracy(p: Any, apply_fn=apply_fn, Xs=Xs, ys=ys) -> float:
            return float(np.mean(np.argmax(np.asarray(apply_fn(p, Xs)), axis=1) == ys))

        for sparsity in (0.9,) if args.smoke else SPARSITIES[cfg["data"]]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the error_fn hint is the point of the column
                mag, _, _ = jax_prune(loss_fn, params, (X, y), sparsity=sparsity,
                                      method="magnitude", progress=False)
                plain, _, r_plain = jax_prune(loss_fn, params, (X, y), sparsity=sparsity,
                                              progress=False, **rows_read)
                ranked, _, r_ranked = jax_prune(loss_fn, params, (X, y), sparsity=sparsity,
                                                progress=False, error_fn=error_fn, **rows_read)
            accs = [accuracy(mag), accuracy(plain), accuracy(ranked),
                    torch_run(model, cfg, part, sparsity=sparsity, **rows_read)[0]]
            for h, a in zip(headers[2:6], accs, strict=True):
                columns[h].append(a)
            row = [name, sparsity, *(f"{a:.1%}" for a in accs),
                   f"{r_plain.stages[-1].damping:.2g} / {r_ranked.stages[-1].damping:.2g}"]
            rows.append(row)
            print("  " + " | ".join(map(str, row)), flush=True)
    print()
    _common.print_table(headers, rows)
    print("\nmean over " + str(len(rows)) + " rows: " + ", ".join(
        f"{h} {100 * statistics.mean(v):.2f}%" for h, v in columns.items()))
    pairs = list(zip(columns[headers[3]], columns[headers[4]], strict=True))
    print(f"error_fn better than the loss alone in {sum(r > p for p, r in pairs)} rows, "
          f"worse in {sum(r < p for p, r in pairs)}")


if __name__ == "__main__":
    main()
