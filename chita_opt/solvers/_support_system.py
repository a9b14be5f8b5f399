"""The state of the swap search on a support: ``(A_S^T A_S + l2 I)^{-1}`` kept up to date.

Two forms of the same system (:mod:`chita_opt.solvers.swap` picks one): the
explicit k x k inverse (``_DenseSystem``), and for k > n the n x n Woodbury
form (``_WoodburySystem``), which refines its point iteratively. Both score
swaps exactly and update by rank-one terms after each swap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla

from .._kernels.linalg import gather_columns, sym_rank2_update
from ..problem import L0Problem

_REFRESH_EVERY = 64
_DENSE_UP_TO = 256  # supports this small always use the explicit k x k inverse
_REL_REG = 1e-9
_E_BLOCK = 512  # columns per block when forming e = diag(A_S^T M^-1 A_S)
# Iterative refinement of the Woodbury point: relative target and most steps.
_WOODBURY_RTOL = 1e-10
_WOODBURY_STEPS = 4


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
