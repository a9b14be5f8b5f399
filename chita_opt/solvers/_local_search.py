"""Iterated local search on the explicit Gram matrix, for small problems.

Used by ``chita`` after its own stages when ``p`` is small: ``G = A^T A + l2 I``
(p x p) is formed once, and the exact swap search and perturbations then run
in a Numba kernel (``chita_opt._kernels.gram_search``) that never touches
``A`` -- thousands of local searches cost milliseconds at p ~ 30. The best
support found is refitted exactly with :func:`refit`, so the point returned is
the exact minimiser on its support.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels.gram_search import iterated_local_search
from .._validation import describe
from ..problem import L0Problem
from ._common import top_k
from ._refit import refit

__all__ = ["check_ils_iters", "gram_ils", "gram_starts", "resolve_ils"]

# The Gram search is offered by default only while the p x p Gram is cheap to
# form and hold and a full swap scoring (O(k (p - k))) costs microseconds.
_MAX_P = 256
_MAX_NP = 250_000
_MAX_ITER = 1000
# Default work budget, in pair scores (k (p - k) a full scoring): rounds stop
# once the scorings done reach it. At p = 30, k = 6 the 1000 rounds need ~6e5
# and never reach it; at p = 256 it bounds the search to tens of milliseconds.
_WORK_BUDGET = 5e6
_REL_REG = 1e-9


def _tiny_ridge(problem: L0Problem) -> bool:
    return problem.l2 <= 1e-10 * max(float(problem.col_sq_norms.max(initial=0.0)), 1e-300)


def resolve_ils(problem: L0Problem, ils_iters: Any, restarts: int | None) -> tuple[int, float]:
    """``(rounds, work budget in pair scores)`` of the Gram search for chita's ``ils_iters``.

    ``restarts`` is chita's option (None: default). Default (``ils_iters`` None):
    0 when ``restarts`` is 0, on problems with ``p > 256`` or
    ``n p > 250,000``, or when ``k > n`` without a ridge (then ``A_S^T A_S`` is
    singular and the Gram scores are meaningless); else 1000 rounds within
    the default work budget. An explicit value runs that many rounds, unbudgeted.
    """
    n_iter = check_ils_iters(ils_iters)
    if n_iter is not None:
        return n_iter, np.inf
    P = problem
    if (
        restarts == 0
        or P.p > _MAX_P
        or P.n * P.p > _MAX_NP
        or P.k == 0
        or P.k >= P.p
        or (P.k > P.n and _tiny_ridge(P))
    ):
        return 0, 0.0
    return _MAX_ITER, _WORK_BUDGET


def check_ils_iters(value: Any) -> int | None:
    """Validate the ``ils_iters`` option: None (default) or a non-negative integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"ils_iters: expected a non-negative integer or None, got {describe(value)}"
        )
    if value < 0:
        raise ValueError(f"ils_iters: expected a non-negative integer or None, got {value!r}")
    return int(value)


def gram_starts(problem: L0Problem, w_best: np.ndarray) -> list[np.ndarray]:
    """Starts of the Gram search: the best point so far, then the support of the
    largest ``|w_bar|`` (when ``w_bar != 0``); :func:`gram_ils` adds the ridge start."""
    P = problem
    starts = [np.asarray(w_best, dtype=np.float64)]
    if P.has_w_bar:
        starts.append(top_k(np.abs(P.w_bar), P.k))
    return starts


# Largest ratio of Gram diagonal entries the search works with (see gram_ils).
_MAX_DIAG_SPREAD = 1e24


def _gram(problem: L0Problem) -> tuple[np.ndarray, np.ndarray, float]:
    P = problem
    A = np.asarray(P.A, dtype=np.float64)
    G = A.T @ A
    diag = G.diagonal().copy()
    if _tiny_ridge(P):
        # no (useful) ridge: a relative one for scoring only; the result is refitted
        diag = diag * (1.0 + _REL_REG) + P.l2
        diag[diag == 0] = 1.0
    else:
        diag = diag + P.l2
    G[np.diag_indices_from(G)] = diag
    b = A.T @ P.y + P.l2 * P.w_bar - P.c
    f0 = P.objective(np.zeros(P.p))
    return G, b, f0


def gram_ils(
    problem: L0Problem,
    starts: list[np.ndarray],
    *,
    n_iter: int,
    seed: int,
    work: float = np.inf,
    max_moves: int = 4,
    max_swaps: int = 1000,
) -> tuple[np.ndarray | None, int]:
    """Best point found by local search from ``starts`` (points or supports) then ILS.

    The support of the largest entries of the ridge solution ``G^{-1} b`` is
    added as a last start. Perturbations always start from the best support
    found so far and swap 1..``max_moves`` random coordinates; they stop
    after ``n_iter`` rounds or once the full scorings done have scored ``work`` pairs.

    Returns ``(w, n_swaps)``; ``w`` is the exact refit on the best support
    (None if that refit is unbounded).
    """
    P = problem
    G, b, f0 = _gram(P)
    d = G.diagonal()
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(b)) and d.min() > 0
            and d.max() <= _MAX_DIAG_SPREAD * d.min()):
        # A Gram matrix that float64 cannot hold to working accuracy (columns
        # hundreds of orders of magnitude apart): its rank-one updates would
        # divide by rounding noise. The earlier stages' result stands.
        return None, 0
    try:  # the ridge solution on all coordinates: its largest entries are one more start
        starts = [*starts, top_k(np.abs(np.linalg.solve(G, b)), P.k)]
    except np.linalg.LinAlgError:
        pass
    rows = []
    for s in starts:
        s = np.asarray(s)
        support = np.flatnonzero(s) if s.size == P.p and s.dtype.kind == "f" else s
        support = np.unique(support.astype(np.int64))
        if support.size < P.k:  # fill with the largest one-coordinate gains b_j^2 / G_jj
            gain = b**2 / G.diagonal()
            gain[support] = -np.inf
            support = np.union1d(support, top_k(gain, P.k - support.size))
        elif support.size > P.k:
            continue
        rows.append(support)
    if not rows:
        return None, 0
    starts_arr = np.ascontiguousarray(np.vstack(rows), dtype=np.int64)
    # improvements below rounding level of f (or of the largest one-coordinate
    # gain, when f(0) is 0) are not moves: they could only cycle
    scale = max(abs(f0), float(np.max(0.5 * b**2 / G.diagonal())), 1e-300)
    tol = 1e-13 * scale
    per_pass = float(P.k * (P.p - P.k) + P.k)
    max_passes = np.iinfo(np.int64).max if not np.isfinite(work) else int(work / per_pass)
    S, _, n_swaps, _ = iterated_local_search(
        G, b, starts_arr, int(n_iter), int(max_moves), int(max_swaps), tol, max_passes, int(seed)
    )
    res = refit(P, np.sort(S))
    return (res.w if res.bounded else None), int(n_swaps)
