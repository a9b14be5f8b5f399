"""Is f unbounded below on some feasible support?

With ``l2 = 0``, f is unbounded below on a support S exactly when some ``v``
supported in S has ``A v = 0`` and ``c^T v < 0`` (then ``f(w + t v) -> -inf``).
Such a ``v`` exists for some S with ``|S| <= k`` when:

* ``c`` is not in the range of ``A^T`` (else ``c^T v = u^T A v = 0`` for
  every null vector) -- this test is exact and decides boundedness for every k;
* and, with ``r = rank(A)``: ``k > r`` (the null space is spanned by vectors
  each supported on ``r + 1`` columns: a basis plus one more, and one of them
  has ``c^T v != 0``), exact; or, for ``k <= r``, a null vector on at most k
  columns. Finding the sparsest one is NP-hard, so for ``k <= r`` only the
  common cases are searched: zero columns, parallel column pairs, and every
  support when there are at most ``_ENUMERATE_LIMIT`` of them. The template
  (``_base``) also checks the support each optimiser ends on.

Everything runs on the column-normalised matrix so that scale does not
decide rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.linalg as sla

from ..problem import L0Problem

__all__ = ["Unbounded", "find_unbounded", "unbounded_on"]

_RANK_RTOL = 1e-10  # singular values below this times the largest count as zero
_GRAM_RTOL = 1e-13  # the same, on eigenvalues of a Gram matrix (large problems)
_SVD_MAX_SIZE = 1_000_000  # entries of A up to which the rank comes from an SVD
_RANGE_RTOL = 1e-8  # c is in range(A^T) when its residual is below this (relative)
_PAIR_MAX_P = 4096  # parallel-pair search forms a p x p Gram matrix
_ENUMERATE_LIMIT = 2000


@dataclass(frozen=True)
class Unbounded:
    """A witness: ``direction`` (length p) with ``A d = 0``, ``c^T d < 0``, on ``support``."""

    support: np.ndarray
    direction: np.ndarray
    reason: str


def _normalised(problem: L0Problem) -> tuple[np.ndarray, np.ndarray]:
    A = np.asarray(problem.A, dtype=np.float64)
    m = np.max(np.abs(A), axis=0)
    m[m == 0] = 1.0
    d = m * np.linalg.norm(A / m, axis=0)  # no over/underflow of the squares
    d[d == 0] = 1.0
    return A / d, d


def _witness(v: np.ndarray, d: np.ndarray, c: np.ndarray, reason: str) -> Unbounded:
    direction = v / d  # back to the user's coordinates (w = u / d)
    direction[np.abs(direction) <= 1e-14 * np.max(np.abs(direction))] = 0.0
    if c @ direction > 0:
        direction = -direction
    return Unbounded(np.flatnonzero(direction), direction, reason)


def _range_basis(B: np.ndarray) -> np.ndarray:
    """Orthonormal basis of range(B^T) (p x r)."""
    n, p = B.shape
    if n * p <= _SVD_MAX_SIZE:
        _, sig, Vt = np.linalg.svd(B, full_matrices=False)
        return Vt[sig > _RANK_RTOL * max(float(sig[0]), 1e-300)].T
    # Large: the eigenvalues of the smaller Gram matrix carry absolute errors
    # near eps * lambda_max, so singular values below ~1e-7 sigma_max cannot
    # be told from zero this way.
    G = B @ B.T if n <= p else B.T @ B
    lam, U = np.linalg.eigh(G)
    keep = lam > _GRAM_RTOL * max(float(lam[-1]), 1e-300)
    return (B.T @ U[:, keep]) / np.sqrt(lam[keep]) if n <= p else U[:, keep]


def find_unbounded(problem: L0Problem) -> Unbounded | None:
    """A feasible unbounded direction of f, or None if none was found (see module doc)."""
    P = problem
    if P.l2 > 0 or not P.has_c or P.k == 0:
        return None
    B, d = _normalised(P)
    cs = P.c / d
    zero = np.flatnonzero((np.max(np.abs(B), axis=0) == 0) & (cs != 0))
    if zero.size:
        j = int(zero[0])
        v = np.zeros(P.p)
        v[j] = 1.0
        return _witness(v, d, P.c, f"column {j} of A is zero and c[{j}] != 0")
    V = _range_basis(B)
    rank = V.shape[1]
    c_perp = cs - V @ (V.T @ cs)
    if np.linalg.norm(c_perp) <= _RANGE_RTOL * np.linalg.norm(cs):
        return None  # c in range(A^T): f is bounded below on every support
    if P.k > rank:
        return _basis_circuit(B, cs, d, P.c, rank, P.k)
    pair = _parallel_pair(B, cs, d, P.c) if P.k >= 2 else None
    return pair or _enumerate(B, cs, d, P.c, P.k)


def _basis_circuit(B, cs, d, c, rank, k) -> Unbounded:
    # B[:, perm] = Q R with the first `rank` pivots a basis; every other column
    # j is B_basis x_j, so v_j = e_j - basis x_j is a null vector on rank + 1
    # columns. Some v_j has c^T v_j != 0 (else c would be in range(A^T)).
    p = B.shape[1]
    _, R, perm = sla.qr(B, mode="economic", pivoting=True)
    basis, rest = perm[:rank], perm[rank:]
    X = sla.solve_triangular(R[:rank, :rank], R[:rank, rank:])
    t = cs[rest] - X.T @ cs[basis]
    col = int(np.argmax(np.abs(t)))
    v = np.zeros(p)
    v[rest[col]] = 1.0
    v[basis] = -X[:, col]
    return _witness(v, d, c, f"l2 = 0, k = {k} > rank(A) = {rank} and c is not in the range "
                             "of A^T: f decreases without bound along a null vector of A")


def _parallel_pair(B, cs, d, c) -> Unbounded | None:
    p = B.shape[1]
    if p > _PAIR_MAX_P:
        return None
    C = B.T @ B
    np.fill_diagonal(C, 0.0)
    i_idx, j_idx = np.nonzero(np.triu(np.abs(C) >= 1.0 - 1e-12))
    for i, j in zip(i_idx, j_idx, strict=True):
        sign = np.sign(C[i, j])
        if abs(cs[i] - sign * cs[j]) > _RANGE_RTOL * max(abs(cs[i]), abs(cs[j])):
            v = np.zeros(p)
            v[i], v[j] = 1.0, -sign
            return _witness(v, d, c, f"columns {i} and {j} of A are parallel and c does not "
                                     "weigh them alike (l2 = 0)")
    return None


def _enumerate(B, cs, d, c, k) -> Unbounded | None:
    p = B.shape[1]
    if math.comb(p, k) > _ENUMERATE_LIMIT:
        return None
    for S in combinations(range(p), k):
        idx = list(S)
        _, sig, Vt = np.linalg.svd(B[:, idx])
        null = Vt[int(np.sum(sig > _RANK_RTOL * sig[0])):]
        if null.size == 0:
            continue
        proj = null.T @ (null @ cs[idx])
        if np.linalg.norm(proj) > _RANGE_RTOL * np.linalg.norm(cs[idx]):
            v = np.zeros(p)
            v[idx] = proj
            return _witness(v, d, c, f"l2 = 0 and c has a component in the null space of "
                                     f"A restricted to columns {idx}")
    return None


def unbounded_on(problem: L0Problem, support: np.ndarray) -> Unbounded | None:
    """The witness on one support (rank from an SVD of its normalised columns), or None."""
    P = problem
    if P.l2 > 0 or not P.has_c or support.size == 0:
        return None
    idx = np.asarray(support, dtype=np.int64)
    A_S = np.asarray(P.A[:, idx], dtype=np.float64)
    m = np.max(np.abs(A_S), axis=0)
    m[m == 0] = 1.0
    d = m * np.linalg.norm(A_S / m, axis=0)
    d[d == 0] = 1.0
    cs = P.c[idx] / d
    _, sig, Vt = np.linalg.svd(A_S / d)
    null = Vt[int(np.sum(sig > _RANK_RTOL * max(float(sig.max(initial=0.0)), 1e-300))):]
    if null.size == 0:
        return None
    proj = null.T @ (null @ cs)
    if np.linalg.norm(proj) <= _RANGE_RTOL * np.linalg.norm(cs):
        return None
    v = np.zeros(P.p)
    v[idx] = proj
    d_full = np.ones(P.p)
    d_full[idx] = d
    return _witness(v, d_full, P.c, "l2 = 0 and c has a component in the null space of A "
                                    f"restricted to columns {idx.tolist()}")
