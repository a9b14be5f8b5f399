"""What a pruning run did: sparsity per layer, objective per stage, where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GradualReport", "LayerSparsity", "PruneReport", "StageRecord"]


@dataclass(frozen=True)
class StageRecord:
    """One stage of a (multi-stage) pruning run.

    Attributes
    ----------
    stage : int
        1-based stage number.
    sparsity : float
        Target sparsity of this stage (from the schedule).
    k : int
        Weights kept after this stage.
    n_alive : int
        Weights still free to be non-zero when the stage started.
    n_rows : int
        Gradient rows used (0 when no gradients were needed).
    objective : float or None
        Objective of the stage's L0 problem at the returned weights (``None``
        for magnitude pruning, which builds no model). With blocks whose
        gradients did not fit in memory at once it is the sum of the blocks'
        objectives (see ``objective_kind``).
    objective_kind : str
        ``"full"``, ``"block-sum"`` or ``"none"``.
    gradient_time, solve_time : float
        Seconds spent computing gradients and solving.
    status : str
        The solver's status (the worst one over blocks), or ``"skipped"``
        when the stage had nothing to prune.
    n_blocks : int
        Number of blocks solved (1 without the block approximation).
    message : str
        Solver message or note.
    weight_change : float or None
        ``||w_after - w_before|| / ||w_before||`` over all weights: how far the
        stage moved the network. The local quadratic model only holds near
        ``w_before``; values above 1 trigger a warning (see the damping docs).
    damping : float or None
        The damping the stage was solved with (``None`` without gradients).
    damping_losses : dict or None
        With ``damping="auto"``: the held-out loss of the pruned network for
        every candidate damping of the search (``inf`` is magnitude pruning).
    damping_errors : dict or None
        The same candidates' held-out classification errors, when the adapter
        counts them (class-index targets; a JAX ``error_fn``). The choice is
        the lowest error, ties broken by the lowest loss, ties to the larger
        damping -- except that the best finite damping and magnitude pruning
        (``inf``) count as tied when their errors are a few held-out samples
        apart (:func:`chita_opt.pruning.damping.min_error_spread`); without
        errors, the lowest loss.
    held_out_loss, held_out_error : float or None
        Held-out loss (and classification error, when the adapter can tell) of
        the network after the stage, when held-out data was used.
    first_order_used : bool or None
        With the first-order term and held-out data: whether the stage kept the
        solution with the term (``False``: the one without it had the lower
        held-out loss).
    """

    stage: int
    sparsity: float
    k: int
    n_alive: int
    n_rows: int = 0
    objective: float | None = None
    objective_kind: str = "full"
    gradient_time: float = 0.0
    solve_time: float = 0.0
    status: str = "converged"
    n_blocks: int = 1
    message: str = ""
    weight_change: float | None = None
    damping: float | None = None
    damping_losses: dict[float, float] | None = None
    damping_errors: dict[float, float] | None = None
    held_out_loss: float | None = None
    held_out_error: float | None = None
    first_order_used: bool | None = None


@dataclass(frozen=True)
class LayerSparsity:
    """Achieved sparsity of one pruned tensor."""

    name: str
    shape: tuple[int, ...]
    size: int
    n_nonzero: int

    @property
    def sparsity(self) -> float:
        """Fraction of entries at exactly zero."""
        return 1.0 - self.n_nonzero / self.size if self.size else 0.0


@dataclass
class PruneReport:
    """Result summary of :func:`~chita_opt.pruning.multistage_prune` and the adapters' ``prune``.

    Attributes
    ----------
    method : str
        Solver method (``"chita"``, ``"magnitude"``, ...).
    sparsity : float
        Target sparsity over the selected weights.
    k, p : int
        Weights kept (``p - round(sparsity * p)``) and weights selected.
    stages : list of StageRecord
    layers : list of LayerSparsity
        Achieved sparsity per tensor (empty when no layout was given).
    gradient_time, solve_time, total_time : float
        Seconds: gradients, solver calls, the whole run.
    options : dict
        The settings used (stages, schedule, damping, first-order term, ...).
    weights : ndarray of float64, shape (p,)
        The pruned flat weight vector.
    mask : ndarray of bool, shape (p,)
        Weights allowed to be non-zero (exactly ``k`` True, unless fewer were
        alive to start with).
    """

    method: str
    sparsity: float
    k: int
    p: int
    stages: list[StageRecord] = field(default_factory=list)
    layers: list[LayerSparsity] = field(default_factory=list)
    gradient_time: float = 0.0
    solve_time: float = 0.0
    total_time: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    weights: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    mask: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool), repr=False)

    # ----------------------------------------------------------- summaries
    @property
    def n_nonzero(self) -> int:
        """Non-zero entries of the pruned weights."""
        return int(np.count_nonzero(self.weights))

    @property
    def achieved_sparsity(self) -> float:
        """Fraction of the selected weights at exactly zero."""
        return 1.0 - self.n_nonzero / self.p if self.p else 0.0

    @property
    def objective(self) -> float | None:
        """Objective of the last stage that solved a problem."""
        for rec in reversed(self.stages):
            if rec.objective is not None:
                return rec.objective
        return None

    @property
    def objectives(self) -> list[float | None]:
        """Objective of every stage."""
        return [rec.objective for rec in self.stages]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary (no arrays), e.g. for JSON."""
        return {
            "method": self.method,
            "sparsity": self.sparsity,
            "achieved_sparsity": self.achieved_sparsity,
            "k": self.k,
            "p": self.p,
            "gradient_time": self.gradient_time,
            "solve_time": self.solve_time,
            "total_time": self.total_time,
            "options": dict(self.options),
            "stages": [_stage_dict(s) for s in self.stages],
            "layers": [
                {
                    "name": la.name,
                    "shape": list(la.shape),
                    "size": la.size,
                    "n_nonzero": la.n_nonzero,
                    "sparsity": la.sparsity,
                }
                for la in self.layers
            ],
        }

    # -------------------------------------------------------------- tables
    def to_table(self) -> str:
        """Two plain-text tables: the stages, then the per-layer sparsity."""
        lines = []
        header = (
            f"{'stage':>5} {'target':>7} {'kept':>9} {'damping':>9} {'objective':>12} "
            f"{'|dw|/|w|':>9} "
            f"{'grad s':>7} {'solve s':>8} {'status':>10}"
        )
        lines.append(header)
        lines.append("-" * len(header))
        for r in self.stages:
            obj = "-" if r.objective is None else f"{r.objective:.5g}"
            if r.objective_kind == "block-sum" and r.objective is not None:
                obj += "*"
            move = "-" if r.weight_change is None else f"{r.weight_change:.3g}"
            damp = "-" if r.damping is None else f"{r.damping:.3g}"
            lines.append(
                f"{r.stage:>5} {r.sparsity:>7.4f} {r.k:>9} {damp:>9} {obj:>12} {move:>9} "
                f"{r.gradient_time:>7.2f} {r.solve_time:>8.2f} {r.status:>10}"
            )
        if any(r.objective_kind == "block-sum" for r in self.stages):
            lines.append("* sum of the blocks' objectives (block approximation)")
        fallback = self.options.get("fallback")
        if fallback is not None:
            # the stages above are the run that was tried; say what came back instead
            what = fallback_name(fallback, self.options.get("damping", float("nan")))
            lines.append(f"returned: {what}, which scored better on the held-out samples "
                         "than the stages above (options['fallback'])")
        if self.layers:
            lines.append("")
            width = max(5, *(len(la.name) for la in self.layers))
            head = f"{'layer':<{width}} {'shape':>16} {'kept':>9} {'size':>9} {'sparsity':>9}"
            lines.append(head)
            lines.append("-" * len(head))
            for la in self.layers:
                shape = "x".join(str(d) for d in la.shape) or "scalar"
                lines.append(
                    f"{la.name:<{width}} {shape:>16} {la.n_nonzero:>9} {la.size:>9} "
                    f"{la.sparsity:>9.4f}"
                )
            lines.append(
                f"{'total':<{width}} {'':>16} {self.n_nonzero:>9} {self.p:>9} "
                f"{self.achieved_sparsity:>9.4f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        head = (
            f"PruneReport: method={self.method!r}, target sparsity {self.sparsity:.4f}, "
            f"achieved {self.achieved_sparsity:.4f} ({self.n_nonzero} of {self.p} weights kept), "
            f"{len(self.stages)} stage(s)\n"
            f"time {self.total_time:.2f} s (gradients {self.gradient_time:.2f} s, "
            f"solve {self.solve_time:.2f} s)\n"
        )
        if opts:
            head += f"options: {opts}\n"
        return head + "\n" + self.to_table()

    def __repr__(self) -> str:
        return (
            f"PruneReport(method={self.method!r}, sparsity={self.sparsity!r}, "
            f"achieved_sparsity={self.achieved_sparsity:.4f}, k={self.k}, p={self.p}, "
            f"stages={len(self.stages)}, objective={self.objective!r}, "
            f"total_time={self.total_time:.3g})"
        )


