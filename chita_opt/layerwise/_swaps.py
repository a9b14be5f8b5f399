"""Exchange moves for the layer problem: cheap (no refit) and exact (with refit).

For a row with support S, refit weights w and gradient G = (w - w̄) Hd, a move
drops a kept weight i and/or adds a pruned weight j. Both scorers return, per
row, the best in-row exchange ``(delta, i, j)`` and the best single drop
``(drop_cost, i)`` and single add ``(add_gain, j)``; a drop in one row plus an
add in another is an exchange between rows for a whole-layer budget, and its
change is exactly the sum because rows are independent given their supports.

* :func:`cheap_moves` — the change of zeroing w_i and moving w_j to its best
  value with every other weight fixed: ``1/2 w_i^2 Hd_ii - w_i G_i -
  (G_j - w_i Hd_ij)^2 / (2 Hd_jj)``. An upper bound on the change after refit.
* :func:`exact_moves` — the change after the exact refit, from M = Hd_SS^{-1}:
  dropping i costs ``w_i^2 / (2 M_ii)``; adding j to S gains
  ``G_j^2 / (2 c_j)`` with the Schur complement ``c_j = Hd_jj - Hd_jS M Hd_Sj``;
  with ``P = Hd_JS M`` the exchange changes f by
  ``w_i^2/(2 M_ii) - (G_j - w_i P_ji / M_ii)^2 / (2 (c_j + P_ji^2 / M_ii))``
  (rank-one update of M after dropping i). Costs O(s^3 + q s^2) per row,
  batched over rows like the refit.

j ranges over the ``q`` pruned weights with the largest cheap add score
``G_j^2 / Hd_jj`` (all of them when fewer); N:M budgets pair i and j only inside
one group of ``m`` consecutive inputs, and there every pruned j is scanned.
"""

from __future__ import annotations

import numpy as np

from ._linalg import _NUMPY
from ._refit import padded_blocks

__all__ = ["cheap_moves", "exact_moves"]

_CHUNK = 4_000_000


def _candidates(G, hdiag, mask, q):
    score = np.where(mask, -np.inf, G * G / hdiag)
    q = max(1, min(q, mask.shape[1]))
    if q < mask.shape[1]:
        return np.argpartition(-score, q - 1, axis=1)[:, :q]
    return np.tile(np.arange(mask.shape[1]), (mask.shape[0], 1))


