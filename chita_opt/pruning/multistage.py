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
import numbers
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._validation import check_nonnegative, check_positive_int, check_sparsity, describe
from ..problem import L0Problem, k_from_sparsity
from ..result import Status
from .blocks import (
    BlockResult,
    _progress,
    block_budgets,
    iter_block_tasks,
    solve_blocks,
    worst_status,
)
from .layout import ParamLayout, uniform_blocks
from .report import LayerSparsity, PruneReport, StageRecord
from .schedules import sparsity_schedule

__all__ = [
    "DampingSelection",
    "GradientFn",
    "ModelValidityWarning",
    "layer_sparsities",
    "multistage_prune",
    "select_damping",
]

logger = logging.getLogger(__name__)

#: ``gradient_fn(w, columns) -> G``: gradient rows at the flat weights ``w``
#: (float64, length p) for the coordinates where the boolean mask ``columns``
#: is True, as an ``(n, columns.sum())`` float32/float64 array (the result may
#: be a view of a buffer that the next call overwrites).
GradientFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


#: Default ridge added to the empirical Fisher, shared by every adapter. Chosen
#: by held-out accuracy on MLPNet (docs/pruning_pytorch.md): 1e-4 lets the exact
#: refit overfit the gradient rows at high sparsity.
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
    damping: float = DEFAULT_DAMPING,
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
) -> PruneReport:
    """Prune a flat weight vector in one or several stages.

    Parameters
    ----------
    w0 : array_like, shape (p,)
        Dense (current) weights.
    gradient_fn : callable ``(w, columns) -> G`` or None
        Gradient rows at weights ``w`` for the columns where ``columns`` is
        True (see :data:`GradientFn`). Not called for ``method="magnitude"``
        (may then be ``None``).
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
    damping : float
        Ridge ``lambda`` added to the empirical Fisher ``G^T G / n`` (``l2 = n * damping``).
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

    Returns
    -------
    PruneReport
        With ``weights`` (the pruned flat vector) and ``mask``.
    """
    clock = time.perf_counter()
    w = _check_w0(w0)
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
    from ..solvers import available_methods

    if method not in available_methods():
        raise ValueError(f"method: expected one of {available_methods()}, got {method!r}")
    damping = check_nonnegative(damping, "damping")
    if not isinstance(first_order, (bool, np.bool_)):
        raise TypeError(f"first_order: expected a bool, got {describe(first_order)}")
    first_order_scale = check_nonnegative(first_order_scale, "first_order_scale")
    alive = _check_mask(mask, p)
    block_list = _resolve_blocks(block_size, blocks, layout, p)
    ranking = _check_ranking(block_ranking, p)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "executor: expected an object with a submit(fn, *args) method, "
            f"got {describe(executor)}"
        )
    if max_columns is not None:
        max_columns = int(check_positive_int(max_columns, "max_columns"))  # type: ignore[arg-type]
        if block_list is None:
            raise ValueError("max_columns: only meaningful with blocks; set block_size or blocks")
    needs_gradients = method != "magnitude"
    if needs_gradients and not callable(gradient_fn):
        raise TypeError(
            f"gradient_fn: expected a callable (w, columns) -> G, got {describe(gradient_fn)}"
        )
    solver_options = dict(solver_options or {})
    if method == "magnitude" and solver_options:
        raise TypeError(
            f"solver_options: method 'magnitude' takes no options, got {sorted(solver_options)}"
        )
    if needs_gradients:
        # Reject an option typo now, not after the first (possibly long) gradient pass.
        from ..solvers import _check_options, _lookup

        _check_options(method, _lookup(method), solver_options)

    w[~alive] = 0.0
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
    context = _StageContext(
        gradient_fn=gradient_fn,
        method=method,
        damping=damping,
        first_order=bool(first_order),
        first_order_scale=first_order_scale,
        solver_options=solver_options,
        blocks=block_list,
        ranking=ranking,
        executor=executor,
        max_columns=max_columns,
        progress=progress,
    )
    warned = False
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
                        status="skipped",
                        objective_kind="none",
                        message="already at or below this stage's budget",
                    )
                )
                bar.update(1)
                continue
            w_before = w
            w, alive, record = _run_stage(context, t, float(level), k_t, w, alive,
                                          final=t == len(levels))
            record = _with_weight_change(record, w_before, w)
            if not warned and _moved_too_far(record, method):
                warned = True
                warnings.warn(_move_message(record), ModelValidityWarning, stacklevel=2)
            report.stages.append(record)
            report.gradient_time += record.gradient_time
            report.solve_time += record.solve_time
            logger.info(
                "stage %d/%d: sparsity %.4f, kept %d, objective %s, grad %.2fs, solve %.2fs",
                t,
                stages,
                level,
                record.k,
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
    report.weights = w
    report.mask = alive
    if layout is not None:
        report.layers = layer_sparsities(layout, w)
    report.total_time = time.perf_counter() - clock
    return report


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


def _moved_too_far(record: StageRecord, method: str) -> bool:
    # Magnitude pruning builds no model: its moves are the pruned weights themselves.
    return (
        method != "magnitude"
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


# ---------------------------------------------------------------------- stages
@dataclass
class _StageContext:
    gradient_fn: GradientFn | None
    method: str
    damping: float
    first_order: bool
    first_order_scale: float
    solver_options: dict[str, Any]
    blocks: list[tuple[int, int]] | None
    ranking: np.ndarray | None
    executor: Any
    max_columns: int | None
    progress: bool
    extra: dict[str, Any] = field(default_factory=dict)


def _run_stage(
    ctx: _StageContext, t: int, level: float, k: int, w: np.ndarray, alive: np.ndarray,
    *, final: bool = True,
) -> tuple[np.ndarray, np.ndarray, StageRecord]:
    idx = np.flatnonzero(alive)
    if ctx.method == "magnitude":
        return _magnitude_stage(t, level, k, w, idx)
    if ctx.blocks is not None:
        return _block_stage(ctx, t, level, k, w, alive, idx)
    from ..solvers import solve

    t0 = time.perf_counter()
    G = _call_gradient_fn(ctx.gradient_fn, w, alive, idx.size, t)
    t1 = time.perf_counter()
    problem = L0Problem.from_gradients(
        G,
        w[idx],
        k=k,
        damping=ctx.damping,
        first_order=ctx.first_order,
        first_order_scale=ctx.first_order_scale,
    )
    sol = solve(problem, method=ctx.method, **_stage_options(ctx, problem, final))
    t2 = time.perf_counter()
    _check_status(sol.status, sol.message, ctx.method, t)
    w_new = np.zeros_like(w)
    w_new[idx] = sol.w
    keep = _mask_of_k(sol.w, w[idx], k)
    alive_new = np.zeros_like(alive)
    alive_new[idx[keep]] = True
    record = StageRecord(
        stage=t,
        sparsity=level,
        k=k,
        n_alive=idx.size,
        n_rows=problem.n,
        objective=float(sol.objective),
        gradient_time=t1 - t0,
        solve_time=t2 - t1,
        status=sol.status,
        message=sol.message,
    )
    return w_new, alive_new, record


# Intermediate stages with k > _WIDE_FACTOR * n skip chita's swap search.
_WIDE_FACTOR = 3


def _stage_options(ctx: _StageContext, problem: L0Problem, final: bool) -> dict[str, Any]:
    """Solver options of one stage: the user's, plus no swap search in wide intermediate stages.

    With several times more kept weights than gradient rows (k > 3n) each
    chita swap costs O(n k) and, on MLPNet, buys nothing: skipping them in
    every stage but the last left the accuracy at 0.9 unchanged (94.2% test,
    three draws) and saved 45% of the time. Closer to k = n they matter
    (skipping them for every k > n cost 3 points at 0.98), so they stay
    there. An explicit ``max_swaps`` wins. See docs/benchmarks_mlpnet.md.
    """
    options = dict(ctx.solver_options)
    if ctx.method == "chita" and not final and problem.k > _WIDE_FACTOR * problem.n:
        options.setdefault("max_swaps", 0)
    return options


def _magnitude_stage(
    t: int, level: float, k: int, w: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, StageRecord]:
    from ..solvers._common import top_k

    t0 = time.perf_counter()
    keep = idx[top_k(np.abs(w[idx]), k)]
    w_new = np.zeros_like(w)
    w_new[keep] = w[keep]
    alive_new = np.zeros(w.size, dtype=bool)
    alive_new[keep] = True
    record = StageRecord(
        t,
        level,
        k,
        idx.size,
        objective=None,
        objective_kind="none",
        solve_time=time.perf_counter() - t0,
        message=f"kept the {k} largest |w|",
    )
    return w_new, alive_new, record


def _block_stage(
    ctx: _StageContext,
    t: int,
    level: float,
    k: int,
    w: np.ndarray,
    alive: np.ndarray,
    idx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, StageRecord]:
    assert ctx.blocks is not None
    # Blocks in the coordinate space of the alive weights: a block [a, b) of w
    # becomes the alive positions inside it, still contiguous in idx.
    bounds = np.searchsorted(idx, np.array(ctx.blocks, dtype=np.int64).reshape(-1)).reshape(-1, 2)
    local = [(int(a), int(b)) for a, b in bounds if b > a]
    scores = np.abs(w[idx]) if ctx.ranking is None else ctx.ranking[idx]
    budgets = block_budgets(scores, local, k)
    groups = _group_blocks(local, ctx.max_columns)
    w_alive = w[idx]
    fields = dict(
        damping=ctx.damping,
        first_order=ctx.first_order,
        first_order_scale=ctx.first_order_scale,
        method=ctx.method,
        options=ctx.solver_options,
    )
    results: list[BlockResult] = []
    grad_time = 0.0
    solve_time = 0.0
    n_rows = 0
    bar = _progress(len(local), ctx.progress and len(local) > 1, f"stage {t} blocks")
    try:
        for group in groups:
            lo, hi = local[group[0]][0], local[group[-1]][1]
            columns = np.zeros_like(alive)
            columns[idx[lo:hi]] = True
            t0 = time.perf_counter()
            G = _call_gradient_fn(ctx.gradient_fn, w, columns, hi - lo, t)
            t1 = time.perf_counter()
            n_rows = G.shape[0]
            tasks = iter_block_tasks(
                G,
                w_alive,
                [local[i] for i in group],
                [int(budgets[i]) for i in group],
                offset=lo,
                **fields,
            )
            # Solve this group's blocks before the next gradient call may reuse G's buffer.
            part = solve_blocks(tasks, executor=ctx.executor, total=len(group), progress=False)
            for _ in part:
                bar.update(1)
            results.extend(part)
            del G
            grad_time += t1 - t0
            solve_time += time.perf_counter() - t1
    finally:
        bar.close()
    for res in results:
        _check_status(res.status, res.message, ctx.method, t, block=(res.start, res.stop))
    w_sol = np.zeros(idx.size)
    keep = np.zeros(idx.size, dtype=bool)
    for res, kb in zip(results, budgets, strict=True):
        w_sol[res.start : res.stop] = res.w
        keep[res.start : res.stop] = _mask_of_k(res.w, w_alive[res.start : res.stop], int(kb))
    w_new = np.zeros_like(w)
    w_new[idx] = w_sol
    alive_new = np.zeros_like(alive)
    alive_new[idx[keep]] = True
    record = StageRecord(
        stage=t,
        sparsity=level,
        k=k,
        n_alive=idx.size,
        n_rows=n_rows,
        objective=float(sum(r.objective for r in results)),
        objective_kind="block-sum",
        gradient_time=grad_time,
        solve_time=solve_time,
        status=worst_status(r.status for r in results),
        n_blocks=len(results),
        message=f"{len(results)} blocks in {len(groups)} gradient pass(es)",
    )
    return w_new, alive_new, record


def _group_blocks(blocks: list[tuple[int, int]], max_columns: int | None) -> list[list[int]]:
    """Consecutive blocks grouped so each group spans at most ``max_columns`` columns."""
    if max_columns is None:
        return [list(range(len(blocks)))] if blocks else []
    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i, (a, b) in enumerate(blocks):
        if current and width + (b - a) > max_columns:
            groups.append(current)
            current, width = [], 0
        current.append(i)
        width += b - a
    if current:
        groups.append(current)
    return groups


def _mask_of_k(w_sol: np.ndarray, w_prev: np.ndarray, k: int) -> np.ndarray:
    """Exactly ``k`` kept coordinates: the solution's support, padded if it is smaller.

    A solver may return fewer than ``k`` non-zeros (a weight that is exactly
    zero at the optimum); those slots stay in the mask -- ranked by the
    previous ``|w|`` -- so later stages and fine-tuning may still use them.
    """
    from ..solvers._common import top_k

    keep = w_sol != 0
    missing = k - int(keep.sum())
    if missing > 0:
        scores = np.where(keep, np.inf, np.abs(w_prev))
        keep[top_k(scores, k)] = True
    return keep


def _call_gradient_fn(
    gradient_fn: GradientFn | None, w: np.ndarray, columns: np.ndarray, n_cols: int, t: int
) -> np.ndarray:
    assert gradient_fn is not None
    try:
        G = gradient_fn(w.copy(), columns.copy())
    except Exception as exc:
        exc.add_note(f"chita_opt: raised by gradient_fn at stage {t}")
        raise
    if not isinstance(G, np.ndarray):
        G = np.asarray(G)
    if G.ndim != 2 or G.shape[1] != n_cols:
        raise ValueError(
            f"gradient_fn: expected an (n, {n_cols}) array for the {n_cols} requested columns "
            f"at stage {t}, got {describe(G)}"
        )
    return G


def _check_status(status: str, message: str, method: str, t: int, block: Any = None) -> None:
    if Status(status).is_failure:
        where = f"stage {t}" + (f", block {block}" if block is not None else "")
        hint = " (try a larger damping)" if status == "unbounded" else ""
        raise RuntimeError(
            f"{where}: method {method!r} returned status {status!r}: {message}{hint}"
        )


# ------------------------------------------------------------------ validation
def _check_w0(w0: Any) -> np.ndarray:
    from .._validation import check_vector

    arr = np.asarray(w0) if not isinstance(w0, np.ndarray) else w0
    if arr.ndim != 1:
        raise ValueError(f"w0: expected a 1-D array of weights, got {describe(arr)}")
    if arr.size == 0:
        raise ValueError("w0: expected at least one weight, got an empty array")
    return check_vector(arr, "w0", arr.size)


def _check_mask(mask: Any, p: int) -> np.ndarray:
    if mask is None:
        return np.ones(p, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask: expected a boolean array of length {p}, got {describe(arr)}")
    if arr.shape != (p,):
        raise ValueError(f"mask: expected a boolean array of length {p}, got {describe(arr)}")
    return arr.copy()


def _resolve_blocks(
    block_size: Any, blocks: Any, layout: ParamLayout | None, p: int
) -> list[tuple[int, int]] | None:
    if block_size is not None and blocks is not None:
        raise TypeError("block_size/blocks: expected at most one of them, got both")
    if block_size is not None:
        size = int(check_positive_int(block_size, "block_size"))  # type: ignore[arg-type]
        if layout is not None:
            return layout.blocks(size)
        return uniform_blocks(0, p, size)
    if blocks is None:
        return None
    out = []
    try:
        for a, b in blocks:
            out.append((int(a), int(b)))
    except (TypeError, ValueError):
        raise TypeError(
            f"blocks: expected a sequence of (start, stop) pairs, got {describe(blocks)}"
        ) from None
    out.sort()
    pos = 0
    for a, b in out:
        if a != pos or b <= a:
            raise ValueError(
                f"blocks: expected non-empty, disjoint blocks covering [0, {p}), got a gap or "
                f"overlap at ({a}, {b})"
            )
        pos = b
    if pos != p:
        raise ValueError(f"blocks: expected blocks covering [0, {p}), got coverage up to {pos}")
    return out


def _check_ranking(ranking: Any, p: int) -> np.ndarray | None:
    if isinstance(ranking, str):
        if ranking != "magnitude":
            raise ValueError(
                f"block_ranking: expected 'magnitude' or an array of {p} scores, got {ranking!r}"
            )
        return None
    from .._validation import check_vector

    return check_vector(ranking, "block_ranking", p)


# ------------------------------------------------------------ damping choice
@dataclass(frozen=True)
class DampingSelection:
    """Outcome of :func:`select_damping`.

    Attributes
    ----------
    damping : float
        The damping with the lowest held-out loss.
    losses : dict
        Held-out loss for every damping tried.
    report : PruneReport
        The pruning run with the chosen damping.
    """

    damping: float
    losses: dict[float, float]
    report: PruneReport

    def __str__(self) -> str:
        rows = "\n".join(
            f"  damping {d:<10.3g} held-out loss {loss:.6g}"
            + ("  <- chosen" if d == self.damping else "")
            for d, loss in self.losses.items()
        )
        return f"DampingSelection(damping={self.damping:g})\n{rows}"


DEFAULT_DAMPING_GRID = (1e-4, 1e-3, 1e-2, 1e-1)



def select_damping(
    run: Callable[[float], PruneReport],
    evaluate: Callable[[PruneReport], float],
    grid: Sequence[float] = DEFAULT_DAMPING_GRID,
) -> DampingSelection:
    """Pick the damping whose pruned weights have the lowest held-out loss.

    The quadratic model's objective is not a reliable guide (a very small
    damping lets the model overfit its n gradient rows, see the docs): the
    choice is made on the network's loss on data not used for the gradients.

    Parameters
    ----------
    run : callable ``damping -> PruneReport``
        Prunes (without touching the caller's model) with one damping.
    evaluate : callable ``PruneReport -> float``
        Held-out loss of the report's ``weights``.
    grid : sequence of float
        Dampings to try (non-negative).
    """
    values = [check_nonnegative(d, "grid") for d in _as_sequence(grid, "grid")]
    if not values:
        raise ValueError("grid: expected at least one damping, got an empty sequence")
    losses: dict[float, float] = {}
    best: tuple[float, float, PruneReport] | None = None
    for d in values:
        with warnings.catch_warnings():
            # Candidates that move too far are what the held-out loss weeds out;
            # only the chosen one is worth a warning (below).
            warnings.simplefilter("ignore", ModelValidityWarning)
            rep = run(d)
        loss = float(evaluate(rep))
        losses[d] = loss
        logger.info("damping %g: held-out loss %.6g", d, loss)
        if np.isfinite(loss) and (best is None or loss < best[1]):
            best = (d, loss, rep)
    if best is None:
        raise RuntimeError(
            f"select_damping: every damping gave a non-finite held-out loss: {losses}"
        )
    best[2].options["damping_losses"] = {f"{d:g}": v for d, v in losses.items()}
    far = [r for r in best[2].stages if _moved_too_far(r, best[2].method)]
    if far:
        warnings.warn(_move_message(far[0], f"with the chosen damping {best[0]:g}, "),
                      ModelValidityWarning, stacklevel=2)
    return DampingSelection(best[0], losses, best[2])


def _as_sequence(value: Any, name: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or isinstance(value, numbers.Number):
        raise TypeError(f"{name}: expected a sequence of numbers, got {describe(value)}")
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{name}: expected a sequence of numbers, got {describe(value)}") from None
