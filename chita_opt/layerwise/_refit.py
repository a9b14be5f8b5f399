"""Exact per-row refit on a support, batched over rows that share H.

On a support S (pruned set D) the row objective ``1/2 (w - w̄)^T Hd (w - w̄)``
with ``w_D = 0`` is minimised by

    w_S = w̄_S + Hd_SS^{-1} Hd_SD w̄_D,

one |S| x |S| symmetric solve per row. Rows have different |S| under a
whole-layer budget, so every row's block is padded to the largest |S| of its
chunk with an identity block (padding indices point at a zero row/column of
``Hd`` extended by one, and get 1 on the diagonal): the padded system has the
same solution on S and zeros on the padding, and one gather builds the
blocks of many rows at once. Chunks keep the
``(rows, s, s)`` stack under ``_CHUNK_BYTES``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._linalg import _NUMPY

__all__ = ["padded_blocks", "refit_rows"]

_CHUNK_BYTES = 64 * 2**20


def padded_blocks(
    Hd: np.ndarray, mask: np.ndarray, rows: np.ndarray, copies: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(positions in rows, idx, valid, Hss)`` chunk by chunk.

    ``idx`` (n, s) holds each row's sorted support padded with ``d_in``;
    ``valid`` marks the real entries; ``Hss`` (n, s, s) is ``Hd[S, S]`` with an
    identity block on the padding. ``copies`` scales the memory estimate for
    callers that build more stacks of the same size.
    """
    d_in = Hd.shape[0]
    Hx = np.zeros((d_in + 1, d_in + 1))
    Hx[:d_in, :d_in] = Hd
    sub = mask[rows]
    sizes = sub.sum(axis=1)
    order = np.argsort(sizes, kind="stable")  # similar sizes together: little padding
    start = 0
    while start < order.size:
        s = max(int(sizes[order[start]]), 1)
        n = max(1, int(_CHUNK_BYTES // (8 * copies * s * s)))
        # the chunk's largest size decides the padding; grow n while memory allows
        stop = min(order.size, start + n)
        s = max(int(sizes[order[stop - 1]]), 1)
        stop = min(stop, start + max(1, int(_CHUNK_BYTES // (8 * copies * s * s))))
        s = max(int(sizes[order[stop - 1]]), 1)
        pos = order[start:stop]
        m = sub[pos]
        # stable sort puts True (kept) first in index order: kept indices, then padding
        rank = np.argsort(~m, axis=1, kind="stable")[:, :s]
        valid = np.take_along_axis(m, rank, axis=1)
        idx = np.where(valid, rank, d_in)
        Hss = Hx[idx[:, :, None], idx[:, None, :]]
        pad = ~valid
        Hss[pad[:, :, None] & np.eye(s, dtype=bool)[None]] = 1.0
        yield pos, idx, valid, Hss
        start = stop


def _solve(Hss: np.ndarray, rhs: np.ndarray, want_inv: bool, la):
    if want_inv:
        inv = la.spd_inverse(Hss)
        return (inv @ rhs[..., None])[..., 0], inv
    return la.spd_solve(Hss, rhs), None


def _refit_pruned_form(Hinv, W_bar, mask, rows, W, inv_diag, la):
    """The same refit through the pruned set D, cheaper when |D| < |S|.

    With ``Hinv = Hd^{-1}`` and ``Hinv_DD = c^T c`` (Cholesky),
    ``w = w̄ - Hinv[:, D] Hinv_DD^{-1} w̄_D`` (so that w_D = 0) and
    ``[Hd_SS^{-1}]_ii = Hinv_ii - ||c^{-T} Hinv_{D,i}||^2``: O(|D|^3/3 + d |D|^2)
    per row instead of O(|S|^3).
    """
    d_in = Hinv.shape[0]
    Hix = np.zeros((d_in + 1, d_in))
    Hix[:d_in] = Hinv
    hdiag = np.diag(Hinv)
    for pos, idx, valid, Hdd in padded_blocks(Hinv, ~mask, rows):
        r = rows[pos]
        wd = np.where(valid, np.take_along_axis(np.pad(W_bar[r], ((0, 0), (0, 1))), idx, 1), 0.0)
        Y, quad = la.pruned_solve(Hdd, wd, Hix, idx, inv_diag is not None)
        W[r] = np.where(mask[r], W_bar[r] - Y, 0.0)
        if inv_diag is not None:
            inv_diag[r] = np.where(mask[r], hdiag - quad, np.inf)
    if inv_diag is not None:
        np.maximum(inv_diag, 1e-300, out=inv_diag)


def refit_rows(
    Hd: np.ndarray,
    W_bar: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    W_out: np.ndarray | None = None,
    want_inv_diag: bool = False,
    Hinv: np.ndarray | None = None,
    la=_NUMPY,
):
    """Exact refit of ``rows`` (all by default) on the supports in ``mask``.

    Returns ``(W, inv_diag)``: ``W`` has the refit rows written (into ``W_out``
    when given, else a new zero matrix) and ``inv_diag`` (same shape as ``W``,
    only when asked) holds ``[Hd_SS^{-1}]_ii`` on each support (inf elsewhere),
    from which the exact cost of removing weight i with a refit is
    ``w_i^2 / (2 inv_diag_i)``. ``la`` supplies the batched Cholesky solves
    and inverses (:func:`._linalg.linalg_for`; numpy/LAPACK by default).
    """
    d_out, d_in = W_bar.shape
    W = np.zeros_like(W_bar) if W_out is None else W_out
    inv_diag = np.full(W_bar.shape, np.inf) if want_inv_diag else None
    rows = np.arange(d_out) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return W, inv_diag
    n_kept = int(mask[rows].sum())
    if Hinv is not None and 2 * n_kept > rows.size * d_in:
        # most rows prune fewer weights than they keep: work in the pruned set
        try:
            _refit_pruned_form(Hinv, W_bar, mask, rows, W, inv_diag, la)
            return W, inv_diag
        except np.linalg.LinAlgError:
            pass  # ill-conditioned Hinv (damping 0): the kept-set form below
    # Hd_SD w̄_D for every row: one matrix product
    U = np.zeros((rows.size, d_in + 1))
    U[:, :d_in] = (W_bar[rows] * ~mask[rows]) @ Hd
    Wbx = np.zeros((rows.size, d_in + 1))
    Wbx[:, :d_in] = W_bar[rows]
    for pos, idx, valid, Hss in padded_blocks(Hd, mask, rows, 3 if want_inv_diag else 1):
        rhs = np.take_along_axis(U[pos], idx, axis=1)
        z, inv = _solve(Hss, rhs, want_inv_diag, la)
        vals = np.where(valid, np.take_along_axis(Wbx[pos], idx, axis=1) + z, 0.0)
        block = np.zeros((pos.size, d_in + 1))
        np.put_along_axis(block, idx, vals, axis=1)
        W[rows[pos]] = block[:, :d_in]
        if want_inv_diag:
            diag = np.maximum(np.einsum("bii->bi", inv), 1e-300)  # floor: no free removals
            dblock = np.full((pos.size, d_in + 1), np.inf)
            np.put_along_axis(dblock, idx, np.where(valid, diag, np.inf), axis=1)
            inv_diag[rows[pos]] = dblock[:, :d_in]
    return W, inv_diag
