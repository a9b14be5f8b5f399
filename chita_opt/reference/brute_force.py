"""Exact solution by enumerating every support (tiny ``p`` only).

Any ``w`` with ``||w||_0 <= k`` is supported inside some set of exactly
``k`` coordinates, and on a fixed support ``S`` the problem is a convex
quadratic, so

    min_{||w||_0 <= k} f(w) = min_{|S| = k} min_{w_S} f(w)

and only the ``C(p, k)`` supports of size exactly ``k`` are enumerated. On a
support, with ``H = A^T A + l2 I``, ``b = A^T y + l2 w_bar - c`` and
``K = 1/2 ||y||^2 + (l2/2) ||w_bar||^2``,

    min_{w_S} f = K - 1/2 b_S^T H_SS^{-1} b_S,

computed for a whole batch of supports at once (batched Cholesky). When a
batch holds an (almost) singular ``H_SS`` (``l2 = 0`` with collinear or
duplicated columns, or ``k > n``) it is redone with an eigendecomposition and
the minimum-norm minimiser, exactly as :func:`~chita_opt.solvers._refit.refit`
does; ``b_S`` outside the range of ``H_SS`` means f is unbounded below. The
best few supports are finally refit one by one and the exact objective decides.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import check_positive_int
from ..problem import L0Problem
from ..result import Solution
from ..solvers import register
from ..solvers import solve as _solve
from ..solvers._common import Stopwatch, make_solution
from ..solvers._refit import refit
from ._scaling import rescale

__all__ = ["brute_force", "estimated_seconds", "solve_brute_force"]

logger = logging.getLogger(__name__)

#: Supports per batch (bounds the memory of the gathered (m, k, k) blocks).
_BATCH_ELEMENTS = 2_000_000
#: Enumeration budget: refuse when the estimated time exceeds this.
_MAX_SECONDS = 60.0
#: Cost model (seconds per support of size k): a + b k^2. Measured about
#: 0.6 us + 0.012 us k^2 per support on the shared 2-core development machine
#: (k = 3..15); doubled here so the refusal errs on the safe side.
_COST_A = 1.2e-6
_COST_B = 2.5e-8
#: Candidates refit exactly at the end (guards against rounding in the batch values).
_N_FINALISTS = 8
#: Relative eigenvalue threshold of the minimum-norm solve (the same as refit's).
_EIG_RTOL = 1e-12


def estimated_seconds(p: int, k: int) -> float:
    """Rough wall-clock estimate of :func:`brute_force` for ``C(p, k)`` supports (may be inf)."""
    count = math.comb(p, k)
    # C(5000, 2500) has 1500 digits: beyond float, so the estimate is inf, not an OverflowError.
    if count.bit_length() > 1000:
        return math.inf
    return count * (_COST_A + _COST_B * k * k)


def _count_text(count: int) -> str:
    """``1,234`` for countable numbers, ``about 1.2e+1503`` for astronomic ones."""
    if count < 10**15:
        return f"{count:,}"
    digits = len(str(count))
    return f"about {int(str(count)[:2]) / 10:.1f}e+{digits - 1}"


def brute_force(
    A: Any,
    y: Any = None,
    k: int | None = None,
    *,
    l2: float = 0.0,
    w_bar: Any = None,
    c: Any = None,
    groups: Any = None,
    group_k: Any = None,
    max_supports: int | None = None,
) -> Solution:
    """Exact minimiser of f over ``||w||_0 <= k`` by enumerating all supports.

    Parameters
    ----------
    A, y, k, l2, w_bar, c, groups, group_k
        The problem data, or an :class:`~chita_opt.L0Problem` as ``A`` (as in
        :func:`chita_opt.solve`). With group caps only the feasible supports
        are evaluated (all ``C(p, k)`` are still generated and filtered).
    max_supports : int, optional
        Refuse to enumerate more than this many supports. By default the
        limit is what takes about a minute on a small machine.

    Returns
    -------
    Solution
        Status "optimal" with ``lower_bound = objective`` and ``gap = 0``, or
        "unbounded" when f is unbounded below (``l2 = 0`` and ``c`` has a
        component outside the row space of some ``A_S``).

        Ill-scaled data (column norms far from 1 or spread apart) is solved
        in unit scale and mapped back: ``w``, objective and bound are in the
        caller's units and the message says so.

    Raises
    ------
    ValueError
        When ``C(p, k)`` is too large, suggesting :func:`solve_mip`, or when
        the data's scales do not fit in float64 even after rescaling.
    """
    return _solve(A, y, k, l2=l2, w_bar=w_bar, c=c, groups=groups, group_k=group_k,
                  method="brute_force", max_supports=max_supports)


def _too_large_message(p: int, k: int, count: int, limit: int | None) -> str:
    est = estimated_seconds(p, k)
    est_text = f"{est:,.0f} s" if math.isfinite(est) else "more seconds than a float holds"
    what = f"max_supports={limit}" if limit is not None else f"about {_MAX_SECONDS:.0f} s"
    return (
        f"k: brute force would enumerate C({p}, {k}) = {_count_text(count)} supports (estimated "
        f"{est_text}), more than the limit ({what}); use chita_opt.reference.solve_mip "
        "(method='mip') for problems of this size"
    )


@register("brute_force")
def solve_brute_force(problem: L0Problem, *, max_supports: int | None = None) -> Solution:
    """Registered solver behind :func:`brute_force` (``solve(..., method="brute_force")``)."""
    clock = Stopwatch()
    p, k = problem.p, problem.k
    limit = check_positive_int(max_supports, "max_supports", allow_none=True)
    count = math.comb(p, k)
    if (limit is not None and count > limit) or (
        limit is None and estimated_seconds(p, k) > _MAX_SECONDS
    ):
        raise ValueError(_too_large_message(p, k, count, limit))
    if k == 0:
        return _finish(
            problem, np.zeros(p), clock, count, "k = 0: w = 0 is the only feasible point"
        )
    # Ill-scaled data is solved in unit scale and mapped back (see _scaling):
    # the rank and unboundedness thresholds below are relative to O(1).
    scaling = rescale(problem)
    if scaling is None:
        return _enumerate_and_refit(problem, clock, count)
    inner = _enumerate_and_refit(scaling.problem, clock, count)
    return scaling.unscale(problem, inner, clock)


def _enumerate_and_refit(problem: L0Problem, clock: Stopwatch, count: int) -> Solution:
    p, k = problem.p, problem.k
    logger.debug("brute_force: enumerating %d supports of size %d", count, k)
    H = _gram(problem)
    b = _linear_term(problem)
    if problem.group_caps is not None:
        return _solve_capped(problem, H, b, clock, count)
    values, unbounded_support = _enumerate(H, b, p, k, ridge=problem.l2 > 0)
    if unbounded_support is not None:
        fit = refit(problem, unbounded_support)
        return make_solution(
            problem,
            fit.w,
            method="brute_force",
            status="unbounded",
            stopwatch=clock,
            n_iter=count,
            message=(
                f"f is unbounded below: on support {unbounded_support.tolist()} the linear "
                "term has a component in the null space of A_S (l2 = 0); w is the "
                "minimum-norm stationary point there"
            ),
        )
    best_w, best_f = None, np.inf
    for support in _finalists(values, p, k):
        fit = refit(problem, support)
        f = problem.objective(fit.w)
        if f < best_f:
            best_w, best_f = fit.w, f
    assert best_w is not None
    return _finish(problem, best_w, clock, count, f"enumerated all {count:,} supports of size {k}")


def _solve_capped(
    problem: L0Problem, H: np.ndarray, b: np.ndarray, clock: Stopwatch, count: int
) -> Solution:
    """Enumeration over the supports of size k within the group caps.

    Every feasible support extends to a feasible one of exactly ``k`` (``k`` is
    clipped to the sum of the caps: the rank of the truncated partition matroid),
    so those are the only ones evaluated. The best few of each batch are kept.
    """
    caps, p, k = problem.group_caps, problem.p, problem.k
    best_supports, best_gains, n_feasible = [], [], 0
    for idx in _batches(p, k):
        counts = np.zeros((idx.shape[0], caps.n_groups), dtype=np.int64)
        np.add.at(counts, (np.arange(idx.shape[0])[:, None], caps.labels[idx]), 1)
        idx = idx[np.all(counts <= caps.cap, axis=1)]
        if idx.size == 0:
            continue
        n_feasible += idx.shape[0]
        gain, unbounded = _batch_gain(H[idx[:, :, None], idx[:, None, :]], b[idx],
                                      problem.l2 > 0)
        if unbounded is not None:
            fit = refit(problem, idx[unbounded])
            return make_solution(
                problem, fit.w, method="brute_force", status="unbounded", stopwatch=clock,
                n_iter=count, message=(
                    f"f is unbounded below: on support {idx[unbounded].tolist()} the linear "
                    "term has a component in the null space of A_S (l2 = 0)"),
            )
        top = np.argsort(-gain, kind="stable")[:_N_FINALISTS]
        best_supports.append(idx[top])
        best_gains.append(gain[top])
    gains = np.concatenate(best_gains)
    supports = np.concatenate(best_supports)
    best_w, best_f = None, np.inf
    for r in np.argsort(-gains, kind="stable")[:_N_FINALISTS]:
        fit = refit(problem, supports[r])
        f = problem.objective(fit.w)
        if f < best_f:
            best_w, best_f = fit.w, f
    assert best_w is not None
    return _finish(problem, best_w, clock, n_feasible,
                   f"enumerated all {n_feasible:,} supports of size {k} within the group caps")


def _finish(
    problem: L0Problem, w: np.ndarray, clock: Stopwatch, count: int, message: str
) -> Solution:
    sol = make_solution(
        problem,
        w,
        method="brute_force",
        status="optimal",
        message=message,
        n_iter=count,
        stopwatch=clock,
        n_supports=count,
    )
    # Enumeration is its own certificate: the bound equals the objective.
    return replace(sol, lower_bound=sol.objective, gap=0.0)


def _gram(problem: L0Problem) -> np.ndarray:
    A = np.asarray(problem.A, dtype=np.float64)
    H = A.T @ A
    if problem.l2:
        H[np.diag_indices_from(H)] += problem.l2
    return H


def _linear_term(problem: L0Problem) -> np.ndarray:
    b = np.asarray(problem.A, dtype=np.float64).T @ problem.y
    if problem.l2:
        b += problem.l2 * problem.w_bar
    if problem.has_c:
        b -= problem.c
    return b


def _batches(p: int, k: int):
    size = max(1, _BATCH_ELEMENTS // (k * k))
    combos = itertools.combinations(range(p), k)
    while True:
        chunk = list(itertools.islice(combos, size))
        if not chunk:
            return
        yield np.array(chunk, dtype=np.int64)


def _enumerate(
    H: np.ndarray, b: np.ndarray, p: int, k: int, *, ridge: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``b_S^T H_SS^+ b_S`` for every support in lexicographic order (larger is better).

    Returns the gains and, if some support makes f unbounded below, that support.
    With a ridge (``l2 > 0``) every ``H_SS`` is positive definite and f is bounded.
    """
    gains = []
    for idx in _batches(p, k):
        Hs = H[idx[:, :, None], idx[:, None, :]]
        bs = b[idx]
        gain, unbounded = _batch_gain(Hs, bs, ridge)
        if unbounded is not None:
            return np.empty(0), idx[unbounded]
        gains.append(gain)
    return np.concatenate(gains), None


