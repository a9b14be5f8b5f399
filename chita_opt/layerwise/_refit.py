"""Exact per-row refit on a support, batched over rows that share H.

On a support S (pruned set D) the row objective ``1/2 (w - w̄)^T Hd (w - w̄)``
with ``w_D = 0`` is minimised by

    w_S = w̄_S + Hd_SS^{-1} Hd_SD w̄_D,

one |S| x |S| symmetric solve per row. Rows with the same |S| are stacked and
gathered at once (one fancy-indexing pass instead of one per row); stacks are cut so a
chunk of ``(rows, s, s)`` blocks stays under ``_CHUNK_BYTES``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf as potrf
from scipy.linalg.lapack import dpotri as potri
from scipy.linalg.lapack import dpotrs as potrs

__all__ = ["refit_rows"]

_CHUNK_BYTES = 128 * 2**20


def _solve_stack(Hss: np.ndarray, rhs: np.ndarray, want_inv: bool):
    # LAPACK Cholesky per row (potrf/potrs/potri): a third of the flops of the
    # batched LU in np.linalg, and Hd is SPD whenever damping > 0. A block that
    # is not (damping = 0, N < d_in) gets the minimum-norm solution instead.
    out = np.empty_like(rhs)
    diag = np.empty_like(rhs) if want_inv else None
    for b in range(Hss.shape[0]):
        c, info = potrf(Hss[b], lower=False, clean=False, overwrite_a=False)
        if info == 0:
            out[b] = potrs(c, rhs[b], lower=False)[0]
            if want_inv:
                diag[b] = np.diag(potri(c, lower=False)[0])
            continue
        pinv = np.linalg.pinv(Hss[b], hermitian=True)
        out[b] = pinv @ rhs[b]
        if want_inv:
            # a zero diagonal entry would make a removal look free; floor it
            diag[b] = np.maximum(np.diag(pinv), 1e-300)
    return out, diag


def refit_rows(
    Hd: np.ndarray,
    W_bar: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    W_out: np.ndarray | None = None,
    want_inv_diag: bool = False,
):
    """Exact refit of ``rows`` (all by default) on the supports in ``mask``.

    Returns ``(W, inv_diag)``: ``W`` has the refit rows written (into ``W_out``
    when given, else a new zero matrix) and ``inv_diag`` (same shape as ``W``,
    only when asked) holds ``[Hd_SS^{-1}]_ii`` on each support, from which the
    exact cost of removing weight i with a refit is ``w_i^2 / (2 inv_diag_i)``.
    """
    d_out, d_in = W_bar.shape
    W = np.zeros_like(W_bar) if W_out is None else W_out
    inv_diag = np.full(W_bar.shape, np.inf) if want_inv_diag else None
    rows = np.arange(d_out) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return W, inv_diag
    sub_mask = mask[rows]
    # Hd_SD w̄_D for every row: one matrix product
    U = (W_bar[rows] * ~sub_mask) @ Hd
    sizes = sub_mask.sum(axis=1)
    for s in np.unique(sizes):
        group = np.flatnonzero(sizes == s)
        r_idx = rows[group]
        if s == 0:
            W[r_idx] = 0.0
            continue
        chunk = max(1, int(_CHUNK_BYTES // (8 * s * s * (3 if want_inv_diag else 1))))
        for c0 in range(0, group.size, chunk):
            g = group[c0 : c0 + chunk]
            r = rows[g]
            # sorted support indices, one row per layer row
            idx = np.nonzero(sub_mask[g])[1].reshape(g.size, s)
            Hss = Hd[idx[:, :, None], idx[:, None, :]]
            rhs = np.take_along_axis(U[g], idx, axis=1)
            z, diag = _solve_stack(Hss, rhs, want_inv_diag)
            vals = np.take_along_axis(W_bar[r], idx, axis=1) + z
            block = np.zeros((g.size, d_in))
            np.put_along_axis(block, idx, vals, axis=1)
            W[r] = block
            if want_inv_diag:
                dblock = np.full((g.size, d_in), np.inf)
                np.put_along_axis(dblock, idx, diag, axis=1)
                inv_diag[r] = dblock
    return W, inv_diag
