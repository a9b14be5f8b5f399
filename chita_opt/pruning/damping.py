"""Scale-aware automatic choice of the damping (framework-neutral).

The rule, as measured on a zoo of 8 digit classifiers x 3 sparsities
(``benchmarks/model_zoo.py``; tables, commands and what failed in
docs/benchmarks_zoo.md):

1. Read the pruning samples as usual; hold out :data:`HELD_OUT_FRACTION`
   (20%) of them (:func:`split_held_out`): they give no gradient rows.
2. Compute the gradient matrix ``G`` (n x p) on the rest, and the Fisher's own
   scale ``lambda_0 = mean diag(G^T G / n) = ||G||_F^2 / (n p)``
   (:func:`fisher_scale`; only the alive columns).
3. Candidates ``lambda_0 * 10^{0, -5}`` (:func:`damping_grid` defaults:
   :data:`N_POINTS` = 2 over :data:`DECADES` = 5 decades below :data:`TOP` =
   0), plus ``math.inf`` -- infinite damping, i.e. magnitude pruning, which
   costs one forward pass and keeps the choice from ever being worse than
   magnitude pruning on the held-out samples.
4. Solve every candidate with the full solver (a cheaper solver for the
   candidates ranked them wrongly at high sparsity; docs/benchmarks_zoo.md),
   each from the method's own starting point: warm starts from the neighbouring
   candidate (``choose_damping(warm_start=True)``, how the zoo's low-level rule
   ran) reached lower objectives but were 1.6x slower over the zoo's 24 one-shot
   rows, for the same validation accuracy (83.26% warm, 83.14% cold).
5. Keep the candidate with the lowest held-out score
   (:func:`choose_damping`); for classifiers score by
   ``(held-out error rate, held-out mean loss)``: the error decides, the loss
   breaks ties (the loss alone chose badly on networks the pruning breaks) --
   except between the best finite candidate and magnitude pruning, whose errors
   within :func:`min_error_spread` of each other count as tied
   (``choose_damping(magnitude_tie=...)``): a few held-out samples' worth of
   error is noise, and on networks left near chance level it sent the choice
   either way.
6. Refine: :data:`REFINE_STEPS` = 2 bisection steps toward the better
   neighbour of the best (``choose_damping(refine=2)``: 2.5, then 1.25
   decades), only where the grid's held-out errors differ by at least
   :data:`REFINE_MIN_ERROR_SPREAD` (fewer on large held-out sets:
   :func:`min_error_spread`, :func:`errors_differ`) and not when the smallest
   damping wins. The optimum moved over ten decades across the zoo;
   a coarse grid alone missed it by up to two decades (on an unseen MLP at 0.8:
   89.6% where one decade closer gave 94.7%). When the best's two neighbours
   score errors within that noise bar of each other, the held-out samples
   cannot tell which side the optimum is on: the two steps then probe one
   midpoint on each side instead (``choose_damping(neighbour_tie=...)``; a
   held-out GroupNorm CNN at 0.9 went from 74.3% to 78.7% over three draws,
   and no validation row changed).

CHITA++ (``stages > 1``): every stage before the last uses
``STAGE_DAMPING * lambda_0`` of its own gradients (:data:`STAGE_DAMPING` =
1e-2, no search); the last stage searches as above, and the first stage also
solves the whole run's one-shot problem with this search, which the finished run
must beat on the held-out samples, as must magnitude pruning of the original
weights -- compared as in step 5, :func:`magnitude_wins` (else the one-shot weights
are returned: ``chita_opt.pruning.multistage``). Searching at an early
stage does not work: the network is still near dense, every candidate scores
the same on the held-out samples, and the tie went to the largest candidate --
magnitude pruning -- which, reused for the following stages, left the paper's
MLPNet at 31% and a BatchNorm CNN at 74% (93% with a finite damping).
:data:`STAGE_DAMPING` was chosen on validation digits over the zoo's eight
models, three draws each (docs/benchmarks_zoo.md, "STAGE_DAMPING again").

Measured (one-shot, ``prune()`` at its defaults, ``benchmarks/zoo_defaults.py``;
docs/benchmarks_zoo.md, "In the package"): chosen on the zoo's validation digits
(24 rows; mean 85.40% against 84.38% for the previous grid ``10^{+1,-3,-7}``
without refinement); on its test digits mean 85.76% against 79.50% for
magnitude pruning, never below it, within the issue's tolerance of the
hindsight damping in 19 of 24 rows; on 8 models no setting was chosen on
(``--holdout``) 87.81% against 81.66%, never below magnitude pruning, within
the tolerance in 21 of 24 rows; a median 2.1x (max 3.9x) the CPU time of a
prune at the damping it chose. The held-out fraction (10 / 20 / 30%) made no
difference beyond noise; the first-order term never helped with this choice.

Why relative to ``lambda_0``: the package's ``damping`` is added to the
empirical Fisher ``G^T G / n`` (``l2 = n * damping`` in
:meth:`~chita_opt.L0Problem.from_gradients`), so a fixed absolute value means
a different amount of regularisation on every model: ``lambda_0`` ranged from
8.8e-9 (MLPs trained to convergence) to 5.4e-3 (the paper's MLPNet) across
the zoo. A fixed damping of 1e-3 is ``1e5 lambda_0`` on the former (CHITA
then returns magnitude pruning) and ``0.2 lambda_0`` on the latter. The best
damping itself ranged over ``10^{+1} .. 10^{-8} lambda_0``, so no single
relative value works either: the grid is needed.

This module knows nothing about the framework: ``prune_at`` and ``evaluate``
are callables. For CHITA++ call it once per stage with that stage's ``G``.
With the low-level API (as ``benchmarks/model_zoo.py`` does)::

    fit, held = split_held_out(n_read)
    G, w_bar, _ = gradient_matrix(model, loss_fn, (X[fit], y[fit]), n_samples=fit.size)

    def prune_at(damping, w0):
        if math.isinf(damping):                       # magnitude pruning
            return magnitude_prune(w_bar, k)
        problem = L0Problem.from_gradients(G, w_bar, k=k, damping=damping)
        return solve(problem, method="chita", w0=w0).w

    def held_out_score(w):                            # forward passes only
        loss, accuracy = evaluate_network(w, X[held], y[held])
        return (1.0 - accuracy, loss)

    choice = choose_damping([*damping_grid(G), math.inf], prune_at, held_out_score)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._warnings import warn

__all__ = [
    "DECADES",
    "HELD_OUT_FRACTION",
    "N_POINTS",
    "REFINE_MIN_ERROR_SAMPLES",
    "REFINE_MIN_ERROR_SPREAD",
    "REFINE_STEPS",
    "STAGE_DAMPING",
    "TOP",
    "DampingChoice",
    "Score",
    "choose_damping",
    "damping_grid",
    "errors_differ",
    "fisher_scale",
    "magnitude_wins",
    "min_error_spread",
    "split_held_out",
]

logger = logging.getLogger(__name__)

#: Points of the default grid (:data:`DECADES` decades apart; the refinement fills in).
N_POINTS = 2
#: Decades spanned by the default grid, below :data:`TOP`.
DECADES = 5.0
#: Largest damping of the default grid, as ``log10(damping / lambda_0)``.
TOP = 0.0
#: Bisection steps after the grid (``choose_damping(refine=...)``): the grid's
#: five-decade gap becomes 1.25 decades around the choice (docs/benchmarks_zoo.md).
REFINE_STEPS = 2
#: Refine only when the grid's held-out error rates span at least this much
#: (2 points: 4 of 200 held-out samples): closer than that, the held-out
#: samples cannot rank the midpoints either, and the steps would cost for nothing.
REFINE_MIN_ERROR_SPREAD = 0.02
#: ... or, on larger held-out sets, this many samples' worth of error (the
#: spread is ``min(REFINE_MIN_ERROR_SPREAD, REFINE_MIN_ERROR_SAMPLES / n)``):
#: the same 2 points at the zoo's 200-250 held-out samples where it was
#: measured, a finer difference where more samples make it significant
#: (not measured: the zoo holds out at most 250).
REFINE_MIN_ERROR_SAMPLES = 5
#: Fraction of the gradient samples held out to score the candidates.
HELD_OUT_FRACTION = 0.2
#: ``damping="auto"`` in the stages before the last of CHITA++: this share of
#: each stage's Fisher scale ``lambda_0`` (chosen on validation digits: the zoo's
#: eight models, three draws each, from 1e-1 .. 1e-3; 1e-3 until 2026-12-07 night,
#: chosen then on six models and one draw; docs/benchmarks_zoo.md).
STAGE_DAMPING = 1e-2


@dataclass(frozen=True)
class Score:
    """What an adapter measures on held-out samples: the mean loss and, when it
    can tell (class-index targets), the classification error.

    :meth:`key` is what :func:`choose_damping` compares: ``(error, loss)``, or
    ``(loss,)`` without an error. ``n`` is the number of held-out samples
    scored, when known (it sets the refinement's threshold, :func:`min_error_spread`).
    """

    loss: float
    error: float | None = None
    n: int | None = None

    def key(self) -> tuple[float, ...]:
        return (self.loss,) if self.error is None else (self.error, self.loss)


def fisher_scale(G: Any = None, *, col_sq_norms: Any = None, n: int | None = None) -> float:
    """``lambda_0``: mean diagonal of the empirical Fisher ``G^T G / n``.

    Pass either the gradient matrix ``G`` (n x p), or ``col_sq_norms`` (the
    squared column norms ``sum_i G_ij^2``, length p) together with ``n``.
    Only alive columns should be passed (a pruned weight's column is not part
    of the problem).
    """
    if (G is None) == (col_sq_norms is None):
        raise TypeError("fisher_scale: expected exactly one of G or col_sq_norms")
    if G is not None:
        G = np.asarray(G)
        if G.ndim != 2 or G.shape[0] == 0 or G.shape[1] == 0:
            raise ValueError(f"G: expected a non-empty 2-D gradient matrix, got shape {G.shape}")
        n_rows = G.shape[0]
        # float64 accumulation, 256 rows at a time (no float64 copy of a large G)
        total = sum(float(np.square(G[i : i + 256], dtype=np.float64).sum())
                    for i in range(0, n_rows, 256))
        p = G.shape[1]
    else:
        sq = np.asarray(col_sq_norms, dtype=np.float64)
        if sq.ndim != 1 or sq.size == 0:
            raise ValueError(
                f"col_sq_norms: expected a non-empty 1-D array, got shape {sq.shape}"
            )
        if n is None or int(n) < 1:
            raise ValueError(f"n: expected the number of gradient rows (>= 1), got {n!r}")
        if np.any(sq < 0):
            raise ValueError("col_sq_norms: expected non-negative squared norms")
        n_rows, p, total = int(n), sq.size, float(sq.sum())
    if not math.isfinite(total):
        raise ValueError("G: expected finite gradients, got NaN/Inf")
    return total / (n_rows * p)


def damping_grid(
    G: Any = None,
    *,
    col_sq_norms: Any = None,
    n: int | None = None,
    scale: float | None = None,
    n_points: int = N_POINTS,
    decades: float = DECADES,
    top: float = TOP,
    floor: float = 1e-12,
) -> np.ndarray:
    """Scale-aware candidate dampings, largest first.

    ``lambda_0 * 10 ** linspace(top, top - decades, n_points)`` with
    ``lambda_0 = fisher_scale(...)`` (the mean diagonal of ``G^T G / n``), or
    ``lambda_0 = scale`` when given.
    The defaults (2 points, ``lambda_0 * 10^{0, -5}``, which ``choose_damping``'s
    refinement then bisects) are the ones measured in docs/benchmarks_zoo.md
    (chosen on validation digits; the grids compared are listed there).

    ``floor`` is used as ``lambda_0`` when the gradients are all zero (a model
    at an exact stationary point of every sample: any damping is as good).
    """
    n_points = int(n_points)
    if n_points < 1:
        raise ValueError(f"n_points: expected a positive integer, got {n_points}")
    decades = float(decades)
    if not (math.isfinite(decades) and decades >= 0):
        raise ValueError(f"decades: expected a non-negative number, got {decades}")
    if n_points > 1 and decades == 0:
        raise ValueError("decades: expected > 0 with more than one point")
    lam0 = scale if scale is not None else fisher_scale(G, col_sq_norms=col_sq_norms, n=n)
    if not lam0 > 0:
        lam0 = float(floor)
    exps = np.linspace(top, top - decades, n_points) if n_points > 1 else np.array([top])
    return lam0 * 10.0**exps


def split_held_out(
    n_read: int, fraction: float = HELD_OUT_FRACTION, *, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, held_out)`` of ``n_read`` samples; ``held_out`` has ``round(fraction n)``.

    ``seed=None`` takes the last samples as held out (no shuffling: use it
    when the samples are already in random order).
    """
    n_read = int(n_read)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction}")
    m = round(fraction * n_read)
    if m < 1 or m >= n_read:
        raise ValueError(
            f"fraction: {fraction} of {n_read} samples leaves no fit or no held-out sample"
        )
    order = np.arange(n_read) if seed is None else np.random.default_rng(seed).permutation(n_read)
    return np.sort(order[: n_read - m]), np.sort(order[n_read - m :])


