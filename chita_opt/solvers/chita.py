"""The default pipeline: active set -> CD -> swaps -> exact backsolve.

1. Start from the exact refit on the magnitude support (the backsolve), or a
   warm start.
2. Active-set IHT with CHITA's step scheme and CD on the support.
3. Swap local search on working sets (exact pair scoring, rank-one updates),
   which ends on the exact refit of its support.
4. With ``restarts`` > 0 (the default on small problems where step 5 does
   not run), more starts: greedy forward selection, and iterated local
   search -- perturb the best support by a few random swaps and polish
   again -- with a seeded generator, so results are reproducible for a
   given ``random_state``.
5. On small problems, an iterated local search on the explicit p x p Gram
   matrix (``_local_search.gram_ils``, a Numba kernel that scores every
   single swap exactly without touching ``A``): local search from the best
   point so far and from the supports of the largest ``|w_bar|`` and of the
   ridge solution, then up to 1000 perturb-the-best rounds; its best support
   is refitted exactly and kept only if it improves f. It does in a few
   milliseconds far more than the restarts of step 4, which it replaces by
   default.

The best point found is returned; since the first start is the backsolve and
every later step only accepts improvements, the result is never worse than
``backsolve`` from the same start.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..problem import L0Problem
from ..result import Solution
from . import register
from ._common import Stopwatch, check_tol, make_solution, resolve_max_iter, start_point, top_k
from ._local_search import gram_ils, gram_starts, resolve_ils
from ._refit import refit
from ._workset import add_gain
from .active_set import run_active_set
from .iht import initial_point
from .swap import forward_select, swap_polish

__all__ = ["solve_chita"]

# Extra starts (greedy forward selection, iterated local search) run by default
# only on problems this small: forward selection costs O(k (n p k + p k^2)).
_SMALL_P = 256
_SMALL_NP = 250_000
# With k > n the quadratic model interpolates (DESIGN.md section 8) and each
# swap costs several passes over the n x k support columns, while the swaps
# measured on real MLPNet gradients gain < 0.5% there: few by default, and
# none once the support block is large (the O(n^2 k) set-up alone costs
# seconds).
_WIDE_MAX_SWAPS = 50
_WIDE_NO_SWAPS_NK = 4_000_000


def _restarts_default(problem: L0Problem) -> int:
    return 24 if problem.p <= _SMALL_P and problem.n * problem.p <= _SMALL_NP else 0


def _max_swaps_default(problem: L0Problem) -> int:
    if problem.k <= problem.n:
        return 1000
    return 0 if problem.n * problem.k > _WIDE_NO_SWAPS_NK else _WIDE_MAX_SWAPS


def _perturb(
    problem: L0Problem, w: np.ndarray, rng: np.random.Generator, pool_size: int
) -> np.ndarray:
    """Swap a few random support coordinates for random promising outside ones."""
    k, p = problem.k, problem.p
    support = np.flatnonzero(w)
    outside = np.setdiff1d(np.arange(p), support, assume_unique=True)
    if outside.size == 0 or support.size == 0:
        return w
    if outside.size > pool_size:
        gain = add_gain(problem, problem.gradient(w))[outside]
        outside = outside[top_k(gain, pool_size)]
    s = int(rng.integers(1, min(3, support.size, outside.size) + 1))
    leave = rng.choice(support, size=s, replace=False)
    enter = rng.choice(outside, size=s, replace=False)
    new_support = np.union1d(np.setdiff1d(support, leave), enter)[:k]
    res = refit(problem, new_support)
    return res.w if res.bounded else w


@register("chita")
def solve_chita(
    problem: L0Problem,
    *,
    w0: Any = None,
    support: Any = None,
    max_iter: int | None = None,
    tol: float = 1e-7,
    restarts: int | None = None,
    ws_factor: float = 1.5,
    swap_candidates: int | None = None,
    max_swaps: int | None = None,
    ils_iters: int | None = None,
    random_state: int | None = 0,
) -> Solution:
    """CHITA: active-set IHT, coordinate descent, swap search and exact backsolve.

    Parameters
    ----------
    w0, support : warm start (default: backsolve on the magnitude support)
    max_iter : int
        Working-set rounds of the active-set stage (default 30).
    tol : float
        Relative tolerance of the IHT / CD stages.
    restarts : int, optional
        Iterated-local-search restarts after the first polish, plus a greedy
        forward-selection start (step 4). Default: 0 where the Gram search
        (``ils_iters``) runs by default; else 24 on problems with ``p <= 256``
        and ``n * p <= 250,000`` (there: when ``k > n`` with ``l2 = 0``), and
        0 on larger problems. 0 turns off both step 4 and, unless ``ils_iters``
        is given, step 5.
    ws_factor : float
        Working-set size as a multiple of ``k``.
    swap_candidates : int, optional
        Outside coordinates scored per swap round (default ``max(k, 32)``).
    max_swaps : int, optional
        Cap on swaps per polish. Default: 1000 when ``k <= n``; when ``k > n``
        (the model interpolates and each swap costs O(n k)) 50, or none at all
        once ``n k > 4e6``. Reaching the cap is a work budget, not a failure:
        the status stays ``"converged"`` and ``info["swap_local_optimum"]``
        says whether the swap search had finished.
    ils_iters : int, optional
        Perturbation rounds of the final Gram-matrix iterated local search
        (step 5). Default: up to 1000 rounds within a work budget of 5e6 pair
        scores (a full swap scoring scores ``k (p - k)`` pairs) on problems with
        ``p <= 256`` and ``n * p <= 250,000``; 0 when ``restarts`` is 0, on
        larger problems, and when ``k > n`` with ``l2 = 0`` (``A_S^T A_S``
        singular: step 4 runs instead). An explicit
        value runs exactly that many rounds (still with the local searches
        from the starts); any positive value forms the p x p Gram matrix
        (O(n p^2) time, O(p^2) memory), whatever the size of the problem.
    random_state : int
        Seed for the restarts and the Lanczos start vector.
    """
    clock = Stopwatch()
    P = problem
    w0, support = start_point(P, w0, support)
    max_rounds = resolve_max_iter(max_iter, 30)
    tol = check_tol(tol)
    n_restarts = _restarts_default(P) if restarts is None else int(restarts)
    if n_restarts < 0:
        raise ValueError(f"restarts: expected a non-negative integer, got {restarts!r}")
    n_ils, ils_work = resolve_ils(P, ils_iters, None if restarts is None else n_restarts)
    if restarts is None and n_ils > 0:
        n_restarts = 0  # the Gram search (step 5) replaces the restarts of step 4
    if P.k == 0:
        return make_solution(P, np.zeros(P.p), method="chita", status="converged",
                             message="k = 0", stopwatch=clock)
    rng = np.random.default_rng(random_state)
    max_swaps = _max_swaps_default(P) if max_swaps is None else int(max_swaps)

    w_start = initial_point(P, w0, support)
    stage = run_active_set(P, w_start, ws_factor=ws_factor, max_rounds=max_rounds, tol=tol,
                           random_state=random_state)
    w_best, f_best = stage.w, P.objective(stage.w)
    n_swaps, local_opt = 0, False
    if max_swaps > 0:
        w_pol, n_swaps, local_opt = swap_polish(P, stage.w, max_swaps=max_swaps,
                                                candidates=swap_candidates)
        f_pol = P.objective(w_pol)
        if f_pol <= f_best:  # every stage may only improve on the one before
            w_best, f_best = w_pol, f_pol
    history = [*stage.history, f_best]
    starts = []
    if n_restarts > 0:
        starts.append(forward_select(P))
    for w_try in starts:
        w_pol, s, _ = swap_polish(P, w_try, max_swaps=max_swaps, candidates=swap_candidates)
        n_swaps += s
        f_pol = P.objective(w_pol)
        if f_pol < f_best:
            w_best, f_best = w_pol, f_pol
        history.append(f_best)
    for _ in range(n_restarts):
        w_try = _perturb(P, w_best, rng, pool_size=max(2 * P.k, 16))
        w_pol, s, _ = swap_polish(P, w_try, max_swaps=max_swaps, candidates=swap_candidates)
        n_swaps += s
        f_pol = P.objective(w_pol)
        if f_pol < f_best - 1e-12 * max(abs(f_best), 1.0):
            w_best, f_best = w_pol, f_pol
        history.append(f_best)
    if n_ils > 0 and 0 < P.k < P.p:
        w_ils, s = gram_ils(P, gram_starts(P, w_best), n_iter=n_ils, work=ils_work,
                            seed=int(rng.integers(2**31)))
        n_swaps += s
        if w_ils is not None:
            f_ils = P.objective(w_ils)
            if f_ils < f_best - 1e-12 * max(abs(f_best), 1.0):
                w_best, f_best = w_ils, f_ils
        history.append(f_best)
    return make_solution(
        P, w_best, method="chita", status="converged" if stage.converged else "max_iter",
        message=f"active set ({stage.n_rounds} rounds) + {n_swaps} swaps, {n_restarts} restarts",
        n_iter=stage.n_rounds, stopwatch=clock, history=history, swaps=n_swaps,
        swap_local_optimum=local_opt,
    )
