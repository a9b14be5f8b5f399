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

from .._kernels.linalg import gather_columns, sym_rank2_update
from .._validation import check_int
from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._common import check_tol, renamed, resolve_budget, top_k
from ._group_caps import allowed_slots, mask_infeasible_pairs
from ._refit import refit
from ._registry import register
from ._workset import add_gain
from .iht import initial_point

__all__ = ["SwapResult", "run_swaps", "solve_swap", "swap_polish"]

_REFRESH_EVERY = 64
_DENSE_UP_TO = 256  # supports this small always use the explicit k x k inverse
_REL_REG = 1e-9
_BATCH = 64
_MAX_SCORED_SLOTS = 1024
_E_BLOCK = 512  # columns per block when forming e = diag(A_S^T M^-1 A_S)
_CANDIDATE_BLOCK = 1024  # candidate columns scored at a time
# Iterative refinement of the Woodbury point: relative target and most steps.
_WOODBURY_RTOL = 1e-10
_WOODBURY_STEPS = 4


@dataclass
class SwapResult:
    w: np.ndarray
    n_swaps: int
    local_optimum: bool
    objective_history: list[float]
    regularized: bool


class _SupportSystem:
    """Exact minimiser on a support kept in fixed slots, for swap scoring.

    Holds the gathered support columns ``BS`` (n x k, float64, Fortran order),
    the right-hand side ``b``, the current ``w_S`` and residual, and a
    representation of ``Hi = H_SS^{-1}`` supplied by the subclass: the
    explicit k x k inverse when k <= n, the n x n Woodbury form when k > n.
    """

    reg: float = 0.0
    refresh_every: int = _REFRESH_EVERY

    def __init__(self, problem: L0Problem, support: np.ndarray) -> None:
        self.problem = problem
        self.reset(support)

    # -- to be provided by the representation ---------------------------------
    def _factor(self) -> None:
        raise NotImplementedError

    def diag(self) -> np.ndarray:
        """Diagonal of ``Hi``."""
        raise NotImplementedError

    def q_sigma(
        self, BJ: np.ndarray, col_sq: np.ndarray, slots: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``Q = Hi A_S^T A_J`` (k x m; only the rows ``slots`` if given) and the Schur
        complements ``s_j`` of the candidate columns."""
        raise NotImplementedError

    def _replace(self, slot: int, a_j: np.ndarray, b_j: float, payload: Any) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------
    def reset(self, support: np.ndarray) -> None:
        """Recompute everything from scratch on ``support`` (no accumulated rounding)."""
        P = self.problem
        self.support = np.array(support, dtype=np.int64)
        self.BS = gather_columns(P.A, self.support)
        self.b = self.BS.T @ P.y + P.l2 * P.w_bar[self.support] - P.c[self.support]
        self.since_refresh = 0
        self._factor()
        self._update_point()

    def _update_point(self) -> None:
        self.wS = self.Hi @ self.b
        self.r = self.problem.y - self.BS @ self.wS

    def h_jj(self, col_sq: np.ndarray) -> np.ndarray:
        return col_sq * (1.0 + self.reg) + self.problem.l2

    def refine(self) -> None:
        """Make the held point as accurate as the representation allows (default: it is)."""

    def objective(self) -> float:
        """f at the current point, from the residual (O(n + k))."""
        return self.problem.objective_on_support(self.support, self.wS, self.r)

    def _entry_gradient(self, j: int) -> tuple[np.ndarray, float]:
        P = self.problem
        a_j = np.asarray(P.A[:, j], dtype=np.float64)
        return a_j, float(-(a_j @ self.r) - P.l2 * P.w_bar[j] + P.c[j])

    def best_entry(
        self, j: int, slots: np.ndarray | None = None, allowed: np.ndarray | None = None
    ) -> tuple[float, int, Any]:
        """Exact change of f for the best swap bringing ``j`` in: ``(delta, slot, payload)``.

        ``slots`` restricts the slots considered (all if None); ``allowed``
        (non-empty, a subset of ``slots``) are the only slots that may be chosen.
        """
        raise NotImplementedError

    def swap(self, slot: int, j: int, payload: Any) -> None:
        """Replace the coordinate in ``slot`` by ``j`` (payload from :meth:`best_entry`)."""
        P = self.problem
        a_j = np.asarray(P.A[:, j], dtype=np.float64)
        b_j = float(a_j @ P.y + P.l2 * P.w_bar[j] - P.c[j])
        self._replace(slot, a_j, b_j, payload)
        self.support[slot] = j
        self.BS[:, slot] = a_j
        self.b[slot] = b_j
        self.since_refresh += 1
        if self.since_refresh >= self.refresh_every:
            self.reset(self.support)
        else:
            self._update_point()


class _DenseSystem(_SupportSystem):
    """``Hi`` stored explicitly (k x k); swaps are rank-one updates, O(k^2)."""

    def _factor(self) -> None:
        P = self.problem
        H = self.BS.T @ self.BS
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
            diag = H.diagonal() * (1.0 + _REL_REG)
            diag[diag == 0] = 1.0  # an all-zero column: its coefficient stays 0
            H[np.diag_indices_from(H)] = diag
            factor = sla.cho_factor(H, check_finite=False)
        self.Hi = sla.cho_solve(factor, np.eye(H.shape[0]), check_finite=False)

    def diag(self) -> np.ndarray:
        return self.Hi.diagonal()

    def q_sigma(
        self, BJ: np.ndarray, col_sq: np.ndarray, slots: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        V = self.BS.T @ BJ
        Q = self.Hi @ V
        sigma = self.h_jj(col_sq) - np.einsum("ij,ij->j", V, Q)
        return (Q if slots is None else Q[slots]), sigma

    def best_entry(
        self, j: int, slots: np.ndarray | None = None, allowed: np.ndarray | None = None
    ) -> tuple[float, int, Any]:
        # Q is needed whole for the rank-one update, so every slot is scored
        a_j, g_j = self._entry_gradient(j)
        col_sq = self.problem.col_sq_norms[j : j + 1]
        Q, sigma = self.q_sigma(a_j[:, None], col_sq)
        delta = _swap_deltas(self.wS, self.diag(), np.array([g_j]), Q, sigma, self.h_jj(col_sq))
        if allowed is not None:  # group caps: only these slots keep every cap
            masked = np.full(delta.shape[0], np.inf)
            masked[allowed] = delta[allowed, 0]
            delta = masked[:, None]
        slot = int(np.argmin(delta[:, 0]))
        return float(delta[slot, 0]), slot, (Q[:, 0], float(sigma[0]))

    def _replace(self, slot: int, a_j: np.ndarray, b_j: float, payload: Any) -> None:
        q, sigma = payload
        Hi = self.Hi
        d = Hi[slot, slot]
        h = Hi[:, slot].copy()
        # Remove the slot (Hi - h h^T / d on the other slots), then border with j:
        # q and s for S \ {i} are q' = q - h q_i / d (slot entry dropped) and
        # s' = s + q_i^2 / d. Both rank-one terms in one pass over Hi.
        q_red = q - h * (q[slot] / d)
        q_red[slot] = 0.0
        s_red = sigma + q[slot] ** 2 / d
        sym_rank2_update(Hi, h, -1.0 / d, q_red, 1.0 / s_red)
        Hi[:, slot] = -q_red / s_red
        Hi[slot, :] = -q_red / s_red
        Hi[slot, slot] = 1.0 / s_red


class _WoodburySystem(_SupportSystem):
    """``Hi = (I - A_S^T M^{-1} A_S) / l2`` with ``M = l2 I + A_S A_S^T`` (n x n), for k > n.

    A swap changes M by a rank-two term: two Sherman-Morrison updates of
    ``M^{-1}`` (O(n^2)) and of the stored ``e_s = a_s^T M^{-1} a_s`` (O(n k)).
    Scoring m candidates costs O(n^2 m + n k m) instead of O(k^2 m):
    ``Q = A_S^T M^{-1} A_J`` and ``s_j = l2 (1 + a_j^T M^{-1} a_j)``.
    """

    # a refresh forms A_S A_S^T (O(n^2 k)): much dearer than the dense one
    refresh_every = 4 * _REFRESH_EVERY

    def _factor(self) -> None:
        P = self.problem
        n = P.n
        diag_scale = float(np.mean(P.col_sq_norms[self.support])) if self.support.size else 1.0
        self.reg = 0.0
        self.l2 = P.l2
        if P.l2 <= 1e-10 * max(diag_scale, 1e-300):
            # no ridge: a tiny one for scoring only (callers refit exactly)
            self.reg = _REL_REG
            self.l2 = P.l2 + _REL_REG * max(diag_scale, 1e-300)
        M = self.BS @ self.BS.T
        M[np.diag_indices(n)] += self.l2
        self.Minv = _spd_inverse(M)
        # e_s = a_s^T M^{-1} a_s by column blocks: Minv @ BS whole would be
        # another n x k float64 array at the peak of the solve.
        k = self.BS.shape[1]
        self.e = np.empty(k)
        for start in range(0, k, _E_BLOCK):
            block = self.BS[:, start : start + _E_BLOCK]
            self.e[start : start + _E_BLOCK] = np.einsum("ij,ij->j", block, self.Minv @ block)

    def h_jj(self, col_sq: np.ndarray) -> np.ndarray:
        return col_sq + self.l2

    def _update_point(self, refine: bool = False) -> None:
        # w_S = Hi b in Woodbury form. The form subtracts two large, nearly equal
        # vectors and loses digits when A_S has badly scaled columns or l2 is
        # small against A_S^T A_S, so iterative refinement follows every update
        # until the gradient on the support (the normal-equation residual) is
        # at rounding level: the swap scores assume g_S = 0, and with one step
        # only after resets a gradient of 1e2 on the support (MLPNet-like, k > n,
        # l2 = 0.1) made the search stop at once with 50 improving swaps left.
        # The residual is recomputed from w_S so that the objective is exactly
        # that of the point held.
        P, BS, Minv, l2 = self.problem, self.BS, self.Minv, self.l2

        def apply_hi(v: np.ndarray) -> np.ndarray:
            return (v - BS.T @ (Minv @ (BS @ v))) / l2

        wS = apply_hi(self.b)
        target = _WOODBURY_RTOL * float(np.linalg.norm(self.b))
        for _ in range(_WOODBURY_STEPS):
            residual = self.b - BS.T @ (BS @ wS) - l2 * wS
            if float(np.linalg.norm(residual)) <= target:
                break
            wS += apply_hi(residual)
        else:
            # refinement did not converge (columns scaled over ~1e7 against l2):
            # the held point is inexact, so the caller must finish with a refit
            self.inexact = True
        self.wS = wS
        self.r = P.y - BS @ wS

    def refine(self) -> None:
        self._update_point(refine=True)

    def diag(self) -> np.ndarray:
        return (1.0 - self.e) / self.l2

    def q_sigma(
        self, BJ: np.ndarray, col_sq: np.ndarray, slots: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        U = self.Minv @ BJ
        # only the scored slots: the whole k x m table can outgrow A itself
        Q = (self.BS if slots is None else self.BS[:, slots]).T @ U
        return Q, self.l2 * (1.0 + np.einsum("ij,ij->j", BJ, U))

    def best_entry(
        self, j: int, slots: np.ndarray | None = None, allowed: np.ndarray | None = None
    ) -> tuple[float, int, Any]:
        # q = A_S^T M^{-1} a_j costs a pass over the scored slots' columns
        if allowed is not None:  # group caps: only these slots keep every cap
            slots = allowed
        a_j, g_j = self._entry_gradient(j)
        u = self.Minv @ a_j
        sigma = np.array([self.l2 * (1.0 + float(a_j @ u))])
        if slots is None:
            slots = np.arange(self.support.size)
            q = self.BS.T @ u
        else:
            q = self.BS[:, slots].T @ u
        delta = _swap_deltas(self.wS[slots], self.diag()[slots], np.array([g_j]), q[:, None],
                             sigma, self.h_jj(self.problem.col_sq_norms[j : j + 1]))
        best = int(np.argmin(delta[:, 0]))
        return float(delta[best, 0]), int(slots[best]), u

    def _replace(self, slot: int, a_j: np.ndarray, b_j: float, payload: Any) -> None:
        u = payload  # M^{-1} a_j before the swap
        a_i = self.BS[:, slot].copy()
        # remove a_i:  M' = M - a_i a_i^T,  M'^{-1} = M^{-1} + u1 u1^T / g1
        u1 = self.Minv @ a_i
        g1 = 1.0 - float(a_i @ u1)
        # add a_j:     M'' = M' + a_j a_j^T, M''^{-1} = M'^{-1} - u2 u2^T / g2
        u2 = u + u1 * (float(u1 @ a_j) / g1)
        g2 = 1.0 + float(a_j @ u2)
        sym_rank2_update(self.Minv, u1, 1.0 / g1, u2, -1.0 / g2)
        self.BS[:, slot] = 0.0
        T = self.BS.T @ np.column_stack([u1, u2])  # one pass over A_S for both terms
        T[slot, 0] = float(a_i @ u1)
        self.e += T[:, 0] ** 2 / g1 - T[:, 1] ** 2 / g2
        self.e[slot] = (g2 - 1.0) / g2


def _spd_inverse(M: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, overwriting ``M`` (no n x n temporaries).

    Cholesky then ``potri`` in place; raises ``numpy.linalg.LinAlgError`` like
    ``cho_factor`` when ``M`` is not positive definite.
    """
    from scipy.linalg import lapack

    M = np.asfortranarray(M)
    c, info = lapack.dpotrf(M, lower=1, overwrite_a=1, clean=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix not positive definite (potrf info {info})")
    inv, info = lapack.dpotri(c, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (potri info {info})")
    # potri fills the lower triangle only
    upper = np.triu_indices_from(inv, 1)
    inv[upper] = inv.T[upper]
    return inv


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


def _swap_deltas(
    wS: np.ndarray,
    d: np.ndarray,
    g: np.ndarray,
    Q: np.ndarray,
    sigma: np.ndarray,
    h_jj: np.ndarray,
    slots: np.ndarray | None = None,
) -> np.ndarray:
    """Exact change of the optimal f for each (slot i, candidate j) swap, shape (|slots|, |J|).

    ``d`` is the diagonal of ``Hi``, ``Q`` is ``Hi A_S^T A_J`` and ``sigma`` the
    Schur complements of the candidates against the full support.
    """
    if slots is not None:
        wS, d, Q = wS[slots], d[slots], Q[slots]
    g_after = g[None, :] - (wS / d)[:, None] * Q
    s_after = sigma[None, :] + Q**2 / d[:, None]
    floor = 1e-12 * h_jj[None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (0.5 * wS**2 / d)[:, None] - 0.5 * g_after**2 / np.where(
            s_after > floor, s_after, np.inf
        )


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