@dataclass
class DampingChoice:
    """Outcome of :func:`choose_damping`.

    Attributes
    ----------
    damping : float
        The candidate chosen: the lowest (finite) held-out score, with the
        ties described in :func:`choose_damping`.
    w : Any
        What ``prune_at`` returned for it.
    losses : dict[float, float]
        Held-out loss of every candidate tried (NaN/Inf kept as they came).
    order : list[float]
        The candidates in the order they were solved (the grid from the
        largest damping down, then the refinement points).
    refined : list[float]
        The dampings added by the refinement (``refine`` of
        :func:`choose_damping`), in the order they were solved.
    """

    damping: float
    w: Any
    losses: dict[float, float] = field(default_factory=dict)
    order: list[float] = field(default_factory=list)
    refined: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        rows = "\n".join(
            f"  damping {d:<10.3g} held-out loss {self.losses[d]:.6g}"
            + ("  <- chosen" if d == self.damping else "")
            for d in self.order
        )
        return f"DampingChoice(damping={self.damping:g})\n{rows}"


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _as_score(raw: Any) -> tuple[float, ...] | None:
    """A float, or a tuple of floats compared lexicographically; None if not numeric."""
    try:
        if isinstance(raw, (tuple, list)):
            if not raw:
                return None
            return tuple(float(v) for v in raw)
        return (float(raw),)
    except (TypeError, ValueError):
        return None


