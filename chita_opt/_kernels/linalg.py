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


def gather_columns(A: np.ndarray, support: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Fortran-ordered copy of ``A[:, support]`` (one gather, only for a support or working set)."""
    return np.asfortranarray(np.take(A, support, axis=1), dtype=dtype)