def fallback_name(kind: str, damping: float) -> str:
    """What a CHITA++ run that fell back returned (``options["fallback"]``), in words:
    one wording for the warning and the report."""
    if kind == "magnitude":
        return "one-shot magnitude pruning"
    return f"one-shot pruning (damping {damping:.3g})"


def by_damping_name(values: dict[float, float]) -> dict[str, float]:
    """``{damping: value}`` keyed by ``f"{damping:g}"`` (JSON keys are strings; ``"inf"``
    is magnitude pruning)."""
    return {f"{d:g}": v for d, v in values.items()}


def _stage_dict(record: StageRecord) -> dict[str, Any]:
    out = vars(record).copy()
    for key in ("damping_losses", "damping_errors"):
        if out.get(key) is not None:
            out[key] = by_damping_name(out[key])
    return out


@dataclass
class GradualReport:
    """Result of gradual pruning: one :class:`PruneReport` per pruning step plus fine-tuning.

    Attributes
    ----------
    levels : list of float
        Sparsity of each pruning step.
    reports : list of PruneReport
        One per pruning step.
    train_losses : list of list of float
        Training loss of every fine-tuning step, per pruning step.
    fine_tune_time, total_time : float
        Seconds.
    """

    levels: list[float] = field(default_factory=list)
    reports: list[PruneReport] = field(default_factory=list)
    train_losses: list[list[float]] = field(default_factory=list)
    fine_tune_time: float = 0.0
    total_time: float = 0.0

    @property
    def final(self) -> PruneReport | None:
        """The last pruning step's report."""
        return self.reports[-1] if self.reports else None

    def to_table(self) -> str:
        """One line per pruning step: sparsity, time, fine-tuning loss (first -> last)."""
        head = (
            f"{'step':>4} {'target':>7} {'achieved':>9} {'prune s':>8} {'steps':>6} "
            f"{'loss first':>11} {'loss last':>10}"
        )
        lines = [head, "-" * len(head)]
        for i, (level, rep) in enumerate(zip(self.levels, self.reports, strict=False), start=1):
            losses = self.train_losses[i - 1] if i - 1 < len(self.train_losses) else []
            first = f"{losses[0]:.4g}" if losses else "-"
            last = f"{losses[-1]:.4g}" if losses else "-"
            lines.append(
                f"{i:>4} {level:>7.4f} {rep.achieved_sparsity:>9.4f} {rep.total_time:>8.2f} "
                f"{len(losses):>6} {first:>11} {last:>10}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"GradualReport: {len(self.reports)} pruning steps, time {self.total_time:.2f} s "
            f"(fine-tuning {self.fine_tune_time:.2f} s)\n\n" + self.to_table()
        )