def choose_damping(
    candidates: Sequence[float],
    prune_at: Callable[[float, Any], Any],
    evaluate: Callable[[Any], Any],
    *,
    warm_start: bool = True,
    on_nonfinite: str = "raise",
    refine: int = 0,
    refine_if: Callable[[list[tuple[float, ...]]], bool] | None = None,
    magnitude_tie: float | Callable[[], float] = 0.0,
    neighbour_tie: float | Callable[[], float] | None = None,
) -> DampingChoice:
    """Prune at each candidate damping and keep the one with the lowest held-out score.

    Parameters
    ----------
    candidates : sequence of float
        Dampings, solved in decreasing order (the largest damping is the
        easiest problem, closest to the dense weights; each solve then starts
        from its neighbour's solution). Use :func:`damping_grid`. ``math.inf``
        is allowed and stands for the limit of infinite damping, i.e.
        magnitude pruning (``prune_at`` must handle it; it needs no solve and
        makes the choice never worse than magnitude pruning on the held-out
        samples).
    prune_at : callable ``(damping, warm_start) -> w``
        Prunes at one damping; ``warm_start`` is the previous finite
        candidate's ``w`` (``None`` for the first one, or always when
        ``warm_start=False``).
    evaluate : callable ``w -> float`` or ``w -> tuple of float``
        Score of the pruned network on held-out samples (not used for the
        gradients), by forward passes; lower is better. A tuple is compared
        lexicographically: the measured recommendation for classifiers is
        ``(error_rate, mean_loss)`` -- the held-out error, ties broken by the
        loss (docs/benchmarks_zoo.md: the loss alone chose badly on broken
        networks whose loss is dominated by a few confident mistakes).
    warm_start : bool
        Pass the previous solution to ``prune_at``.
    on_nonfinite : {"raise", "skip"}
        What a NaN/Inf score does: ``"raise"`` (default) stops with a
        ``ValueError`` naming ``evaluate`` and the damping; ``"skip"`` records
        it, warns and never chooses it (a ``ValueError`` if every score is
        non-finite).
    refine : int
        Bisection steps after the grid (default 0: the grid only). Each step
        solves one more damping: the geometric midpoint between the best
        damping so far and the better-scoring of its two tried neighbours
        (with ``math.inf`` as the upper neighbour, the step mirrors the gap to
        the lower one; when ``math.inf`` is the best, between the two best
        finite ones). It stops early when the smallest candidate is the best,
        or a midpoint was tried already. When the best finite candidate's two
        neighbours are tied (``neighbour_tie``), the first two steps probe
        both sides instead. :data:`REFINE_STEPS` is the pipeline's choice.
    refine_if : callable or None
        Called with the finite scores (tuples) of the grid's finite
        candidates; refine only when it returns True (None: always). The
        pipeline uses :func:`errors_differ`.
    magnitude_tie : float or callable () -> float
        With ``(error, loss)`` scores and ``math.inf`` among the candidates:
        when the error rates of the best finite candidate and of magnitude
        pruning are within this much of each other, the lower loss decides
        between the two (default 0: the error alone). The pipeline passes
        :func:`min_error_spread` of the held-out size (a callable, as the size
        is known only once a candidate is scored): held-out errors a few
        samples apart are noise -- on networks the pruning leaves near chance
        level they sent the choice either way -- and magnitude pruning is the
        comparison a user makes (docs/benchmarks_zoo.md).
    neighbour_tie : float, callable () -> float, or None
        With ``(error, loss)`` scores and ``refine >= 2``: when the best
        damping after the grid has a tried neighbour on each side (``math.inf``
        counts as the upper one) and their error rates are within this much of
        each other, the held-out samples cannot tell on which side the optimum
        lies, so the first two refinement steps probe both: the midpoint toward
        the lower neighbour, then the one toward the upper neighbour (the
        mirrored step when it is ``math.inf``). Further steps bisect as usual.
        None (default): always one side, the better-scoring neighbour's. The
        pipeline passes :func:`min_error_spread` of the held-out size, as for
        ``magnitude_tie`` (docs/benchmarks_zoo.md, "Both sides when the
        neighbours tie").

    Ties go to the larger damping (the more conservative change).

    Returns
    -------
    DampingChoice
        ``losses`` holds the first element of each score (a float).
    """
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"on_nonfinite: expected 'raise' or 'skip', got {on_nonfinite!r}")
    if not callable(prune_at):
        raise TypeError(
            f"prune_at: expected a callable (damping, warm_start) -> w, got {prune_at!r}"
        )
    if not callable(evaluate):
        raise TypeError(f"evaluate: expected a callable w -> loss, got {evaluate!r}")
    grid = [float(d) for d in candidates]
    if not grid:
        raise ValueError("candidates: expected at least one damping, got an empty sequence")
    bad = [d for d in grid if math.isnan(d) or d < 0]
    if bad:
        raise ValueError(f"candidates: expected non-negative dampings (not NaN), got {bad}")
    refine = int(refine)
    if refine < 0:
        raise ValueError(f"refine: expected a non-negative number of steps, got {refine}")
    if not callable(magnitude_tie):
        _check_tie(magnitude_tie, "magnitude_tie")  # before any solve
    if neighbour_tie is not None and not callable(neighbour_tie):
        _check_tie(neighbour_tie, "neighbour_tie")
    order = sorted(set(grid), reverse=True)
    losses: dict[float, float] = {}
    scores: dict[float, tuple[float, ...]] = {}
    best_finite: tuple[float, tuple[float, ...], Any] | None = None
    magnitude: tuple[float, tuple[float, ...], Any] | None = None
    prev = None

    def try_one(d: float, start: Any) -> Any:
        nonlocal best_finite, magnitude
        w = prune_at(d, start if warm_start else None)
        raw = evaluate(w)
        score = _as_score(raw)
        if score is None:
            raise TypeError(
                f"evaluate ({_name(evaluate)}): expected a float loss (or a tuple of floats), "
                f"got {raw!r} for damping {d:g}"
            )
        losses[d] = score[0]
        logger.info("damping %g: held-out score %s", d, score)
        if not all(math.isfinite(v) for v in score):
            msg = (
                f"evaluate ({_name(evaluate)}) returned a non-finite held-out loss ({raw}) "
                f"for damping {d:g}"
            )
            if on_nonfinite == "raise":
                raise ValueError(
                    msg + "; check the loss function and the pruned weights, or pass "
                    "on_nonfinite='skip' to ignore this candidate"
                )
            warn(msg + "; candidate skipped", RuntimeWarning)
            return w
        scores[d] = score
        entry = (d, score, w)
        # kept apart: magnitude_tie compares the best finite candidate with magnitude pruning
        if math.isinf(d):
            magnitude = entry
        elif _beats(entry, best_finite):
            best_finite = entry
        return w

    def leader() -> tuple[float, tuple[float, ...], Any] | None:
        """The best scored so far by (error, loss); equal scores go to magnitude pruning."""
        if magnitude is not None and _beats(magnitude, best_finite):
            return magnitude
        return best_finite

    for d in order:
        w = try_one(d, prev)
        if math.isfinite(d):
            prev = w
    best = leader()
    if best is None:
        raise ValueError(
            f"evaluate ({_name(evaluate)}): every candidate gave a non-finite held-out loss: "
            f"{losses}"
        )
    refined: list[float] = []
    finite = [scores[d] for d in order if math.isfinite(d) and d in scores]
    if finite and (refine_if is None or refine_if(finite)):
        steps = refine
        if steps >= 2 and neighbour_tie is not None:
            pair = _both_sides(best[0], scores, _resolve_tie(neighbour_tie, "neighbour_tie"))
            for d in pair:
                if d not in losses:
                    refined.append(d)
                    try_one(d, best[2])
            if pair:
                steps -= 2
                best = leader()  # type: ignore[assignment]
        for _ in range(steps):
            d = _bisection_point(best[0], scores)
            if d is None or d in losses:
                break
            refined.append(d)
            try_one(d, best[2])
            best = leader()  # type: ignore[assignment]
    tie = _resolve_tie(magnitude_tie, "magnitude_tie")
    if best_finite is not None and magnitude is not None:
        best = magnitude if magnitude_wins(best_finite[1], magnitude[1], tie) else best_finite
    return DampingChoice(damping=best[0], w=best[2], losses=losses,
                         order=[*order, *refined], refined=refined)


