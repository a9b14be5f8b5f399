"""Exact minimisation of f over a fixed support (the "backsolve").

On a support S of size s the problem is the ridge least squares

    min_{w_S}  1/2 ||y - A_S w_S||^2 + (l2/2) ||w_S - w_bar_S||^2 + c_S^T w_S

with normal equations (A_S^T A_S + l2 I) w_S = b,  b = A_S^T y + l2 w_bar_S - c_S.

* s <= n: Cholesky of the s x s Gram matrix, O(n s^2 + s^3).
* s >  n and l2 > 0: Woodbury,
      (A_S^T A_S + l2 I)^{-1} = (1/l2) (I - A_S^T (l2 I + A_S A_S^T)^{-1} A_S),
  an n x n system, O(n^2 s + n^3); the Gram A_S A_S^T is accumulated over
  column chunks so no s x s (or n x s float64) array is ever formed.
* l2 = 0 with a rank-deficient A_S: the minimum-norm minimiser; if c_S has a
  component in the null space of A_S the objective is unbounded below.

The Gram matrix does not depend on l2. ``refit(..., keep_gram=True)`` (the
iterative methods' starting point) keeps it in the problem's ``_a_cache``,
which every problem over the same ``A`` shares: the pruning pipeline solves one
gradient matrix at up to five dampings, each from the same magnitude support,
and forming that Gram was up to 38% of a solve (docs/algorithms.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .._kernels.linalg import support_matvec, support_rmatvec
from ..problem import L0Problem, _readonly

__all__ = ["RefitResult", "refit"]

_CHUNK = 512  # columns per float64 block of the Woodbury Gram (n x 512 x 8 bytes)
_REFINEMENT_STEPS = 2
_REFINEMENT_RTOL = 1e-13
_DENSE_FALLBACK_MAX = 4096  # largest support solved densely when the Woodbury form breaks down
_KEPT_GRAM_MAX = 2048  # keep_gram: only Grams up to this order (32 MiB of float64)


@dataclass(frozen=True)
class RefitResult:
    """``w`` (full length p) minimising f on the support, and whether f is bounded there."""

    w: np.ndarray
    bounded: bool = True


def _chunks(support: np.ndarray):
    for start in range(0, support.size, _CHUNK):
        yield support[start : start + _CHUNK]


def _rhs(problem: L0Problem, support: np.ndarray) -> np.ndarray:
    b = support_rmatvec(problem.A, support, problem.y)
    if problem.l2:
        b += problem.l2 * problem.w_bar[support]
    if problem.has_c:
        b -= problem.c[support]
    return b


def refit(problem: L0Problem, support: np.ndarray, *, keep_gram: bool = False) -> RefitResult:
    """Exact minimiser of ``f`` with ``w`` restricted to ``support``.

    ``keep_gram``: keep this support's Gram matrix for the next refit on the
    same support of any problem over the same ``A`` (one kept per ``A``, the
    last asked for; see the module docstring). The result is the same either way.
    """
    p, n = problem.p, problem.n
    support = np.asarray(support, dtype=np.int64)
    w = np.zeros(p)
    s = support.size
    if s == 0:
        return RefitResult(w)
    b = _rhs(problem, support)
    l2 = problem.l2
    if s <= n or l2 == 0.0:
        if s > 4 * n and l2 == 0.0:
            return _min_norm_wide(problem, support, b)
        H = _gram(problem, support, keep_gram, _columns_gram)
        if l2:
            H[np.diag_indices_from(H)] += l2
            w[support] = _ridge_solve(H, b)
            return RefitResult(w)
        return _min_norm_from_gram(H, b, support, w)
    try:
        w[support] = _woodbury_solve(problem, support, b, keep_gram)
    except np.linalg.LinAlgError:
        # l2 lost to rounding against A_S A_S^T (columns of huge norm): the
        # n x n form is singular at this precision; the s x s one is not
        if s > _DENSE_FALLBACK_MAX:
            raise
        A_S = np.asarray(problem.A[:, support], dtype=np.float64)
        H = A_S.T @ A_S
        H[np.diag_indices_from(H)] += l2
        w[support] = _ridge_solve(H, b)
    return RefitResult(w)


def refit_or_centre(problem: L0Problem, support: np.ndarray) -> np.ndarray:
    """The exact refit on ``support`` as a start point; ``w_bar`` on it where that is unbounded.

    Start points recur across problems over one ``A`` (a damping search), so
    the support's Gram matrix is kept (``refit(keep_gram=True)``).
    """
    res = refit(problem, support, keep_gram=True)
    if res.bounded:
        return res.w
    w = np.zeros(problem.p)
    w[support] = problem.w_bar[support]
    return w


def _ridge_solve(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``H x = b`` for a positive definite ``H`` (ridge added), robust to column scales.

    Jacobi-scaled first: columns whose norms differ by many orders of magnitude
    make the leading minors of ``H`` lose positivity to rounding, and the scaled
    matrix has a unit diagonal. If Cholesky still fails (``H`` numerically
    singular at this precision), the eigen-decomposition solves on the range.
    """
    d = np.sqrt(H.diagonal())
    Hs = H / d[:, None] / d[None, :]
    bs = b / d
    try:
        return sla.solve(Hs, bs, assume_a="pos", check_finite=False) / d
    except np.linalg.LinAlgError:
        evals, evecs = np.linalg.eigh(Hs)
        keep = evals > max(float(evals[-1]), 1.0) * 1e-14 * H.shape[0]
        return (evecs[:, keep] @ ((evecs[:, keep].T @ bs) / evals[keep])) / d