def _batch_gain(Hs: np.ndarray, bs: np.ndarray, ridge: bool) -> tuple[np.ndarray, int | None]:
    scale = np.maximum(np.max(np.abs(np.diagonal(Hs, axis1=1, axis2=2)), axis=1), 1.0)
    try:
        L = np.linalg.cholesky(Hs)
    except np.linalg.LinAlgError:
        return _batch_gain_eigh(Hs, bs, ridge)
    # A tiny pivot means H_SS is numerically singular: the Cholesky value would
    # be dominated by rounding, so those supports are redone with eigh.
    pivots = np.diagonal(L, axis1=1, axis2=2)
    bad = np.min(pivots, axis=1) ** 2 <= 1e-10 * scale
    u = np.linalg.solve(L, bs[:, :, None])[:, :, 0]
    gain = np.einsum("ij,ij->i", u, u)
    if np.any(bad):
        g_bad, unbounded = _batch_gain_eigh(Hs[bad], bs[bad], ridge)
        if unbounded is not None:
            return gain, int(np.flatnonzero(bad)[unbounded])
        gain[bad] = g_bad
    return gain, None


def _batch_gain_eigh(Hs: np.ndarray, bs: np.ndarray, ridge: bool) -> tuple[np.ndarray, int | None]:
    k = Hs.shape[-1]
    # Jacobi-scale first, as refit does, so that a tiny but informative column
    # is not taken for the null space (columns scaled 1e-2 .. 8e3 with l2 = 0
    # were reported "unbounded" with c = 0); b_S^T H_SS^+ b_S is unchanged.
    d = np.sqrt(np.maximum(np.diagonal(Hs, axis1=1, axis2=2), 0.0))
    d = np.where(d > 0, d, 1.0)
    Hs = Hs / (d[:, :, None] * d[:, None, :])
    bs = bs / d
    evals, evecs = np.linalg.eigh(Hs)
    if ridge:  # H_SS >= l2 I: nothing to drop, f is bounded on every support
        safe = np.maximum(evals, np.finfo(np.float64).tiny)
        coef = np.einsum("mji,mj->mi", evecs, bs)
        return np.sum(coef * coef / safe, axis=1), None
    top = np.maximum(evals[:, -1], 1.0)
    keep = evals > (top * _EIG_RTOL * k)[:, None]
    coef = np.einsum("mji,mj->mi", evecs, bs)
    safe = np.where(keep, evals, 1.0)
    gain = np.sum(np.where(keep, coef * coef / safe, 0.0), axis=1)
    # b_S outside range(H_SS): its norm squared minus the kept components.
    outside = np.sum(np.where(keep, 0.0, coef * coef), axis=1)
    bnorm2 = np.einsum("ij,ij->i", bs, bs)
    unbounded = np.sqrt(np.maximum(outside, 0.0)) > 1e-8 * np.maximum(np.sqrt(bnorm2), 1.0)
    if np.any(unbounded):
        return gain, int(np.flatnonzero(unbounded)[0])
    return gain, None


def _finalists(gains: np.ndarray, p: int, k: int) -> list[np.ndarray]:
    m = min(_N_FINALISTS, gains.size)
    best = np.argpartition(-gains, m - 1)[:m] if gains.size > m else np.arange(gains.size)
    best = best[np.argsort(-gains[best], kind="stable")]
    return [_unrank(int(r), p, k) for r in best]


def _unrank(rank: int, p: int, k: int) -> np.ndarray:
    """The ``rank``-th k-subset of ``range(p)`` in lexicographic (itertools) order."""
    out = []
    start = 0
    for remaining in range(k, 0, -1):
        for j in range(start, p):
            block = math.comb(p - j - 1, remaining - 1)
            if rank < block:
                out.append(j)
                start = j + 1
                break
            rank -= block
    return np.array(out, dtype=np.int64)