def _beats(
    entry: tuple[float, tuple[float, ...], Any],
    incumbent: tuple[float, tuple[float, ...], Any] | None,
) -> bool:
    """Whether ``(damping, score, w)`` is better than ``incumbent``: a lower score;
    ties keep the larger damping (the more conservative change)."""
    if incumbent is None:
        return True
    (d, score, _), (d_old, score_old, _) = entry, incumbent
    return score < score_old or (score == score_old and d > d_old)


def _resolve_tie(value: float | Callable[[], float], name: str) -> float:
    return _check_tie(value() if callable(value) else value, name)


def _check_tie(value: Any, name: str) -> float:
    try:
        tie = float(value)
    except (TypeError, ValueError):
        tie = math.nan
    if not (math.isfinite(tie) and tie >= 0):
        raise ValueError(
            f"{name}: expected a non-negative error-rate difference (or a callable "
            f"returning one), got {value!r}"
        )
    return tie


def magnitude_wins(finite: Sequence[float], magnitude: Sequence[float], tie: float) -> bool:
    """Whether magnitude pruning's held-out score beats a finite damping's.

    Scores compare lexicographically (the error rate, then the loss), equal
    scores going to magnitude pruning (the larger damping) -- except that
    ``(error, loss)`` scores whose error rates are within ``tie`` of each
    other are decided by the loss (then the error): a few held-out samples'
    worth of error is noise (``magnitude_tie`` of :func:`choose_damping`; the
    CHITA++ guard, :func:`chita_opt.pruning.stages.magnitude_guard`, compares
    the finished run the same way).
    """
    mine, mag = tuple(finite), tuple(magnitude)
    if tie > 0 and len(mine) > 1 and len(mag) > 1 and abs(mine[0] - mag[0]) <= tie:
        return (mag[1:], mag[0]) <= (mine[1:], mine[0])
    return mag <= mine


