"""The multi-stage pruning loop (CHITA++), framework-agnostic.

At each stage ``t`` of a sparsity schedule the loop

1. asks the caller for fresh gradient rows at the current weights, for the
   weights that are still alive only (``gradient_fn(w, alive) -> G``, memory
   ``n x p_alive``);
2. builds the local quadratic model with
   :meth:`~chita_opt.L0Problem.from_gradients` (``w_bar`` = current alive
   weights, ``k`` = the stage's budget) and solves it with
   :func:`~chita_opt.solve` -- or, with blocks, solves one small problem per
   block (:mod:`chita_opt.pruning.blocks`);
3. writes the solution back; weights pruned here stay at zero in every later
   stage because later stages only optimise over the alive coordinates.

Adapters (PyTorch, JAX) supply ``gradient_fn`` and write the final weights and
masks back into the model; this module sees numpy arrays only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import check_nonnegative, check_positive_int, check_sparsity, describe
from .._warnings import warn
from ..problem import k_from_sparsity
from ..result import Status
from ._checks import (
    align_blocks,
    as_sequence,
    check_groups,
    check_mask,
    check_ranking,
    check_w0,
    resolve_blocks,
)
from .blocks import _progress
from .damping import Score
from .layout import ParamLayout
from .report import LayerSparsity, PruneReport, StageRecord, by_damping_name, fallback_name
from .schedules import sparsity_schedule
from .stages import GradientFn, StageContext, magnitude_guard, run_stage

__all__ = [
    "DEFAULT_DAMPING",
    "GradientFn",
    "ModelValidityWarning",
    "layer_sparsities",
    "multistage_prune",
]

logger = logging.getLogger(__name__)

#: Ridge added to the empirical Fisher when a fixed damping is asked for
#: without a value (``multistage_prune``'s default). The adapters default to
#: ``damping="auto"`` instead: one fixed value is right for some models only
#: (docs/benchmarks_zoo.md).
DEFAULT_DAMPING = 1e-3


def multistage_prune(
    w0: Any,
    gradient_fn: GradientFn | None,
    *,
    sparsity: float,
    stages: int = 1,
    schedule: str | Sequence[float] = "exp",
    base_level: float | None = None,
    method: str = "chita",
    damping: float | str = DEFAULT_DAMPING,
    damping_grid: Sequence[float] | None = None,
    evaluate: Callable[[np.ndarray], Any] | None = None,
    first_order: bool = False,
    first_order_scale: float = 1.0,
    mask: Any = None,
    layout: ParamLayout | None = None,
    block_size: int | None = None,
    blocks: Sequence[tuple[int, int]] | None = None,
    block_ranking: str | Any = "magnitude",
    executor: Any = None,
    max_columns: int | None = None,
    solver_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    options: Mapping[str, Any] | None = None,
    on_stage: Callable[[int], None] | None = None,
    groups: Any = None,
    group_cap: int | None = None,
) -> PruneReport:
    """Prune a flat weight vector in one or several stages.

    Parameters
    ----------
    w0 : array_like, shape (p,)
        Dense (current) weights.
    gradient_fn : callable ``(w, columns) -> G`` or None
        Gradient rows at weights ``w`` for the columns where ``columns`` is
        True (see :data:`GradientFn`). Not called by methods that need no
        design matrix (``"magnitude"``; may then be ``None``).
    sparsity : float
        Target fraction of the ``p`` weights at exactly zero;
        ``k = p - round(sparsity * p)`` weights survive.
    stages : int
        Number of stages (1 = one-shot CHITA; more = CHITA++).
    schedule, base_level
        Sparsity schedule over the stages, see :func:`sparsity_schedule`.
    method : str
        Solver method for every stage/block (see :func:`chita_opt.available_methods`);
        ``"magnitude"`` keeps the largest ``|w|`` without computing gradients.
    damping : float or "auto"
        Ridge ``lambda`` added to the empirical Fisher ``G^T G / n`` (``l2 = n * damping``).
        ``"auto"``: at the last (or only) stage the candidates (``damping_grid``,
        or a grid relative to the Fisher's scale, :mod:`chita_opt.pruning.damping`)
        are solved and the one whose weights have the lowest ``evaluate`` wins;
        the stages before it use ``STAGE_DAMPING * lambda_0`` of their own
        gradients; the first stage also solves the whole run's one-shot problem
        from its gradients (with this choice: what ``stages=1`` returns), and a
        finished multi-stage run that ``evaluate`` scores below it, or below
        one-shot magnitude pruning, is replaced by it
        (``report.options["fallback"]``; ``report.options["one_shot"]`` has the
        one-shot damping and held-out score).
    damping_grid : sequence of float, optional
        Absolute candidates for ``damping="auto"``, searched at every stage.
    evaluate : callable ``w -> Score`` (or ``-> float``), optional
        Held-out loss of the network at flat weights ``w`` (a
        :class:`~chita_opt.pruning.damping.Score` with the classification
        error too, or a plain loss; required by
        ``damping="auto"``; with ``first_order=True`` it also guards the
        first-order term: each stage keeps the solution with or without it,
        whichever has the lower held-out loss).
    first_order : bool
        Include the linear term ``c = first_order_scale * G^T 1``. At the dense
        pretrained weights the mean gradient is ~0, but after a stage the
        weights are no longer at a stationary point, so it matters for CHITA++.
    first_order_scale : float
        Multiplier of the linear term: 1 for per-sample rows; ``1/m`` for rows
        that are mean gradients over mini-batches of ``m`` samples (their
        ``G^T G`` is about ``1/m`` of the per-sample Fisher sum, so the linear
        term is scaled alike to keep the Taylor model consistent).
    mask : array_like of bool, shape (p,), optional
        Coordinates allowed to be non-zero at the start (e.g. an earlier
        pruning's mask). Default: all.
    layout : ParamLayout, optional
        Tensor names/shapes, for the per-layer report and for blocks inside layers.
    block_size : int, optional
        Use the block approximation with blocks of about this many weights
        inside each tensor of ``layout`` (or of ``[0, p)`` without a layout).
    blocks : sequence of (start, stop), optional
        Explicit blocks (disjoint, covering ``[0, p)``) instead of ``block_size``.
    block_ranking : "magnitude" or array_like (p,)
        Global ranking that splits ``k`` among blocks (default ``|w|``).
    executor : Executor-like, optional
        Where blocks run (``submit``/``result``); ``None`` = this process.
    max_columns : int, optional
        With blocks: request gradients for groups of blocks of at most this
        many alive weights at a time, so memory is ``n x max_columns`` instead
        of ``n x p`` (costs one gradient pass per group).
    solver_options : mapping, optional
        Extra options for :func:`chita_opt.solve` (e.g. ``max_iter``).
    progress : bool
        Show progress bars over stages (and blocks).
    options : mapping, optional
        Extra settings recorded in the report (e.g. ``n_samples`` from an adapter).
    on_stage : callable ``t -> None``, optional
        Called when stage ``t`` (1-based) starts, before its gradients (the
        pipeline draws the stage's samples there).
    groups, group_cap : array of int (p,) and int, optional
        Group caps (N:M patterns, :mod:`chita_opt.pruning.patterns`): the last
        stage keeps at most ``group_cap`` weights per group; earlier stages
        are unstructured but keep at least ``group_cap`` weights of every
        group alive, so the last stage can fill every group.

    Returns
    -------
    PruneReport
        With ``weights`` (the pruned flat vector) and ``mask``.
    """
    clock = time.perf_counter()
    w = check_w0(w0)
    p = w.size
    if layout is not None:
        if not isinstance(layout, ParamLayout):
            raise TypeError(f"layout: expected a ParamLayout, got {describe(layout)}")
        if layout.p != p:
            raise ValueError(f"layout: expected a layout of {p} weights, got {layout.p}")
    sparsity = check_sparsity(sparsity, "sparsity")
    stages = int(check_positive_int(stages, "stages"))  # type: ignore[arg-type]
    levels = sparsity_schedule(sparsity, stages, schedule, base_level=base_level)
    if not isinstance(method, str):
        raise TypeError(f"method: expected a method name, got {describe(method)}")
    from ..solvers import available_methods, method_info

    if method not in available_methods():
        raise ValueError(f"method: expected one of {available_methods()}, got {method!r}")
    info = method_info(method)
    auto = isinstance(damping, str)
    if auto and damping != "auto":
        raise ValueError(f"damping: expected a non-negative number or 'auto', got {damping!r}")
    if not auto:
        damping = check_nonnegative(damping, "damping")
    grid = None if damping_grid is None else [
        check_nonnegative(d, "damping_grid") for d in as_sequence(damping_grid, "damping_grid")]
    if grid is not None and not grid:
        raise ValueError("damping_grid: expected at least one damping, got an empty sequence")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate: expected a callable w -> loss, got {describe(evaluate)}")
    if auto and evaluate is None and info.needs_design:
        raise TypeError("evaluate: expected a held-out loss callable for damping='auto', got None")
    if not isinstance(first_order, (bool, np.bool_)):
        raise TypeError(f"first_order: expected a bool, got {describe(first_order)}")
    first_order_scale = check_nonnegative(first_order_scale, "first_order_scale")
    alive = check_mask(mask, p)
    block_list = resolve_blocks(block_size, blocks, layout, p)
    ranking = check_ranking(block_ranking, p)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "executor: expected an object with a submit(fn, *args) method, "
            f"got {describe(executor)}"
        )
    if max_columns is not None:
        max_columns = int(check_positive_int(max_columns, "max_columns"))  # type: ignore[arg-type]
        if block_list is None:
            raise ValueError("max_columns: only meaningful with blocks; set block_size or blocks")
    needs_gradients = info.needs_design
    groups, group_cap = check_groups(groups, group_cap, p)
    if groups is not None and block_list is not None:
        block_list = align_blocks(block_list, groups)
    if needs_gradients and not callable(gradient_fn):
        raise TypeError(
            f"gradient_fn: expected a callable (w, columns) -> G, got {describe(gradient_fn)}"
        )
    solver_options = dict(solver_options or {})
    if not needs_gradients and solver_options:
        raise TypeError(
            f"solver_options: method {method!r} takes no options, got {sorted(solver_options)}"
        )
    if needs_gradients:
        # Reject an option typo now, not after the first (possibly long) gradient pass.
        from ..solvers import check_options

        check_options(method, solver_options)

    w[~alive] = 0.0
    w_start, alive_start = w.copy(), alive.copy()  # for the magnitude guard of "auto"
    report = PruneReport(
        method=method,
        sparsity=sparsity,
        k=k_from_sparsity(p, sparsity),
        p=p,
        options={
            "stages": stages,
            "schedule": schedule if isinstance(schedule, str) else "custom",
            "damping": damping,
            "first_order": bool(first_order),
            **({"first_order_scale": first_order_scale} if first_order else {}),
            **({"block_size": block_size} if block_size is not None else {}),
            **({"n_blocks": len(block_list)} if block_list is not None else {}),
            **dict(options or {}),
        },
    )
    if stages > 1:
        report.options["levels"] = [round(float(s), 6) for s in levels]
    context = StageContext(
        gradient_fn=gradient_fn,
        method=method,
        needs_gradients=needs_gradients,
        damping=None if auto else float(damping),
        first_order=bool(first_order),
        first_order_scale=first_order_scale,
        solver_options=solver_options,
        blocks=block_list,
        ranking=ranking,
        executor=executor,
        max_columns=max_columns,
        progress=progress,
        evaluate=_as_scorer(evaluate) if needs_gradients else None,
        damping_grid=None if grid is None else tuple(grid),
        wide_skip_swaps=info.accepts("max_swaps"),
        groups=groups,
        group_cap=group_cap,
    )
    warned = False
    # damping="auto" in CHITA++: the first stage also solves the one-shot problem of the
    # whole run from its gradients (what stages=1 returns), for the guard after the loop
    one_shot = ((float(levels[-1]), report.k)
                if auto and stages > 1 and context.evaluate is not None else None)
    alternative = None
    desc = f"{method} " + ("stages" if stages > 1 else "one-shot")
    bar = _progress(stages, progress, desc, leave=True)
    try:
        for t, level in enumerate(levels, start=1):
            k_t = k_from_sparsity(p, float(level))
            n_alive = int(alive.sum())
            if k_t >= n_alive:
                # Nothing to prune at this level (the start mask is already sparser).
                report.stages.append(
                    StageRecord(
                        t,
                        float(level),
                        n_alive,
                        n_alive,
                        status=Status.SKIPPED,
                        objective_kind="none",
                        message="already at or below this stage's budget",
                    )
                )
                bar.update(1)
                continue
            if on_stage is not None and needs_gradients:
                on_stage(t)
            w_before = w
            w, alive, record, alt = run_stage(context, t, float(level), k_t, w, alive,
                                              final=t == len(levels), one_shot=one_shot)
            if alt is not None:
                alternative, one_shot = alt, None
                report.gradient_time += alt[2].gradient_time
                report.solve_time += alt[2].solve_time
            record = _with_weight_change(record, w_before, w)
            if not warned and _moved_too_far(record, needs_gradients):
                warned = True
                warn(_move_message(record), ModelValidityWarning)
            report.stages.append(record)
            report.gradient_time += record.gradient_time
            report.solve_time += record.solve_time
            logger.info(
                "stage %d/%d: sparsity %.4f, kept %d, damping %s, objective %s, grad %.2fs, "
                "solve %.2fs",
                t,
                stages,
                level,
                record.k,
                record.damping,
                record.objective,
                record.gradient_time,
                record.solve_time,
            )
            bar.update(1)
            bar.set_postfix_str(f"sparsity {level:.3f}")
    finally:
        bar.close()
    if int(alive.sum()) < report.k:
        logger.warning(
            "mask: only %d weights were alive at the start, fewer than k=%d; "
            "the result is sparser than asked",
            int(alive.sum()),
            report.k,
        )
    last = report.stages[-1] if report.stages else None
    fallback_damping = None
    if auto and stages > 1 and last is not None and last.held_out_loss is not None:
        w, alive, fallback_damping = _guard(report, context, last, alternative, w, alive,
                                            w_start, alive_start)
    chosen = [r.damping for r in report.stages if r.damping is not None]
    if fallback_damping is not None:
        report.options["damping"] = fallback_damping
        report.options["damping_selection"] = "auto"
    elif auto and chosen:
        report.options["damping"] = chosen[-1] if len(set(chosen)) == 1 else chosen
        report.options["damping_selection"] = "auto"
        searched = [r for r in report.stages if r.damping_losses]
        if len(searched) == 1:  # one-shot: the candidates at a glance
            for key in ("damping_losses", "damping_errors"):
                values = getattr(searched[0], key)
                if values is not None:
                    report.options[key] = by_damping_name(values)
    report.weights = w
    report.mask = alive
    if layout is not None:
        report.layers = layer_sparsities(layout, w)
    report.total_time = time.perf_counter() - clock
    return report


def _guard(
    report: PruneReport, context: StageContext, last: StageRecord, alternative: Any,
    w: np.ndarray, alive: np.ndarray, w_start: np.ndarray, alive_start: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """CHITA++ with ``damping="auto"`` never ends below one-shot pruning on the held-out samples.

    The finished run is compared (held-out error, then loss) with the one-shot
    prune of the original weights that its first stage solved (``alternative``,
    what ``stages=1`` returns: CHITA with the held-out damping choice), then
    with one-shot magnitude pruning as the one-shot choice compares a damping
    with it (:func:`~chita_opt.pruning.stages.magnitude_guard`: errors within
    the noise bar are decided by the loss); the best is returned. Returns ``(w, alive,
    damping of the returned one-shot weights or None)``.
    """
    ran = Score(last.held_out_loss, last.held_out_error)  # type: ignore[arg-type]
    score = ran
    fallback = None  # (kind, weights, alive, damping) of a one-shot result that wins
    if alternative is not None:
        w_1, alive_1, rec_1 = alternative
        score_1 = Score(rec_1.held_out_loss, rec_1.held_out_error)
        report.options["one_shot"] = {"damping": rec_1.damping,
                                      "held_out_loss": rec_1.held_out_loss,
                                      "held_out_error": rec_1.held_out_error}
        # a one-shot choice of magnitude pruning is the magnitude guard's to compare
        if rec_1.damping != math.inf and score_1.key() < ran.key():
            score, fallback = score_1, ("one-shot", w_1, alive_1, rec_1.damping)
    guard = magnitude_guard(context, last, w_start, alive_start, beat=score)
    if guard is not None:
        score, fallback = guard[2], ("magnitude", guard[0], guard[1], math.inf)
    if fallback is None:
        return w, alive, None
    kind, w_out, alive_out, damping = fallback
    stages = report.options["stages"]
    report.options["fallback"] = kind
    what = fallback_name(kind, damping)
    tied = ""
    if score.error is not None and ran.error is not None and score.error > ran.error:
        # won by magnitude_wins' noise tie: say why a higher error came back
        tied = (f"; errors within the noise of {score.n or 'the'} held-out samples count as "
                "tied and the loss decides")
    warn(
        f"the {stages}-stage run scored below {what} on the held-out samples "
        f"({_describe(score)} against {_describe(ran)}{tied}): the one-shot result is "
        "returned (report.options['fallback'])",
        ModelValidityWarning,
    )
    return w_out, alive_out, damping


def _describe(score: Score) -> str:
    loss = f"loss {score.loss:.4g}"
    return loss if score.error is None else f"error {score.error:.4g}, {loss}"


def _as_scorer(evaluate: Callable[[np.ndarray], Any] | None) -> Any:
    """``evaluate`` returning a :class:`Score` (a plain float is the loss)."""
    if evaluate is None:
        return None

    def score(w: np.ndarray) -> Score:
        value = evaluate(w)
        return value if isinstance(value, Score) else Score(float(value))

    return score


#: A stage that moves the weights by more than this multiple of their norm
#: triggers a warning. On MLPNet (benchmarks/mlpnet_levers.py --probe) the
#: stages of good runs moved them by 0.003-0.4, one-stage pruning by 0.53-0.75
#: (the pruned weights included), and the first stage of a run that broke the
#: network (first-order term, damping 1e-4: 48% at 0.98) by 3.3.
MOVE_WARNING = 1.0


class ModelValidityWarning(RuntimeWarning):
    """A stage moved the weights farther than its local quadratic model of the loss holds."""


def _move_message(record: StageRecord, prefix: str = "") -> str:
    return (
        f"{prefix}stage {record.stage} moved the weights by {record.weight_change:.2g} times "
        "their norm: the local quadratic model of the loss is not valid that far from the "
        "weights it was built at, and the pruned network may be much worse than the "
        "objective suggests. Increase `damping` (or choose it with damping='auto' on "
        "held-out data)."
    )


def _with_weight_change(record: StageRecord, before: np.ndarray, after: np.ndarray) -> StageRecord:
    norm = float(np.linalg.norm(before))
    if norm == 0.0:
        return record
    return replace(record, weight_change=float(np.linalg.norm(after - before)) / norm)


def _moved_too_far(record: StageRecord, modelled: bool) -> bool:
    # Magnitude pruning builds no model: its moves are the pruned weights themselves.
    return (
        modelled
        and record.weight_change is not None
        and record.weight_change > MOVE_WARNING
    )


def layer_sparsities(layout: ParamLayout, w: np.ndarray) -> list[LayerSparsity]:
    """Non-zero count of every tensor of ``layout`` in ``w``."""
    return [
        LayerSparsity(name, shape, size, int(np.count_nonzero(w[o : o + size])))
        for name, shape, size, o in zip(
            layout.names, layout.shapes, layout.sizes, layout.offsets, strict=True
        )
    ]
