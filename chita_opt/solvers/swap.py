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
import scipy.linalg as sla

from .._kernels.linalg import support_matvec
from ..problem import L0Problem
from ..result import Solution
from . import register
from ._common import Stopwatch, check_tol, make_solution, resolve_max_iter, start_point, top_k
from ._refit import refit
from ._workset import add_gain, restrict
from .iht import initial_point

__all__ = ["SwapResult", "run_swaps", "solve_swap", "swap_polish"]

_REFRESH_EVERY = 64
_REL_REG = 1e-9


@dataclass
class SwapResult:
    w: np.ndarray
    n_swaps: int
    local_optimum: bool
    objective_history: list[float]


class _SupportSystem:
    """``Hi = (A_S^T A_S + l2 I)^{-1}`` for a support kept in fixed slots."""

    def __init__(self, problem: L0Problem, support: np.ndarray) -> None:
        self.problem = problem
        self.support = np.array(support, dtype=np.int64)
        self.b = self._rhs(self.support)
        self.refresh()

    def _rhs(self, idx: np.ndarray) -> np.ndarray:
        P = self.problem
        return (
            np.asarray(P.A[:, idx], dtype=np.float64).T @ P.y
            + P.l2 * P.w_bar[idx]
            - P.c[idx]
        )

    def refresh(self) -> None:
        P = self.problem
        B = np.asarray(P.A[:, self.support], dtype=np.float64)
        H = B.T @ B
        if P.l2 > 0:
            H[np.diag_indices_from(H)] += P.l2
        self.reg = 0.0
        try:
            if P.l2 <= 1e-10 * max(float(H.diagonal().max(initial=0.0)), 1e-300):
                raise np.linalg.LinAlgError("regularise")
            factor = sla.cho_factor(H, check_finite=False)
        except np.linalg.LinAlgError:
            # rank-deficient without a ridge: add a ridge relative to each
            # column's own scale (scale-invariant, so a tiny but informative
            # column is not drowned), for scoring only
            self.reg = _REL_REG
            H[np.diag_indices_from(H)] *= 1.0 + _REL_REG
            diag = H.diagonal().copy()
            diag[diag == 0] = 1.0  # an all-zero column: its coefficient stays 0
            H[np.diag_indices_from(H)] = diag
            factor = sla.cho_factor(H, check_finite=False)
        self.Hi = sla.cho_solve(factor, np.eye(H.shape[0]), check_finite=False)
        self.since_refresh = 0

    @property
    def w_support(self) -> np.ndarray:
        return self.Hi @ self.b

    def objective(self) -> float:
        P = self.problem
        w = np.zeros(P.p)
        w[self.support] = self.w_support
        r = P.y - support_matvec(P.A, self.support, w[self.support])
        return P.objective_from_residual(w, r)

    def reset(self, support: np.ndarray) -> None:
        """Recompute everything from scratch on ``support`` (no accumulated rounding)."""
        self.support = np.array(support, dtype=np.int64)
        self.b = self._rhs(self.support)
        self.refresh()

    def swap(self, slot: int, j: int, q: np.ndarray, sigma: float) -> None:
        """Replace the coordinate in ``slot`` by ``j`` (q, sigma computed for the current S)."""
        Hi = self.Hi
        d = Hi[slot, slot]
        h = Hi[:, slot].copy()
        # remove the slot: Hi <- Hi - h h^T / d, restricted to the other slots
        Hi -= np.outer(h, h) / d
        # q and sigma for S \ {i}: q' = q - h q_i / d (slot entry dropped), s' = s + q_i^2 / d
        q_red = q - h * (q[slot] / d)
        q_red[slot] = 0.0
        s_red = sigma + q[slot] ** 2 / d
        Hi += np.outer(q_red, q_red) / s_red
        Hi[:, slot] = -q_red / s_red
        Hi[slot, :] = -q_red / s_red
        Hi[slot, slot] = 1.0 / s_red
        self.support[slot] = j
        self.b[slot] = self._rhs(np.array([j]))[0]
        self.since_refresh += 1
        if self.since_refresh >= _REFRESH_EVERY:
            self.refresh()