def min_error_spread(n: int | None) -> float:
    """Error-rate spread the refinement needs on ``n`` held-out samples (None: unknown).

    ``min(REFINE_MIN_ERROR_SPREAD, REFINE_MIN_ERROR_SAMPLES / n)``.
    """
    if n is None or n <= 0:
        return REFINE_MIN_ERROR_SPREAD
    return min(REFINE_MIN_ERROR_SPREAD, REFINE_MIN_ERROR_SAMPLES / n)


def errors_differ(scores: list[tuple[float, ...]],
                  min_spread: float = REFINE_MIN_ERROR_SPREAD) -> bool:
    """``refine_if`` of the pipeline: the grid's held-out error rates (the first
    element of ``(error, loss)`` scores) span at least ``min_spread``
    (:func:`min_error_spread` of the held-out size).

    Loss-only scores (no error rate: regression, language models) always refine.
    """
    if any(len(sc) < 2 for sc in scores):
        return True
    errors = [sc[0] for sc in scores]
    return max(errors) - min(errors) >= min_spread


def _both_sides(best: float, scores: dict[float, tuple[float, ...]], tie: float) -> list[float]:
    """The two first refinement points when ``best``'s neighbours are tied (else ``[]``).

    ``best`` must be finite with a tried neighbour on each side (``math.inf``
    counts as the upper one), both scored ``(error, loss)`` with error rates
    within ``tie`` of each other. Returns the midpoint toward the lower
    neighbour and the one toward the upper neighbour -- half the lower gap
    mirrored upward when the upper neighbour is ``math.inf``.
    """
    if math.isinf(best) or best == 0:
        return []
    lower, upper = _neighbours(best, scores)
    if lower is None or upper is None:
        return []
    (s_low, s_up) = scores[lower], scores[upper]
    if len(s_low) < 2 or len(s_up) < 2 or abs(s_low[0] - s_up[0]) > tie:
        return []
    lb = math.log10(best)
    return [_step_toward(lb, lower, lower), _step_toward(lb, upper, lower)]


