"""The big-M of the MIP: a bound ``M`` on ``|w_i|`` and whether it is proven.

The certificate of :func:`~chita_opt.reference.solve_mip` holds only when
some minimiser of f lies in the box ``|w_i| <= M``; this module derives such
an ``M`` from curvature bounds or support enumeration, or falls back to a
(not proven) multiple of a heuristic solution. Derivations are in
``docs/exact_solving.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..problem import L0Problem
from ._spectral import EIG_RTOL, Spectral

__all__ = ["BigM", "derive_big_m"]

#: Enumerate per-support curvature for the big-M only below this many supports.
_ENUMERATE_LIMIT = 200_000
#: Heuristic big-M: this many times the largest |w| of the heuristic solution.
_SAFETY = 4.0

@dataclass(frozen=True)
class BigM:
    """A bound ``M`` on ``|w_i|`` and why it holds.

    ``source`` is "curvature" (valid, from a restricted-eigenvalue bound),
    "enumerated" (valid, per-support curvature by enumeration) or "heuristic"
    (a multiple of a heuristic solution: not proven). ``valid`` tells whether
    some minimiser of f is guaranteed to satisfy ``|w_i| <= M``.
    """

    value: float
    source: str
    valid: bool
    eta: float = 0.0
    unbounded_support: np.ndarray | None = None


def _level_set_radius(beta: np.ndarray | float, eta: np.ndarray | float, gap: float):
    """Largest ``t`` with ``eta/2 t^2 - beta t - gap <= 0`` (``gap = U - K``)."""
    disc = np.maximum(np.asarray(beta) ** 2 + 2.0 * np.asarray(eta) * gap, 0.0)
    return (np.asarray(beta) + np.sqrt(disc)) / np.asarray(eta)


def _gershgorin_k(H: np.ndarray, k: int) -> float:
    """Lower bound on ``lambda_min(H_SS)`` over all ``|S| = k`` (Gershgorin discs)."""
    if k <= 1:
        return float(np.min(np.diag(H)))
    off = np.abs(H)
    np.fill_diagonal(off, 0.0)
    m = min(k - 1, H.shape[0] - 1)
    largest = -np.partition(-off, m - 1, axis=1)[:, :m]
    return float(np.min(np.diag(H) - largest.sum(axis=1)))


def derive_big_m(
    problem: L0Problem,
    *,
    upper: float,
    spectral: Spectral | None = None,
    heuristic: np.ndarray | None = None,
) -> BigM:
    """Derive ``M`` with ``|w_i| <= M`` for some minimiser (see ``docs/exact_solving.md``).

    With ``H = A^T A + l2 I``, ``b = A^T y + l2 w_bar - c`` and
    ``K = 1/2||y||^2 + (l2/2)||w_bar||^2``, ``f(w) = K - b^T w + 1/2 w^T H w``.
    If ``eta <= lambda_min(H_SS)`` for every ``|S| = k`` and ``beta`` is the norm
    of the ``k`` largest ``|b_i|``, the minimiser on the optimal support is
    ``H_SS^{-1} b_S``, of norm at most ``beta / eta``; and every ``k``-sparse
    ``w`` with ``f(w) <= upper`` satisfies ``eta/2 ||w||^2 - beta ||w|| + K -
    upper <= 0``, hence ``||w|| <= (beta + sqrt(beta^2 + 2 eta (upper - K))) /
    eta``. ``M`` is the smaller of the two.
    """
    spec = spectral if spectral is not None else Spectral.of(problem)
    A = np.asarray(problem.A, dtype=np.float64)
    k, p, l2 = problem.k, problem.p, problem.l2
    b = A.T @ problem.y + l2 * problem.w_bar - problem.c
    K = 0.5 * problem.y_sq_norm + 0.5 * l2 * float(problem.w_bar @ problem.w_bar)
    gap = upper - K
    eta = l2 + spec.reliable_lam_min()
    if p <= 4000:  # the Gershgorin bound needs the p x p Gram matrix
        H = A.T @ A
        H[np.diag_indices_from(H)] += l2
        eta = max(eta, _gershgorin_k(H, k))
    scale = max(spec.lam_max + l2, 1e-300)
    valid: list[BigM] = []
    if eta > 1e-9 * scale:
        beta = float(np.sqrt(np.sum(np.sort(b * b)[::-1][:k])))
        # Two valid bounds; the first needs no incumbent: the minimiser on a
        # support is H_SS^{-1} b_S, of norm at most ||b_S|| / eta.
        M = min(beta / eta, float(_level_set_radius(beta, eta, gap)))
        valid.append(BigM(_positive(M * (1 + 1e-6)), "curvature", True, eta))
    if math.comb(p, k) <= _ENUMERATE_LIMIT:
        # Per-support curvature is often far larger than the global bound (an
        # ill-conditioned A^T A with well-conditioned k-subsets), and a smaller
        # M both tightens the relaxation and keeps the solver's integrality
        # tolerance from letting w_i leak through z_i ~ 1e-6.
        enumerated = _enumerated_big_m(A, b, k, gap, l2, 1e-8 * (abs(K) + abs(upper)))
        if enumerated.unbounded_support is not None:
            return enumerated
        valid.append(replace(enumerated, eta=eta))
    if valid:
        return min(valid, key=lambda m: m.value)
    # No bound can be derived: a multiple of the heuristic solution.
    ref = float(np.max(np.abs(heuristic))) if heuristic is not None and np.any(heuristic) else 0.0
    if ref == 0.0:  # nothing to scale from: the largest one-coordinate fit
        curv = np.maximum(problem.col_sq_norms + l2, 1e-300)
        ref = float(np.max(np.abs(b) / curv))
    return BigM(_positive(_SAFETY * ref), "heuristic", False, 0.0)


def _positive(M: float) -> float:
    return M if np.isfinite(M) and M > 0 else 1.0


def _enumerated_big_m(
    A: np.ndarray, b: np.ndarray, k: int, gap: float, l2: float, slack: float
) -> BigM:
    """The tightest valid M, by enumerating every support (only for few supports).

    On each support ``S`` the minimum-norm minimiser ``w_S = H_SS^+ b_S`` and
    its value ``f_S = K - 1/2 b_S^T H_SS^+ b_S`` are computed from an
    eigendecomposition. The optimal support has ``f_S = f* <= upper``, so
    ``M = max |w_S|`` over the supports with ``f_S <= upper`` (``gap = upper -
    K``, plus ``slack`` for rounding) contains a minimiser. With ``l2 = 0`` it
    also detects unboundedness (``b_S`` outside the range of ``H_SS``).
    """
    from .brute_force import _batches

    H = A.T @ A
    if l2:
        H[np.diag_indices_from(H)] += l2
    p = H.shape[0]
    M = 0.0
    for idx in _batches(p, k):
        Hs = H[idx[:, :, None], idx[:, None, :]]
        bs = b[idx]
        evals, evecs = np.linalg.eigh(Hs)
        top = np.maximum(evals[:, -1], 1.0)
        keep = evals > (top * EIG_RTOL * k)[:, None]
        coef = np.einsum("mji,mj->mi", evecs, bs)
        outside = np.sum(np.where(keep, 0.0, coef * coef), axis=1)
        bnorm = np.sqrt(np.einsum("ij,ij->i", bs, bs))
        unb = np.sqrt(np.maximum(outside, 0.0)) > 1e-8 * np.maximum(bnorm, 1.0)
        if l2 == 0.0 and np.any(unb):
            return BigM(1.0, "enumerated", True, 0.0, idx[int(np.flatnonzero(unb)[0])])
        scaled = np.where(keep, coef / np.where(keep, evals, 1.0), 0.0)
        decrease = 0.5 * np.sum(scaled * coef, axis=1)  # K - f_S
        ok = -decrease <= gap + slack  # supports that can match the incumbent
        if np.any(ok):
            w_s = np.einsum("mij,mj->mi", evecs[ok], scaled[ok])
            M = max(M, float(np.max(np.abs(w_s))))
    return BigM(_positive(M * (1 + 1e-6)), "enumerated", True, 0.0)