def _fill_support(problem: L0Problem, w: np.ndarray) -> np.ndarray:
    """Grow a support with fewer than k entries by the best one-coordinate gains."""
    support = np.flatnonzero(w)
    missing = problem.k - support.size
    if missing <= 0:
        return support
    g = problem.gradient(w)
    gain = add_gain(problem, g)
    gain[support] = -np.inf
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

    ``problem`` should be small enough that ``A_S^T A_J`` fits comfortably:
    callers pass a working-set restriction for large problems. The returned
    ``w`` is the exact minimiser on its support (up to the scoring regulariser
    when ``l2 = 0``).
    """
    P = problem
    k = P.k
    if k == 0 or k >= P.p:
        res = refit(P, np.arange(P.p) if k else np.empty(0, dtype=np.int64))
        return SwapResult(res.w, 0, True, [])
    support = _fill_support(P, w)
    system = _SupportSystem(P, support)
    col_sq = P.col_sq_norms
    l2 = P.l2
    n_swaps = 0
    history: list[float] = []
    local_opt = False
    w_full = np.zeros(P.p)
    for _ in range(max_swaps + 1):
        S = system.support
        wS = system.w_support
        w_full[:] = 0.0
        w_full[S] = wS
        r = P.y - support_matvec(P.A, S, wS)
        f = P.objective_from_residual(w_full, r)
        history.append(f)
        if n_swaps >= max_swaps:
            break
        outside = np.ones(P.p, dtype=bool)
        outside[S] = False
        J = np.flatnonzero(outside)
        g = -(np.asarray(P.A[:, J], dtype=np.float64).T @ r) - l2 * P.w_bar[J] + P.c[J]
        if max_candidates is not None and J.size > max_candidates:
            keep = top_k(0.5 * g**2 / (col_sq[J] + l2 + 1e-300), max_candidates)
            J, g = J[keep], g[keep]
        BS = np.asarray(P.A[:, S], dtype=np.float64)
        BJ = np.asarray(P.A[:, J], dtype=np.float64)
        V = BS.T @ BJ
        Q = system.Hi @ V
        h_jj = col_sq[J] * (1.0 + system.reg) + l2
        sigma = h_jj - np.einsum("ij,ij->j", V, Q)
        d = system.Hi.diagonal()
        g_after = g[None, :] - (wS / d)[:, None] * Q
        s_after = sigma[None, :] + Q**2 / d[:, None]
        floor = 1e-12 * h_jj[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = (0.5 * wS**2 / d)[:, None] - 0.5 * g_after**2 / np.where(
                s_after > floor, s_after, np.inf
            )
        flat = int(np.argmin(delta))
        slot, col = divmod(flat, J.size)
        if not delta[slot, col] < -tol * max(abs(f), 1.0):
            local_opt = True
            break
        previous = S.copy()
        system.swap(slot, int(J[col]), Q[:, col], float(sigma[col]))
        n_swaps += 1
        # guard against drift of the rank-one updates: the decrease must be real
        if system.objective() >= f:
            system.reset(system.support)
            if system.objective() >= f:
                system.reset(previous)
                n_swaps -= 1
                local_opt = True
                break
    w_full[:] = 0.0
    w_full[system.support] = system.w_support
    return SwapResult(w_full.copy(), n_swaps, local_opt, history)


def swap_polish(
    problem: L0Problem,
    w: np.ndarray,
    *,
    max_swaps: int = 1000,
    candidates: int | None = None,
    max_rounds: int = 20,
    tol: float = 1e-10,
) -> tuple[np.ndarray, int, bool]:
    """Swap search on a large problem through working sets.

    Each round takes the current support plus the ``candidates`` outside
    coordinates with the largest one-coordinate gain under the full gradient
    (one pass over ``A``), runs :func:`run_swaps` on that restriction, and
    repeats until a round makes no swap. Returns ``(w, n_swaps, local_opt)``
    where ``w`` is the exact refit on the final support.
    """
    P = problem
    k = P.k
    if candidates is None:
        candidates = max(k, 32)
    total = 0
    local_opt = False
    w = np.asarray(w, dtype=np.float64)
    if P.p <= k + candidates:
        res = run_swaps(P, w, max_swaps=max_swaps, tol=tol)
        return _refit_or_keep(P, np.flatnonzero(res.w), res.w), res.n_swaps, res.local_optimum
    for _ in range(max_rounds):
        support = _fill_support(P, w)
        w_s = _refit_or_keep(P, support, w)
        g = P.gradient(w_s)
        gain = add_gain(P, g)
        gain[support] = -np.inf
        extra = top_k(gain, candidates)
        W = np.union1d(support, extra)
        sub = restrict(P, W)
        res = run_swaps(sub, w_s[W], max_swaps=max_swaps - total, tol=tol)
        w = np.zeros(P.p)
        w[W] = res.w
        total += res.n_swaps
        if res.n_swaps == 0 or total >= max_swaps:
            local_opt = res.n_swaps == 0
            break
    return _refit_or_keep(P, np.flatnonzero(w), w), total, local_opt


def _refit_or_keep(problem: L0Problem, support: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact refit on ``support``; ``w`` itself where f is unbounded there."""
    res = refit(problem, support)
    return res.w if res.bounded else w


@register("swap")
def solve_swap(
    problem: L0Problem,
    *,
    w0: Any = None,
    support: Any = None,
    max_iter: int | None = None,
    candidates: int | None = None,
    tol: float = 1e-10,
) -> Solution:
    """Swap local search (a polish usable after any method).

    Starts from ``w0`` / ``support`` (default: the backsolve on the magnitude
    support) and swaps one coordinate out and one in while that lowers f.
    ``max_iter`` bounds the number of swaps; ``candidates`` the outside
    coordinates scored per round (default ``max(k, 32)``).
    """
    clock = Stopwatch()
    w0, support = start_point(problem, w0, support)
    max_swaps = resolve_max_iter(max_iter, 1000)
    tol = check_tol(tol)
    w_start = initial_point(problem, w0, support)
    w, n_swaps, local_opt = swap_polish(problem, w_start, max_swaps=max_swaps,
                                        candidates=candidates, tol=tol)
    status = "converged" if local_opt else "max_iter"
    message = (
        f"swap-local optimum after {n_swaps} swaps" if local_opt
        else f"stopped after max_iter={max_swaps} swaps"
    )
    return make_solution(problem, w, method="swap", status=status, message=message,
                         n_iter=n_swaps, stopwatch=clock)


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
