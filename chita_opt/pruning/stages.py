"""One stage of the pruning loop: gradients, the L0 problem(s), the damping choice.

:func:`run_stage` is called by :func:`chita_opt.pruning.multistage_prune` for
every stage. It asks for gradient rows at the current weights (alive
coordinates only), builds the local quadratic model, solves it -- as one
problem or block by block -- and, with ``damping="auto"``, solves it for
several dampings and keeps the one whose pruned network has the lowest
held-out loss (:mod:`chita_opt.pruning.damping`). No framework code here.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._validation import check_nonnegative, describe
from ..problem import L0Problem
from ..result import Status
from . import damping as _damping
from .blocks import BlockResult, _progress, block_budgets, iter_block_tasks, solve_blocks
from .damping import (
    Score,
    choose_damping,
    damping_grid,
    errors_differ,
    fisher_scale,
    magnitude_wins,
    min_error_spread,
)
from .patterns import fill_groups, top_per_group
from .report import StageRecord

__all__ = ["GradientFn", "StageContext", "magnitude_guard", "run_stage"]

#: ``gradient_fn(w, columns) -> G``: gradient rows at the flat weights ``w``
#: (float64, length p) for the coordinates where the boolean mask ``columns``
#: is True, as an ``(n, columns.sum())`` float32/float64 array (the result may
#: be a view of a buffer that the next call overwrites).
GradientFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: ``evaluate(w) -> Score``: held-out loss (and error) of the network at flat weights ``w``.
Evaluate = Callable[[np.ndarray], Score]


@dataclass
class StageContext:
    """Settings shared by every stage of one run (validated by the caller)."""

    gradient_fn: GradientFn | None
    method: str
    needs_gradients: bool
    damping: float | None  # None: choose per stage with ``search``
    first_order: bool
    first_order_scale: float
    solver_options: dict[str, Any]
    blocks: list[tuple[int, int]] | None
    ranking: np.ndarray | None
    executor: Any
    max_columns: int | None
    progress: bool
    evaluate: Evaluate | None = None
    damping_grid: tuple[float, ...] | None = None  # the user's candidates for "auto"
    groups: np.ndarray | None = None  # group id per weight (N:M patterns)
    group_cap: int | None = None
    wide_skip_swaps: bool = False


@dataclass
class _Candidate:
    """The outcome of solving one stage with one damping (and first-order setting)."""

    w: np.ndarray  # full flat weights after the stage
    alive: np.ndarray
    record: StageRecord
    score: Score | None = None


#: What :func:`run_stage` returns: the weights, the alive mask and the stage's record.
Outcome = tuple[np.ndarray, np.ndarray, StageRecord]


def run_stage(
    ctx: StageContext, t: int, level: float, k: int, w: np.ndarray, alive: np.ndarray,
    *, final: bool = True, one_shot: tuple[float, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, StageRecord, Outcome | None]:
    """Prune ``w`` (alive coordinates ``alive``) to ``k`` weights: ``(w, alive, record, alt)``.

    ``one_shot=(level, k)`` (the run's last level and budget) also solves, from
    this stage's gradients, the one-shot problem of the whole run with the
    held-out choice (``damping="auto"``): ``alt`` is its outcome -- what
    ``stages=1`` returns from the same samples -- for the multi-stage run's
    guard (:func:`chita_opt.pruning.multistage_prune`). Otherwise ``alt`` is None.
    """
    idx = np.flatnonzero(alive)
    if not ctx.needs_gradients:
        return (*_magnitude_stage(ctx, t, level, k, w, idx, final), None)
    t0 = time.perf_counter()
    if ctx.blocks is not None:
        solve_at, scale_of = _block_solver(ctx, t, level, k, w, alive, idx, final)
    else:
        G = _call_gradient_fn(ctx.gradient_fn, w, alive, idx.size, t)
        solve_at = _full_solver(ctx, t, level, k, w, alive, idx, G, final)

        def scale_of() -> float:
            return fisher_scale(G)
    grad_time = time.perf_counter() - t0
    scale_of = functools.cache(scale_of)  # block stages pay a gradient pass for it

    relative = ctx.damping is None and ctx.damping_grid is None and not final
    if relative:
        # damping="auto" before the last stage of CHITA++: a fixed share of the
        # stage's own Fisher scale, no search -- the held-out scores of a network
        # still near dense do not rank the candidates (docs/benchmarks_zoo.md).
        d = _damping.STAGE_DAMPING * scale_of()  # read at call time: benchmarks sweep it
        if ctx.first_order and ctx.evaluate is not None:
            # only the first-order guard: with and without the term at this damping
            best = _choose(replace(ctx, damping=d), solve_at, scale_of, t)
        else:
            best = solve_at(d, ctx.first_order)
            best.record = replace(best.record, damping=d)
    elif ctx.damping is not None and not (ctx.first_order and ctx.evaluate is not None):
        best = solve_at(ctx.damping, ctx.first_order)
    else:
        best = _choose(ctx, solve_at, scale_of, t)
    record = best.record
    if ctx.blocks is None:
        record = replace(record, gradient_time=record.gradient_time + grad_time)
    alt = None
    if one_shot is not None and ctx.evaluate is not None:
        level_1, k_1 = one_shot
        if ctx.blocks is not None:
            solve_1, _ = _block_solver(ctx, t, level_1, k_1, w, alive, idx, True)
        else:
            solve_1 = _full_solver(ctx, t, level_1, k_1, w, alive, idx, G, True)
        # a candidate the held-out samples cannot score (NaN/Inf) is skipped with a
        # warning: the guard must not make a run fail that would succeed without it
        single = _choose(ctx, solve_1, scale_of, t, label="one-shot", on_nonfinite="skip")
        alt = (single.w, single.alive, single.record)
    return best.w, best.alive, record, alt


def _choose(
    ctx: StageContext, solve_at: Callable[..., _Candidate], scale_of: Callable[[], float],
    t: int, label: str | None = None, on_nonfinite: str = "raise",
) -> _Candidate:
    """Held-out choice of the damping (``damping="auto"``) and of the first-order term.

    The rule measured on the model zoo (:mod:`chita_opt.pruning.damping`,
    docs/benchmarks_zoo.md): candidates ``lambda_0 * 10^{0,-5}`` and
    magnitude pruning (infinite damping), each solved with the stage's method
    from the largest damping down, each from the method's own starting point,
    then up to :data:`~chita_opt.pruning.damping.REFINE_STEPS` bisection points
    (one each way when the best's neighbours tie within the noise bar);
    the lowest held-out (error, loss) wins, ties to the larger damping.
    """
    assert ctx.evaluate is not None
    clock = time.perf_counter()
    if ctx.damping is not None:
        candidates = [ctx.damping]
    elif ctx.damping_grid is not None:
        candidates = list(ctx.damping_grid)
    else:
        # the module's constants read at call time: benchmarks sweep them
        candidates = [*damping_grid(scale=scale_of(), n_points=_damping.N_POINTS,
                                    decades=_damping.DECADES, top=_damping.TOP), math.inf]
    tried: list[_Candidate] = []
    scores: dict[float, Score] = {}
    # the number of candidates is known only after the grid (the refinement adapts)
    bar = _progress(None, ctx.progress and len(candidates) > 1,
                    f"{label or f'stage {t}'} damping")

    def prune_at(d: float, _: object) -> _Candidate:
        bar.set_postfix_str(f"damping {d:.3g}")
        cand = solve_at(d, ctx.first_order)
        tried.append(cand)
        bar.update(1)
        return cand

    def loss_fn(cand: _Candidate) -> tuple[float, ...]:  # named for the NaN error message
        cand.score = ctx.evaluate(cand.w)  # type: ignore[misc]
        scores[cand.record.damping if cand.record.damping is not None else math.inf] = cand.score
        return cand.score.key()

    # Cold solves: warm starts from the neighbouring candidate were 1.6x slower over
    # the zoo's 24 one-shot rows, for no better networks (docs/benchmarks_zoo.md).
    # The default grid is refined by bisection where its held-out errors differ;
    # a user's own candidates are taken as given.
    refine = _damping.REFINE_STEPS if ctx.damping is None and ctx.damping_grid is None else 0

    def error_spread() -> float:  # what counts as a real difference of held-out errors
        n = next((sc.n for sc in scores.values() if sc.n), None)  # held-out samples
        return min_error_spread(n)

    def refine_if(keys: list[tuple[float, ...]]) -> bool:
        return errors_differ(keys, error_spread())

    try:
        choice = choose_damping(candidates, prune_at, loss_fn, warm_start=False,
                                refine=refine, refine_if=refine_if, on_nonfinite=on_nonfinite,
                                magnitude_tie=error_spread, neighbour_tie=error_spread)
    finally:
        bar.close()
    best: _Candidate = choice.w
    fo_used: bool | None = None
    if ctx.first_order:
        # Guard: keep the first-order term only where it lowers the held-out score.
        plain = solve_at(choice.damping, False)
        tried.append(plain)
        plain.score = ctx.evaluate(plain.w)
        fo_used = bool(best.score is not None and best.score.key() <= plain.score.key())
        if not fo_used:
            best = plain
    # Time of everything tried (gradient passes of block stages, solves, held-out passes).
    elapsed = time.perf_counter() - clock
    grad = sum(c.record.gradient_time for c in tried)
    assert best.score is not None
    best.record = replace(
        best.record,
        damping=choice.damping,
        damping_losses=({d: v.loss for d, v in sorted(scores.items())}
                        if len(candidates) > 1 else None),
        damping_errors=({d: v.error for d, v in sorted(scores.items())}
                        if len(candidates) > 1
                        and all(v.error is not None for v in scores.values()) else None),
        held_out_loss=best.score.loss,
        held_out_error=best.score.error,
        first_order_used=fo_used,
        gradient_time=grad,
        solve_time=elapsed - grad,
    )
    return best


def magnitude_guard(
    ctx: StageContext, last: StageRecord, w_start: np.ndarray, alive_start: np.ndarray,
    beat: Score,
) -> tuple[np.ndarray, np.ndarray, Score] | None:
    """One-shot magnitude pruning of the starting weights, when it scores better than ``beat``.

    With ``damping="auto"`` the last stage of CHITA++ compares its candidates
    with magnitude pruning of *its own* starting point; this compares the
    finished run (``beat``: the best held-out score it has, at the budget of its
    ``last`` stage) with magnitude pruning of the *original* weights (one forward
    pass), so a run whose earlier stages went wrong never ends below magnitude
    pruning on the held-out samples. The comparison is the one-shot choice's
    (:func:`~chita_opt.pruning.damping.magnitude_wins`): held-out error rates
    within :func:`~chita_opt.pruning.damping.min_error_spread` of each other
    count as tied and the loss decides. Returns ``(w, alive, score)`` of
    magnitude pruning when it wins (an equal score keeps the run), else None.
    """
    if ctx.evaluate is None:
        return None
    idx = np.flatnonzero(alive_start)
    w_mag, alive_mag, _ = _magnitude_stage(ctx, last.stage, last.sparsity, last.k, w_start,
                                           idx, True)
    mag = ctx.evaluate(w_mag)
    if (not all(math.isfinite(v) for v in mag.key()) or mag.key() == beat.key()
            or not magnitude_wins(beat.key(), mag.key(), min_error_spread(mag.n))):
        return None
    return w_mag, alive_mag, mag


# ----------------------------------------------------------- one problem
def _full_solver(
    ctx: StageContext, t: int, level: float, k: int, w: np.ndarray, alive: np.ndarray,
    idx: np.ndarray, G: np.ndarray, final: bool,
) -> Callable[[float, bool], _Candidate]:
    from ..solvers import solve

    # One validated problem per first-order setting, re-weighted per damping: the
    # candidates of a damping search share G's checks and column norms (each a
    # pass over the n x p gradients) instead of repeating them.
    bases: dict[bool, L0Problem] = {}

    def problem_at(damping: float, first_order: bool) -> L0Problem:
        base = bases.get(first_order)
        if base is None:
            base = L0Problem.from_gradients(
                G, w[idx], k=k, damping=0.0, first_order=first_order,
                first_order_scale=ctx.first_order_scale,
            )
            if ctx.groups is not None and final:
                base = base.replace(groups=ctx.groups[idx], group_k=ctx.group_cap)
            base.col_sq_norms  # noqa: B018 -- computed once, carried by with_l2
            bases[first_order] = base
        return base.with_l2(base.n * check_nonnegative(damping, "damping"))

    def solve_at(damping: float, first_order: bool) -> _Candidate:
        if math.isinf(damping):
            return _Candidate(*_magnitude_stage(ctx, t, level, k, w, idx, final))
        t1 = time.perf_counter()
        problem = problem_at(damping, first_order)
        options = _stage_options(ctx, problem, final)
        sol = solve(problem, method=ctx.method, **options)
        t2 = time.perf_counter()
        check_status(sol.status, sol.message, ctx.method, t)
        w_new = np.zeros_like(w)
        w_new[idx] = sol.w
        keep = _keep(ctx, sol.w, w[idx], k, idx, final)
        _keep_filled_values(ctx, w_new, w, idx, keep, final)
        alive_new = np.zeros_like(alive)
        alive_new[idx[keep]] = True
        record = StageRecord(
            stage=t, sparsity=level, k=k, n_alive=idx.size, n_rows=problem.n,
            objective=float(sol.objective), solve_time=t2 - t1, status=sol.status,
            message=sol.message, damping=damping,
        )
        return _Candidate(w_new, alive_new, record)

    return solve_at


# Intermediate stages with k > _WIDE_FACTOR * n skip chita's swap search.
_WIDE_FACTOR = 3


def _stage_options(ctx: StageContext, problem: L0Problem, final: bool) -> dict[str, Any]:
    """Solver options of one stage: the user's, plus no swap search in wide intermediate stages.

    With several times more kept weights than gradient rows (k > 3n) each
    swap costs O(n k) and, on MLPNet, buys nothing: skipping them in every
    stage but the last left the accuracy at 0.9 unchanged (94.2% test, three
    draws) and saved 45% of the time. Closer to k = n they matter (skipping
    them for every k > n cost 3 points at 0.98), so they stay there. An
    explicit ``max_swaps`` wins. See docs/benchmarks_mlpnet.md.
    """
    options = dict(ctx.solver_options)
    if ctx.wide_skip_swaps and not final and problem.k > _WIDE_FACTOR * problem.n:
        options.setdefault("max_swaps", 0)
    return options


# ------------------------------------------------------------------ blocks
def _block_solver(
    ctx: StageContext, t: int, level: float, k: int, w: np.ndarray, alive: np.ndarray,
    idx: np.ndarray, final: bool,
) -> tuple[Callable[[float, bool], _Candidate], Callable[[], float]]:
    """Solve the stage block by block; gradients are requested per group of blocks.

    Returns the solver and the Fisher scale of the stage (from the first
    group's gradients: one more gradient pass when the damping is chosen).
    """
    assert ctx.blocks is not None
    # Blocks in the coordinate space of the alive weights: a block [a, b) of w
    # becomes the alive positions inside it, still contiguous in idx.
    bounds = np.searchsorted(idx, np.array(ctx.blocks, dtype=np.int64).reshape(-1)).reshape(-1, 2)
    local = [(int(a), int(b)) for a, b in bounds if b > a]
    scores = np.abs(w[idx]) if ctx.ranking is None else ctx.ranking[idx]
    capped = ctx.groups is not None and final
    if capped:  # N:M: blocks hold whole groups (see _checks.align_blocks); caps per block
        g_alive, cap = ctx.groups[idx], int(ctx.group_cap or 0)
        chosen = np.zeros(idx.size, dtype=np.int64)
        chosen[top_per_group(scores, g_alive, cap, k)] = 1
        budgets = np.array([int(chosen[a:b].sum()) for a, b in local], dtype=np.int64)
    else:
        budgets = block_budgets(scores, local, k)
    groups = group_blocks(local, ctx.max_columns)
    w_alive = w[idx]

    def scale_of() -> float:
        lo, hi = local[groups[0][0]][0], local[groups[0][-1]][1]
        columns = np.zeros_like(alive)
        columns[idx[lo:hi]] = True
        return fisher_scale(_call_gradient_fn(ctx.gradient_fn, w, columns, hi - lo, t))

    def solve_at(damping: float, first_order: bool) -> _Candidate:
        if math.isinf(damping):
            return _Candidate(*_magnitude_stage(ctx, t, level, k, w, idx, final))
        method = ctx.method
        fields = dict(damping=damping, first_order=first_order,
                      first_order_scale=ctx.first_order_scale, method=method,
                      options=ctx.solver_options)
        results: list[BlockResult] = []
        grad_time = solve_time = 0.0
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
                tasks = iter_block_tasks(G, w_alive, [local[i] for i in group],
                                         [int(budgets[i]) for i in group], offset=lo,
                                         groups=g_alive if capped else None,
                                         group_k=cap if capped else None, **fields)
                # Solve this group's blocks before the next gradient call may reuse G's buffer.
                part = solve_blocks(tasks, executor=ctx.executor, total=len(group),
                                    progress=False)
                for _ in part:
                    bar.update(1)
                results.extend(part)
                del G
                grad_time += t1 - t0
                solve_time += time.perf_counter() - t1
        finally:
            bar.close()
        for res in results:
            check_status(res.status, res.message, method, t, block=(res.start, res.stop))
        w_sol = np.zeros(idx.size)
        keep = np.zeros(idx.size, dtype=bool)
        for res, kb in zip(results, budgets, strict=True):
            a, b = res.start, res.stop
            w_sol[a:b] = res.w
            if capped:  # the support, padded inside the caps
                block_scores = np.where(res.w != 0, np.inf, np.abs(w_alive[a:b]))
                keep[a + top_per_group(block_scores, g_alive[a:b], cap, int(kb))] = True
            else:
                keep[a:b] = mask_of_k(res.w, w_alive[a:b], int(kb))
        if ctx.groups is not None and not final:
            keep = fill_groups(keep, np.abs(w_alive), ctx.groups[idx], int(ctx.group_cap or 0))
        w_new = np.zeros_like(w)
        w_new[idx] = w_sol
        _keep_filled_values(ctx, w_new, w, idx, keep, final)
        alive_new = np.zeros_like(alive)
        alive_new[idx[keep]] = True
        record = StageRecord(
            stage=t, sparsity=level, k=k, n_alive=idx.size, n_rows=n_rows,
            objective=float(sum(r.objective for r in results)), objective_kind="block-sum",
            gradient_time=grad_time, solve_time=solve_time,
            status=Status.worst(r.status for r in results), n_blocks=len(results),
            message=f"{len(results)} blocks in {len(groups)} gradient pass(es)", damping=damping,
        )
        return _Candidate(w_new, alive_new, record)

    return solve_at, scale_of


def group_blocks(blocks: list[tuple[int, int]], max_columns: int | None) -> list[list[int]]:
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


# --------------------------------------------------------------- magnitude
def _magnitude_stage(
    ctx: StageContext, t: int, level: float, k: int, w: np.ndarray, idx: np.ndarray,
    final: bool,
) -> tuple[np.ndarray, np.ndarray, StageRecord]:
    from ..solvers._common import top_k

    t0 = time.perf_counter()
    scores = np.abs(w[idx])
    if ctx.groups is not None and final:
        kept = top_per_group(scores, ctx.groups[idx], int(ctx.group_cap or 0), k)
    else:
        kept = top_k(scores, k)
    w_new = np.zeros_like(w)
    w_new[idx[kept]] = w[idx[kept]]
    chosen = np.zeros(idx.size, dtype=bool)
    chosen[kept] = True
    if ctx.groups is not None and not final:
        chosen = fill_groups(chosen, scores, ctx.groups[idx], int(ctx.group_cap or 0))
        _keep_filled_values(ctx, w_new, w, idx, chosen, final)
    alive_new = np.zeros(w.size, dtype=bool)
    alive_new[idx[chosen]] = True
    record = StageRecord(
        t, level, k, idx.size, objective=None, objective_kind="none",
        solve_time=time.perf_counter() - t0, message=f"kept the {k} largest |w|",
    )
    return w_new, alive_new, record


# ----------------------------------------------------------------- helpers
def _keep(
    ctx: StageContext, w_sol: np.ndarray, w_prev: np.ndarray, k: int, idx: np.ndarray,
    final: bool,
) -> np.ndarray:
    """The alive mask after a stage (on the alive coordinates ``idx``)."""
    if ctx.groups is None:
        return mask_of_k(w_sol, w_prev, k)
    groups, cap = ctx.groups[idx], int(ctx.group_cap or 0)
    if final:  # exactly the caps: the solution's support, padded inside the caps
        scores = np.where(w_sol != 0, np.inf, np.abs(w_prev))
        keep = np.zeros(idx.size, dtype=bool)
        keep[top_per_group(scores, groups, cap, k)] = True
        return keep
    # Earlier stages are unstructured, but every group keeps cap weights alive
    # so that the last stage can fill it.
    return fill_groups(mask_of_k(w_sol, w_prev, k), np.abs(w_prev), groups, cap)


def _keep_filled_values(
    ctx: StageContext, w_new: np.ndarray, w: np.ndarray, idx: np.ndarray, keep: np.ndarray,
    final: bool,
) -> None:
    """Before the last N:M stage, weights kept alive only to fill a group keep their values.

    Zeroing them would leave the last stage a group whose kept weights start
    at zero (and, where magnitude pruning wins the damping search, stay
    there); their values cost a few extra non-zeros in intermediate stages only.
    """
    if ctx.groups is None or final:
        return
    filled = idx[keep & (w_new[idx] == 0)]
    w_new[filled] = w[filled]


def mask_of_k(w_sol: np.ndarray, w_prev: np.ndarray, k: int) -> np.ndarray:
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


def check_status(status: str, message: str, method: str, t: int, block: Any = None) -> None:
    """Raise on a solver status whose weights must not be used."""
    if Status(status).is_failure:
        where = f"stage {t}" + (f", block {block}" if block is not None else "")
        hint = " (try a larger damping)" if status == "unbounded" else ""
        raise RuntimeError(
            f"{where}: method {method!r} returned status {status!r}: {message}{hint}"
        )