def cheap_moves(Hd, W, G, mask, q, m=None):
    d_out, d_in = W.shape
    hdiag = np.diag(Hd)
    drop = np.where(mask, 0.5 * W * W * hdiag - W * G, np.inf)
    add = np.where(mask, -np.inf, G * G / (2.0 * hdiag))
    rows = np.arange(d_out)
    d_i, a_j = drop.argmin(axis=1), add.argmax(axis=1)
    if m is not None:
        # N:M: every pair inside each group of m inputs (m^2 per group, cheap)
        nb = d_in // m
        Hb = Hd.reshape(nb, m, nb, m)[np.arange(nb), :, np.arange(nb), :]  # (nb, m, m)
        Wg, Gg = W.reshape(d_out, nb, m), G.reshape(d_out, nb, m)
        t = Gg[:, :, None, :] - Wg[:, :, :, None] * Hb[None]
        hj = hdiag.reshape(nb, m)[None, :, None, :]
        delta = drop.reshape(d_out, nb, m, 1) - t * t / (2.0 * hj)
        delta = np.where(mask.reshape(d_out, nb, 1, m), np.inf, delta)
        flat = delta.reshape(d_out, -1).argmin(axis=1)
        blk, rem = np.divmod(flat, m * m)
        ii, jj = np.divmod(rem, m)
        best = delta.reshape(d_out, -1)[rows, flat]
        return best, blk * m + ii, blk * m + jj, drop[rows, d_i], d_i, add[rows, a_j], a_j
    cand = _candidates(G, hdiag, mask, q)
    deltas = np.full(d_out, np.inf)
    best_i = np.zeros(d_out, dtype=np.int64)
    best_j = np.zeros(d_out, dtype=np.int64)
    qq = cand.shape[1]
    chunk = max(1, _CHUNK // (qq * d_in))
    for c0 in range(0, d_out, chunk):
        sl = slice(c0, min(d_out, c0 + chunk))
        cj = cand[sl]
        n = cj.shape[0]
        Gj = np.take_along_axis(G[sl], cj, axis=1)  # (n, q)
        Hij = Hd[:, cj].transpose(1, 0, 2)  # (n, d_in, q): Hd_ij
        t = Gj[:, None, :] - W[sl, :, None] * Hij
        delta = drop[sl, :, None] - t * t / (2.0 * hdiag[cj][:, None, :])
        bad = np.take_along_axis(mask[sl], cj, axis=1)[:, None, :]  # j already kept
        delta = np.where(bad, np.inf, delta)
        flat = delta.reshape(n, -1).argmin(axis=1)
        deltas[sl] = delta.reshape(n, -1)[np.arange(n), flat]
        ii, jj = np.divmod(flat, qq)
        best_i[sl], best_j[sl] = ii, cj[np.arange(n), jj]
    return deltas, best_i, best_j, drop[rows, d_i], d_i, add[rows, a_j], a_j


def exact_moves(Hd, W, G, mask, q, m=None, la=_NUMPY):
    # la: the inverses and batched products (._linalg); the scoring stays here
    d_out, d_in = W.shape
    hdiag = np.diag(Hd)
    # N:M pairs must share a group, so a few global candidates would rarely
    # meet a kept weight of their own group: scan every pruned weight
    q = d_in if m is not None else max(1, min(q, d_in))
    cand = _candidates(G, hdiag, mask, q)
    Hx = np.zeros((d_in + 1, d_in + 1))
    Hx[:d_in, :d_in] = Hd
    Wx = np.zeros((d_out, d_in + 1))
    Wx[:, :d_in] = W
    out = [np.full(d_out, np.inf), np.zeros(d_out, dtype=np.int64), np.zeros(d_out, dtype=np.int64),
           np.full(d_out, np.inf), np.zeros(d_out, dtype=np.int64),
           np.full(d_out, -np.inf), np.zeros(d_out, dtype=np.int64)]
    rows = np.arange(d_out)
    s_max = max(int(mask.sum(axis=1).max()), 1)
    for pos, idx, valid, Hss in padded_blocks(Hd, mask, rows, 2 + 4 * max(1, q // s_max)):
        n = pos.size
        M = la.spd_inverse(Hss)
        Mii = np.maximum(np.einsum("bii->bi", M), 1e-300)
        w = np.take_along_axis(Wx[pos], idx, axis=1)
        drop = np.where(valid, w * w / (2.0 * Mii), np.inf)
        J = cand[pos]
        j_ok = ~np.take_along_axis(mask[pos], J, axis=1)
        Gj = np.take_along_axis(G[pos], J, axis=1)
        HJS = Hx[J[:, :, None], idx[:, None, :]]  # (n, q, s); zero on padding
        P = la.matmul(HJS, M)
        c = np.maximum(hdiag[J] - np.einsum("bjs,bjs->bj", P, HJS), 1e-12 * hdiag[J])
        gain = np.where(j_ok, Gj * Gj / (2.0 * c), -np.inf)
        ratio = P / Mii[:, None, :]  # P_ji / M_ii
        num = Gj[:, :, None] - w[:, None, :] * ratio
        delta = drop[:, None, :] - num * num / (2.0 * (c[:, :, None] + P * ratio))
        bad = ~j_ok[:, :, None]
        if m is not None:
            bad = bad | ((J // m)[:, :, None] != (idx // m)[:, None, :])
        delta = np.where(bad, np.inf, delta)
        flat = delta.reshape(n, -1).argmin(axis=1)
        jj, ii = np.divmod(flat, idx.shape[1])
        ar = np.arange(n)
        out[0][pos] = delta.reshape(n, -1)[ar, flat]
        out[1][pos], out[2][pos] = idx[ar, ii], J[ar, jj]
        t_d, t_a = drop.argmin(axis=1), gain.argmax(axis=1)
        out[3][pos], out[4][pos] = drop[ar, t_d], idx[ar, t_d]
        out[5][pos], out[6][pos] = gain[ar, t_a], J[ar, t_a]
    return tuple(out)
