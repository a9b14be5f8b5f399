"""Local combinatorial search: swap one coordinate out and one in while f drops.

On a support S where ``w_S`` is the exact minimiser, with
``H = A_S^T A_S + l2 I`` and ``Hi = H^{-1}``, the change of the optimal value
when ``i`` leaves and ``j`` enters is available in closed form (no refit):

* removing ``i`` raises f by ``w_i^2 / (2 Hi_ii)`` and moves the gradient of
  an outside coordinate to ``g'_j = g_j - (w_i / Hi_ii) q_ij``;
* adding ``j`` to ``S \\ {i}`` then lowers f by ``g'_j^2 / (2 s'_ij)`` with the
  Schur complement ``s'_ij = s_j + q_ij^2 / Hi_ii``,

where ``q_j = Hi A_S^T a_j`` and ``s_j = ||a_j||^2 + l2 - a_j^T A_S q_j``.
Every pair (i in S, j in a candidate set J) is scored exactly in
O(n |S| |J| + |S|^2 |J|) flops; the best improving swap is made with rank-one
updates of ``Hi`` (O(|S|^2)). The search stops at a swap-local optimum: no
single swap among the candidates lowers f. Candidates are the outside
coordinates with the largest one-coordinate gain ``g_j^2 / (2 H_jj)``.

When ``l2 = 0`` and ``A_S`` is rank-deficient, ``H`` is regularised by a
tiny multiple of its diagonal for scoring only; callers refit exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels.linalg import gather_columns
from .._validation import check_int
from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._common import check_tol, renamed, resolve_budget, top_k
from ._group_caps import allowed_slots, mask_infeasible_pairs
from ._refit import refit
from ._registry import register
from ._support_system import _DENSE_UP_TO, _DenseSystem, _swap_deltas, _WoodburySystem
from ._workset import add_gain
from .iht import initial_point

__all__ = ["SwapResult", "run_swaps", "solve_swap", "swap_polish"]

_BATCH = 64
_MAX_SCORED_SLOTS = 1024
_CANDIDATE_BLOCK = 1024  # candidate columns scored at a time


@dataclass
class SwapResult:
    w: np.ndarray
    n_swaps: int
    local_optimum: bool
    objective_history: list[float]
    regularized: bool


def _fill_support(problem: L0Problem, w: np.ndarray) -> np.ndarray:
    """Grow a support with fewer than k entries by the best one-coordinate gains."""
    support = np.flatnonzero(w)
    missing = problem.k - support.size
    if missing <= 0:
        return support
    g = problem.gradient(w)
    gain = add_gain(problem, g)
    gain[support] = -np.inf
    if problem.group_caps is not None:  # grow within the caps (greedy: fills up to k)
        return problem.group_caps.fill(support, gain, problem.k)
    extra = top_k(gain, missing)
    return np.union1d(support, extra)


def run_swaps(
    problem: L0Problem,
    w: np.ndarray,
    *,
    max_swaps: int = 1000,
    max_candidates: int | None = None,
    tol: float = 1e-10,
) -> SwapResult:
    """Best-improvement single swaps from the support of ``w`` (see module docstring).

    Each scoring round takes one pass over ``A`` (the gradient), keeps the
    ``max_candidates`` outside coordinates with the largest one-coordinate
    gain (all of them if None), gathers those columns once and scores every
    pair; the best swaps of the round are then made one at a time, each
    re-checked exactly first. The returned ``w`` is the exact minimiser on its
    support (up to the scoring regulariser when ``l2 = 0``; see
    ``SwapResult.regularized``).
    """
    P = problem
    k = P.k
    if k == 0 or k >= P.p:
        res = refit(P, np.arange(P.p) if k else np.empty(0, dtype=np.int64))
        return SwapResult(res.w, 0, True, [], False)
    support = _fill_support(P, w)
    # The Woodbury form only pays off for large supports; on small ones it
    # loses digits that the k x k inverse keeps (badly scaled columns with k > n
    # and a small l2: it missed improving swaps worth 25% of f, p = 11, k = 8).
    wide = support.size > max(P.n, _DENSE_UP_TO)
    system_cls = _WoodburySystem if wide else _DenseSystem
    system = system_cls(P, support)
    col_sq = P.col_sq_norms
    caps = P.group_caps
    n_swaps = 0
    history: list[float] = []
    local_opt = False
    while True:
        f = system.objective()
        history.append(f)
        threshold = -tol * max(abs(f), 1.0)
        if n_swaps >= max_swaps:
            break
        S, wS = system.support, system.wS
        g = -(P.A.T @ system.r.astype(P.dtype, copy=False)).astype(np.float64)
        g += P.c - P.l2 * P.w_bar
        outside = np.ones(P.p, dtype=bool)
        outside[S] = False
        J = np.flatnonzero(outside)
        if max_candidates is not None and J.size > max_candidates:
            J = J[top_k(add_gain(P, g)[J], max_candidates)]
        d = system.diag()
        slots = None
        if S.size > _MAX_SCORED_SLOTS:
            # the pair table would be |S| x |J|: score only the slots that are
            # cheapest to give up (smallest w_i^2 / (2 Hi_ii)) in this round
            slots = top_k(-(wS**2 / d), _MAX_SCORED_SLOTS)
        w_sc, d_sc = (wS, d) if slots is None else (wS[slots], d[slots])
        # candidates in blocks: the float64 columns and the pair table of all
        # of them at once would cost several times n x m (more than A at k > n)
        best = np.empty(J.size)
        for start in range(0, J.size, _CANDIDATE_BLOCK):
            Jb = J[start : start + _CANDIDATE_BLOCK]
            Q, sigma = system.q_sigma(gather_columns(P.A, Jb), col_sq[Jb], slots)
            delta = _swap_deltas(w_sc, d_sc, g[Jb], Q, sigma, system.h_jj(col_sq[Jb]))
            if caps is not None:  # only swaps that keep every group cap
                mask_infeasible_pairs(caps, caps.counts(S), S if slots is None else S[slots],
                                      Jb, delta)
            best[start : start + Jb.size] = delta.min(axis=0)
        order = np.argsort(best, kind="stable")
        order = order[best[order] < threshold][:_BATCH]
        if order.size == 0:
            local_opt = True
            break
        # Make the best entries of this scoring one at a time, re-scoring each
        # exactly against the current support (O(n k + k^2), or O(n^2 + n k))
        # and putting it in the slot that is best now: a full scoring costs a
        # pass plus O(n k m), so it is done once a batch.
        previous = S.copy()
        applied = 0
        for col in order:
            if n_swaps >= max_swaps:
                break
            j = int(J[col])
            allowed = None if caps is None else _allowed(caps, system.support, j, slots)
            if allowed is not None and allowed.size == 0:
                continue
            d_exact, slot, payload = system.best_entry(j, slots, allowed)
            if d_exact < threshold:
                system.swap(slot, j, payload)
                applied += 1
                n_swaps += 1
        # guard against drift of the rank-one updates: the decrease must be real
        system.refine()
        if applied == 0 or system.objective() >= f:
            system.reset(system.support)
            if applied == 0 or system.objective() >= f:
                system.reset(previous)
                n_swaps -= applied
                local_opt = True
                break
    system.refine()
    w_full = np.zeros(P.p)
    w_full[system.support] = system.wS
    inexact = getattr(system, "inexact", False)
    return SwapResult(w_full, n_swaps, local_opt, history, system.reg > 0 or inexact)


def _allowed(caps: Any, support: np.ndarray, j: int, slots: np.ndarray | None) -> np.ndarray | None:
    """Slots ``j`` may take under the caps now (None: any), within the scored ``slots``."""
    allowed = allowed_slots(caps, support, j)
    if slots is None:
        return allowed
    return slots if allowed is None else np.intersect1d(allowed, slots)


def default_candidates(problem: L0Problem) -> int:
    """Outside coordinates scored per swap round: all on small problems, else about k (<= 256)."""
    outside = problem.p - problem.k
    if problem.p <= 512:
        return outside
    return min(outside, max(64, min(problem.k, 256)))


def swap_polish(
    problem: L0Problem,
    w: np.ndarray,
    *,
    max_swaps: int = 1000,
    candidates: int | None = None,
    tol: float = 1e-10,
) -> tuple[np.ndarray, int, bool]:
    """Swap search from ``w``, ending on the exact refit of the final support.

    Returns ``(w, n_swaps, local_opt)``.
    """
    P = problem
    m = default_candidates(P) if candidates is None else int(candidates)
    res = run_swaps(P, np.asarray(w, dtype=np.float64), max_swaps=max_swaps,
                    max_candidates=m, tol=tol)
    w_out = res.w
    if res.regularized:  # scoring used a tiny ridge or the Woodbury form: finish exactly
        fit = refit(P, np.flatnonzero(res.w))
        if fit.bounded and P.objective(fit.w) <= P.objective(res.w):
            w_out = fit.w
    return w_out, res.n_swaps, res.local_optimum


@register("swap")
def solve_swap(
    problem: L0Problem,
    *,
    w0: Any = None,
    support: Any = None,
    max_swaps: int | None = None,
    swap_candidates: int | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    candidates: int | None = None,
) -> Solution:
    """Swap local search (a polish usable after any method).

    Starts from ``w0`` / ``support`` (default: the backsolve on the magnitude
    support) and swaps one coordinate out and one in while that lowers f.

    Parameters
    ----------
    max_swaps : int, default 1000
        Most swaps made (0: just the refit of the start). ``max_iter`` is its
        deprecated name.
    swap_candidates : int, optional
        Outside coordinates scored per round (default: all of them when
        ``p <= 512``, else ``min(p - k, max(64, min(k, 256)))``).
        ``candidates`` is its deprecated name.
    tol : float, default 1e-10
        A swap must lower f by more than ``tol * max(|f|, 1)``, f measured in
        units where ``f(0)`` is about 1/2 (the rescaled problem).

    With ``l2 = 0`` the columns are normalised first (on a copy of ``A``).
    """
    value, name = renamed(max_iter, max_swaps, "max_iter", "max_swaps", "swap")
    max_swaps = resolve_budget(value, name, 1000, minimum=0)
    value, name = renamed(candidates, swap_candidates, "candidates", "swap_candidates", "swap")
    swap_candidates = check_int(value, name, minimum=1, allow_none=True)
    tol = check_tol(tol)

    def body(start: Start) -> Outcome:
        w_start = initial_point(start.problem, start.w0, start.support)
        w, n_swaps, local_opt = swap_polish(start.problem, w_start, max_swaps=max_swaps,
                                            candidates=swap_candidates, tol=tol)
        if local_opt:
            return Outcome(w, Status.CONVERGED, f"swap-local optimum after {n_swaps} swaps",
                           n_swaps)
        return Outcome(w, Status.MAX_ITER, f"stopped after max_swaps={max_swaps} swaps", n_swaps)

    return run_method(problem, "swap", body, w0=w0, support=support, scale_columns=True)


def forward_select(problem: L0Problem) -> np.ndarray:
    """Greedy forward selection: add the coordinate with the largest exact gain, k times.

    The gain of adding ``j`` to an optimal support S is ``g_j^2 / (2 s_j)`` with
    the Schur complement ``s_j``; each step ends with the exact refit. Meant
    for small problems (cost O(k (n p |S| + p |S|^2))).
    """
    P = problem
    B = np.asarray(P.A, dtype=np.float64)
    col_sq = P.col_sq_norms
    w = np.zeros(P.p)
    support = np.empty(0, dtype=np.int64)
    for _ in range(P.k):
        g = P.gradient(w)
        outside = np.ones(P.p, dtype=bool)
        outside[support] = False
        J = np.flatnonzero(outside)
        if P.group_caps is not None:  # only groups with room may grow
            caps = P.group_caps
            J = J[(caps.counts(support) < caps.cap)[caps.labels[J]]]
            if J.size == 0:
                break
        sigma = col_sq[J] + P.l2
        if support.size:
            BS = B[:, support]
            V = BS.T @ B[:, J]
            H = BS.T @ BS
            H[np.diag_indices_from(H)] += P.l2
            Q = np.linalg.lstsq(H, V, rcond=None)[0]
            sigma = sigma - np.einsum("ij,ij->j", V, Q)
        floor = 1e-12 * (col_sq[J] + P.l2)
        gain = np.where(sigma > floor, g[J] ** 2 / np.where(sigma > floor, sigma, 1.0), 0.0)
        support = np.union1d(support, J[int(np.argmax(gain))])
        res = refit(P, support)
        if not res.bounded:
            break
        w = res.w
    return w
