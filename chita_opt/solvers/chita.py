"""The default pipeline: active set -> CD -> swaps -> exact backsolve.

1. Start from the exact refit on the magnitude support (the backsolve), or a
   warm start.
2. Active-set IHT with CHITA's step scheme, exact refits on a settled
   support and CD on the support.
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

from .._validation import check_int, check_random_state, check_real
from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._common import check_tol, renamed, resolve_budget, top_k
from ._group_caps import perturb_support, random_feasible_start
from ._local_search import check_ils_iters, gram_ils, gram_starts, resolve_ils
from ._refit import refit
from ._registry import register
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


# Under group caps every this-many-th restart starts from a random feasible
# support instead of a perturbation of the best one (see _restarts_default).
_CAPPED_FRESH_EVERY = 4


def _restarts_default(problem: L0Problem) -> int:
    if problem.p > _SMALL_P or problem.n * problem.p > _SMALL_NP:
        return 0
    # Group caps shrink the single-swap neighbourhood (a full group allows only
    # swaps inside it), so there are more swap-local optima to escape. Measured
    # on the tests/test_group_caps.py generator (p <= 16): 24 restarts from the
    # best point left 1 of 900 instances 61% above the optimum; 48 left 1 of
    # 1,000 others 96% above; 48 with every fourth from a fresh random feasible
    # support (_CAPPED_FRESH_EVERY) reached the optimum on 3,000 further ones.
    return 48 if problem.group_caps is not None else 24


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
    if problem.group_caps is not None:  # random swaps that keep every group cap
        res = refit(problem, perturb_support(problem.group_caps, support, outside, rng, s))
        return res.w if res.bounded else w
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
    max_rounds: int | None = None,
    tol: float = 1e-7,
    restarts: int | None = None,
    ws_factor: float = 1.5,
    swap_candidates: int | None = None,
    max_swaps: int | None = None,
    ils_iters: int | None = None,
    random_state: int | None = 0,
    max_iter: int | None = None,
) -> Solution:
    """CHITA: active-set IHT, coordinate descent, swap search and exact backsolve.

    Parameters
    ----------
    w0, support : warm start (default: backsolve on the magnitude support)
    max_rounds : int, default 30
        Working-set rounds of the active-set stage (``max_iter`` is its
        deprecated name).
    tol : float, default 1e-7
        Relative tolerance of the IHT / CD stages.
    restarts : int, optional
        Iterated-local-search restarts after the first polish, plus a greedy
        forward-selection start (step 4). Default: 0 where the Gram search
        (``ils_iters``) runs by default; else 24 on problems with ``p <= 256``
        and ``n * p <= 250,000`` (48 under group caps), and 0 on larger
        problems. 0 turns off both step 4 and, unless ``ils_iters`` is given,
        step 5.
    ws_factor : float, default 1.5
        Working-set size as a multiple of ``k``.
    swap_candidates : int, optional
        Outside coordinates scored per swap round (default as for ``swap``).
    max_swaps : int, optional
        Cap on swaps per polish (0: no swap search). Default: 1000 when
        ``k <= n``; when ``k > n`` (the model interpolates and each swap costs
        O(n k)) 50, or none at all once ``n k > 4e6``. Reaching the cap is a
        work budget, not a failure: the status stays ``"converged"`` and
        ``info["swap_local_optimum"]`` says whether the swap search had finished.
    ils_iters : int, optional
        Perturbation rounds of the final Gram-matrix iterated local search
        (step 5). Default: up to 1000 rounds within a work budget of 5e6 pair
        scores (a full swap scoring scores ``k (p - k)`` pairs) on problems with
        ``p <= 256`` and ``n * p <= 250,000``; 0 when ``restarts`` is 0, on
        larger problems, when ``k > n`` with ``l2 = 0`` (``A_S^T A_S``
        singular: step 4 runs instead) and under group caps (its swaps ignore
        them). An explicit value runs exactly that many rounds; any positive
        value forms the p x p Gram matrix (O(n p^2) time, O(p^2) memory).
    random_state : int or None, default 0
        Seed for the restarts and the Lanczos start vector.

    With ``l2 = 0`` the columns are normalised first (on a copy of ``A``), so the
    result does not depend on the columns' scales.
    """
    value, name = renamed(max_iter, max_rounds, "max_iter", "max_rounds", "chita")
    max_rounds = resolve_budget(value, name, 30)
    tol = check_tol(tol)
    restarts = check_int(restarts, "restarts", minimum=0, allow_none=True)
    ws_factor = float(check_real(ws_factor, "ws_factor", minimum=1.0))  # type: ignore[arg-type]
    swap_candidates = check_int(swap_candidates, "swap_candidates", minimum=1, allow_none=True)
    max_swaps = check_int(max_swaps, "max_swaps", minimum=0, allow_none=True)
    ils_iters = check_ils_iters(ils_iters)
    random_state = check_random_state(random_state)

    def body(start: Start) -> Outcome:
        return _pipeline(start, max_rounds=max_rounds, tol=tol, restarts=restarts,
                         ws_factor=ws_factor, swap_candidates=swap_candidates,
                         max_swaps=max_swaps, ils_iters=ils_iters,
                         random_state=random_state)

    return run_method(problem, "chita", body, w0=w0, support=support, scale_columns=True)


def _pipeline(
    start: Start,
    *,
    max_rounds: int,
    tol: float,
    restarts: int | None,
    ws_factor: float,
    swap_candidates: int | None,
    max_swaps: int | None,
    ils_iters: int | None,
    random_state: int | None,
) -> Outcome:
    P = start.problem
    n_restarts = _restarts_default(P) if restarts is None else restarts
    if P.group_caps is None:
        n_ils, ils_work = resolve_ils(P, ils_iters, restarts)
    else:  # the Gram search's swaps do not keep group caps: the restarts of step 4 do
        n_ils, ils_work = 0, 0.0
    if restarts is None and n_ils > 0:
        n_restarts = 0  # the Gram search (step 5) replaces the restarts of step 4
    rng = np.random.default_rng(random_state)
    max_swaps = _max_swaps_default(P) if max_swaps is None else int(max_swaps)

    w_start = initial_point(P, start.w0, start.support)
    # the swap search explores other supports: the active set's IHT stops at its
    # first fixed point (measured faster, and as good, as going on: docs/algorithms.md)
    stage = run_active_set(P, w_start, ws_factor=ws_factor, max_rounds=max_rounds, tol=tol,
                           random_state=random_state, until_no_descent=False)
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
    for i in range(n_restarts):
        if P.group_caps is not None and i % _CAPPED_FRESH_EVERY == _CAPPED_FRESH_EVERY - 1:
            w_try = random_feasible_start(P, rng)
        else:
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
    status = Status.CONVERGED if stage.converged else Status.MAX_ITER
    return Outcome(
        w_best, status,
        f"active set ({stage.n_rounds} rounds) + {n_swaps} swaps, {n_restarts} restarts",
        stage.n_rounds, history, {"swaps": n_swaps, "swap_local_optimum": local_opt},
    )