def _neighbours(best: float, scores: dict[float, tuple[float, ...]]
                ) -> tuple[float | None, float | None]:
    """The tried dampings just below and above ``best`` (None where there is none)."""
    tried = sorted(d for d in scores if d > 0)
    i = tried.index(best)
    return (tried[i - 1] if i > 0 else None, tried[i + 1] if i + 1 < len(tried) else None)


def _step_toward(lb: float, toward: float, lower: float) -> float:
    """Half-way (in decades) from ``10**lb`` to ``toward``; toward ``math.inf``, half
    the gap to ``lower`` mirrored upward (there is no midpoint with infinity)."""
    if math.isinf(toward):
        return 10.0 ** (lb + (lb - math.log10(lower)) / 2)
    return 10.0 ** ((lb + math.log10(toward)) / 2)


def _bisection_point(best: float, scores: dict[float, tuple[float, ...]]) -> float | None:
    """The next damping of the refinement (see ``refine`` of :func:`choose_damping`).

    The geometric midpoint between ``best`` and the better-scoring of its tried
    neighbours (finite-scored candidates only). Next to ``math.inf`` (magnitude
    pruning) the step mirrors half the gap to the lower neighbour upward when
    magnitude pruning scored better than that neighbour; at the top of a grid
    without ``math.inf`` it goes up by half the gap. When ``math.inf`` itself is
    the best, the step bisects between the best finite damping and its better
    finite neighbour. None when there is nothing to bisect, or when the
    smallest damping is the best.
    """
    if best == 0:
        return None
    if math.isinf(best):
        # magnitude pruning won: bisect between the best finite damping and its
        # better finite neighbour -- a coarse grid can step over a damping that
        # beats magnitude pruning (no mirroring: the way up leads to magnitude)
        finite = sorted(d for d in scores if 0 < d < math.inf)
        if len(finite) < 2:
            return None
        anchor = min(finite, key=lambda d: (scores[d], -d))
        i = finite.index(anchor)
        near = [finite[j] for j in (i - 1, i + 1) if 0 <= j < len(finite)]
        toward = min(near, key=lambda d: (scores[d], -d))
        return 10.0 ** ((math.log10(anchor) + math.log10(toward)) / 2)
    lower, upper = _neighbours(best, scores)
    if lower is None:
        # the smallest damping is the best (or the only one): smaller ones solve a
        # nearly undamped problem again, slower, for the same networks on the zoo's rows
        return None
    lb = math.log10(best)
    if upper is None:  # the largest (no magnitude candidate): look further up
        return _step_toward(lb, math.inf, lower)
    if math.isinf(upper) and not scores[upper] < scores[lower]:
        # next to magnitude pruning, which scored no better than the lower
        # neighbour: half the gap down (as lb - gap / 2, the form measured)
        return 10.0 ** (lb - (lb - math.log10(lower)) / 2)
    toward = upper if scores[upper] < scores[lower] else lower
    return _step_toward(lb, toward, lower)