def _columns_gram(A: np.ndarray, support: np.ndarray) -> np.ndarray:
    """``A_S^T A_S`` (s x s, float64)."""
    A_S = np.asarray(A[:, support], dtype=np.float64)
    return A_S.T @ A_S


def _rows_gram(A: np.ndarray, support: np.ndarray) -> np.ndarray:
    """``A_S A_S^T`` (n x n, float64), accumulated over column chunks."""
    n = A.shape[0]
    M = np.zeros((n, n))
    for idx in _chunks(support):
        block = np.asarray(A[:, idx], dtype=np.float64)
        M += block @ block.T
    return M


def _gram(
    problem: L0Problem, support: np.ndarray, keep: bool,
    form: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """``form(A, support)`` (a new array), or a copy of the one kept for this support."""
    kept = problem._a_cache.get("gram")
    if kept is not None and kept[0] is form and np.array_equal(kept[1], support):
        return kept[2].copy()
    G = form(problem.A, support)
    if keep and G.shape[0] <= _KEPT_GRAM_MAX:
        problem._a_cache["gram"] = (form, support.copy(), _readonly(G.copy()))
    return G


def _woodbury_solve(
    problem: L0Problem, support: np.ndarray, b: np.ndarray, keep_gram: bool = False
) -> np.ndarray:
    A, l2 = problem.A, problem.l2
    M = _gram(problem, support, keep_gram, _rows_gram)
    M[np.diag_indices_from(M)] += l2
    factor = sla.cho_factor(M, check_finite=False)

    # Products with A_S straight from A (float64 accumulation): no n x s
    # float64 copy per product, which cost more than the products themselves.
    def times_a(v: np.ndarray) -> np.ndarray:
        return support_matvec(A, support, v)

    def times_at(u: np.ndarray) -> np.ndarray:
        return support_rmatvec(A, support, u)

    def apply_inverse(v: np.ndarray) -> np.ndarray:
        return (v - times_at(sla.cho_solve(factor, times_a(v), check_finite=False))) / l2

    w = apply_inverse(b)
    # Iterative refinement: the Woodbury form subtracts two nearly equal
    # vectors and loses digits when columns are badly scaled. Each step costs
    # four passes over A_S, so stop once the residual is at rounding level.
    target = _REFINEMENT_RTOL * float(np.linalg.norm(b))
    for _ in range(_REFINEMENT_STEPS):
        residual = b - times_at(times_a(w)) - l2 * w
        if float(np.linalg.norm(residual)) <= target:
            break
        w += apply_inverse(residual)
    return w


def _min_norm_from_gram(
    H: np.ndarray, b: np.ndarray, support: np.ndarray, w: np.ndarray
) -> RefitResult:
    # Gram H = A_S^T A_S is PSD. Jacobi-scale it first so that a badly scaled
    # (tiny but informative) column is not mistaken for the null space, then
    # eigen-decompose and solve on the range.
    d = np.sqrt(H.diagonal())
    d[d == 0] = 1.0
    Hs = H / np.outer(d, d)
    bs = b / d
    evals, evecs = np.linalg.eigh(Hs)
    scale = max(float(evals[-1]), 1.0)
    keep = evals > scale * 1e-12 * H.shape[0]
    coef = evecs[:, keep].T @ bs
    w[support] = (evecs[:, keep] @ (coef / evals[keep])) / d
    residual = bs - evecs[:, keep] @ coef
    bounded = bool(np.linalg.norm(residual) <= 1e-8 * max(np.linalg.norm(bs), 1.0))
    return RefitResult(w, bounded)


def _min_norm_wide(problem: L0Problem, support: np.ndarray, b: np.ndarray) -> RefitResult:
    # s >> n and no ridge: minimum-norm solution (in column-scaled coordinates)
    # through the SVD of A_S (n x s).
    A_S = np.asarray(problem.A[:, support], dtype=np.float64)
    d = np.linalg.norm(A_S, axis=0)
    d[d == 0] = 1.0
    _, sig, Vt = np.linalg.svd(A_S / d, full_matrices=False)
    keep = sig > max(float(sig[0]), 1.0) * 1e-12 * max(A_S.shape)
    V = Vt[keep].T
    bs = b / d
    coef = V.T @ bs
    w = np.zeros(problem.p)
    w[support] = (V @ (coef / sig[keep] ** 2)) / d
    residual = bs - V @ coef
    bounded = bool(np.linalg.norm(residual) <= 1e-8 * max(np.linalg.norm(bs), 1.0))
    return RefitResult(w, bounded)
