"""Support-restricted products with ``A`` (float64 accumulation, no copies of ``A``)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _support_matvec_rows(A, support, values):  # pragma: no cover - jitted
    # A: (n, p) C-ordered; support: (s,) int64; values: (s,) float64 -> (n,) float64
    n = A.shape[0]
    s = support.shape[0]
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        acc = 0.0
        for t in range(s):
            acc += A[i, support[t]] * values[t]
        out[i] = acc
    return out


@njit(cache=True, nogil=True)
def _support_matvec_cols(A, support, values):  # pragma: no cover - jitted
    # A: (n, p) F-ordered: each column is contiguous.
    n = A.shape[0]
    s = support.shape[0]
    out = np.zeros(n, dtype=np.float64)
    for t in range(s):
        j = support[t]
        v = values[t]
        if v != 0.0:
            for i in range(n):
                out[i] += A[i, j] * v
    return out


@njit(cache=True, nogil=True)
def _support_rmatvec_rows(A, support, r):  # pragma: no cover - jitted
    # returns A[:, support]^T r, (s,) float64, for C-ordered A
    n = A.shape[0]
    s = support.shape[0]
    out = np.zeros(s, dtype=np.float64)
    for i in range(n):
        ri = r[i]
        for t in range(s):
            out[t] += A[i, support[t]] * ri
    return out


@njit(cache=True, nogil=True)
def _support_rmatvec_cols(A, support, r):  # pragma: no cover - jitted
    n = A.shape[0]
    s = support.shape[0]
    out = np.zeros(s, dtype=np.float64)
    for t in range(s):
        j = support[t]
        acc = 0.0
        for i in range(n):
            acc += A[i, j] * r[i]
        out[t] = acc
    return out


@njit(cache=True, nogil=True)
def dense_cols_matvec(B, values):  # pragma: no cover - jitted
    """``B @ values`` for an F-ordered ``B`` (any float dtype), accumulated in float64."""
    n, m = B.shape
    out = np.zeros(n, dtype=np.float64)
    for t in range(m):
        v = values[t]
        if v != 0.0:
            for i in range(n):
                out[i] += B[i, t] * v
    return out


class SupportColumns:
    """A contiguous copy of ``A[:, S]`` for a support that changes a few columns at a time.

    ``A_S v`` from strided rows reads every cache line of ``A`` once ``|S| / p``
    exceeds about 1/16 -- as dear as a full pass. From the copy it reads
    ``|S| / p`` of the data. Moving to a new support replaces only the columns
    that changed (the slot of a leaving column takes an entering one), so an
    iterative method whose support has settled pays almost nothing for it.
    Memory: ``n x |S|`` in the dtype of ``A``.
    """

    def __init__(self, A: np.ndarray, support: np.ndarray) -> None:
        self.A = A
        self.columns = np.array(support, dtype=np.int64)
        self.B = gather_columns(A, self.columns, dtype=A.dtype)

    def move_to(self, support: np.ndarray) -> None:
        """Hold ``support`` (same size) from now on, re-reading only the columns that changed."""
        support = np.asarray(support, dtype=np.int64)
        if support.size != self.columns.size:
            raise ValueError(f"support: expected {self.columns.size} columns, got {support.size}")
        leaving = ~np.isin(self.columns, support, assume_unique=True)
        if not leaving.any():
            return
        entering = np.setdiff1d(support, self.columns, assume_unique=True)
        slots = np.flatnonzero(leaving)
        self.columns[slots] = entering
        self.B[:, slots] = self.A[:, entering]

    def matvec(self, w: np.ndarray) -> np.ndarray:
        """``A_S w_S`` for a full-length ``w`` (float64)."""
        return dense_cols_matvec(self.B, np.ascontiguousarray(w[self.columns], dtype=np.float64))


def support_matvec(A: np.ndarray, support: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``A[:, support] @ values`` in float64 without gathering the columns."""
    support = np.ascontiguousarray(support, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if A.flags.f_contiguous and not A.flags.c_contiguous:
        return _support_matvec_cols(A, support, values)
    return _support_matvec_rows(np.ascontiguousarray(A), support, values)


def support_rmatvec(A: np.ndarray, support: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``A[:, support].T @ r`` in float64 without gathering the columns."""
    support = np.ascontiguousarray(support, dtype=np.int64)
    r = np.ascontiguousarray(r, dtype=np.float64)
    if A.flags.f_contiguous and not A.flags.c_contiguous:
        return _support_rmatvec_cols(A, support, r)
    return _support_rmatvec_rows(np.ascontiguousarray(A), support, r)


_GATHER_BLOCK = 512


def gather_columns(A: np.ndarray, support: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Fortran-ordered copy of ``A[:, support]`` (one gather, only for a support or working set)."""
    # Fancy indexing, not np.take(axis=1): take is 100x slower on F-ordered A
    # and slower on C-ordered A too.
    support = np.asarray(support)
    if np.dtype(dtype) == A.dtype:
        return np.asfortranarray(A[:, support])
    # Converting: by blocks of columns, so no whole copy in A's dtype exists
    # next to the converted one.
    out = np.empty((A.shape[0], support.size), dtype=dtype, order="F")
    for start in range(0, support.size, _GATHER_BLOCK):
        out[:, start : start + _GATHER_BLOCK] = A[:, support[start : start + _GATHER_BLOCK]]
    return out


@njit(cache=True, nogil=True)
def _grouped_matvec_rows(A, cols, vals, group, n_groups):  # pragma: no cover - jitted
    # out[g] = sum over t with group[t] == g of A[:, cols[t]] * vals[t]; one sweep over rows
    # cols sorted ascending: each row is read front to back (prefetch-friendly)
    n = A.shape[0]
    out = np.zeros((n, n_groups), dtype=np.float64)
    m = cols.shape[0]
    for i in range(n):
        for t in range(m):
            out[i, group[t]] += A[i, cols[t]] * vals[t]
    return out.T.copy()


@njit(cache=True, nogil=True)
def _grouped_matvec_cols(A, cols, vals, group, n_groups):  # pragma: no cover - jitted
    n = A.shape[0]
    out = np.zeros((n_groups, n), dtype=np.float64)
    for t in range(cols.shape[0]):
        j = cols[t]
        v = vals[t]
        g = group[t]
        for i in range(n):
            out[g, i] += A[i, j] * v
    return out


def grouped_matvec(
    A: np.ndarray, cols: np.ndarray, vals: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray:
    """Several sparse products ``A[:, cols_g] @ vals_g`` at once, shape (n_groups, n).

    For a C-ordered ``A`` all groups share one sweep over the rows, so a batch
    of small products costs about one partial pass instead of one each.
    """
    order = np.argsort(cols, kind="stable")
    cols = np.ascontiguousarray(cols[order], dtype=np.int64)
    vals = np.ascontiguousarray(vals[order], dtype=np.float64)
    group = np.ascontiguousarray(group[order], dtype=np.int64)
    if A.flags.f_contiguous and not A.flags.c_contiguous:
        return _grouped_matvec_cols(A, cols, vals, group, n_groups)
    return _grouped_matvec_rows(np.ascontiguousarray(A), cols, vals, group, n_groups)


@njit(cache=True, nogil=True)
def sym_rank2_update(M, u, alpha, v, beta):  # pragma: no cover - jitted
    """``M += alpha u u^T + beta v v^T`` in place, in one pass over M (square, float64)."""
    m = M.shape[0]
    for a in range(m):
        ua = alpha * u[a]
        va = beta * v[a]
        for b in range(m):
            M[a, b] += ua * u[b] + va * v[b]
