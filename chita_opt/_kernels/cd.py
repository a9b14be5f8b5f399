"""Cyclic coordinate descent on a fixed support with a maintained residual."""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def cd_support_sweeps(B, support, w, r, l2, w_bar, c, col_sq, max_sweeps, tol):  # pragma: no cover
    """Minimise f over ``w[support]`` by cyclic coordinate descent, in place.

    B       : (n, m) float, Fortran-ordered (columns contiguous)
    support : (s,) int64 column indices into B
    w       : (m,) float64, updated in place
    r       : (n,) float64 residual y - B w, updated in place
    w_bar, c, col_sq : (m,) float64
    Returns the number of sweeps done. Stops when the largest coordinate
    change in a sweep is below ``tol`` times the largest |w| on the support.
    O(n) per coordinate.
    """
    n = B.shape[0]
    s = support.shape[0]
    sweeps = 0
    for _ in range(max_sweeps):
        sweeps += 1
        max_delta = 0.0
        max_w = 0.0
        for t in range(s):
            j = support[t]
            curv = col_sq[j] + l2
            if curv <= 0.0:
                continue
            dot = 0.0
            for i in range(n):
                dot += B[i, j] * r[i]
            grad = -dot + l2 * (w[j] - w_bar[j]) + c[j]
            delta = -grad / curv
            if delta != 0.0:
                w[j] += delta
                for i in range(n):
                    r[i] -= B[i, j] * delta
            ad = abs(delta)
            if ad > max_delta:
                max_delta = ad
            aw = abs(w[j])
            if aw > max_w:
                max_w = aw
        if max_delta <= tol * max(max_w, 1e-300):
            break
    return sweeps
