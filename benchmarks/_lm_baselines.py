"""SparseGPT and Wanda, written here from their papers (not part of the package).

Neither llmcompressor nor torchao is installed (they need downloads), so both
baselines are re-implemented from the published algorithms and run through the
same capture as CHITA (``prune_layerwise(..., solver=...)``): same Gram
matrices, same sequential order, same budgets.

* SparseGPT (Frantar & Alistarh, ICML 2023, Algorithm 1): OBS updates over
  columns with the upper Cholesky factor of ``(H + damp I)^{-1}``, lazy batch
  updates over blocks of 128 columns, adaptive mask selection per block by
  ``w^2 / [U]_jj^2`` (unstructured: the smallest share of the block across all
  rows; N:M: the smallest ``M - N`` of every group when its first column is
  reached). percdamp 0.01, i.e. ``damp = 0.01 mean(diag H)``, is what
  ``prune_layerwise``'s default relative damping passes in.
* Wanda (Sun et al., ICLR 2024): score ``|W_ij| * ||X_j||_2`` with
  ``||X_j|| = sqrt(H_jj)``, keep the largest per output row (unstructured) or
  per N:M group; no weight update.

Both take and return float64 numpy arrays: ``(H, W_bar, budget, damping) -> (W, mask)``.
"""

from __future__ import annotations

import math

import numpy as np

from chita_opt.layerwise import Budget

__all__ = ["sparsegpt", "wanda"]


def sparsegpt(H, W_bar, budget: Budget, damping: float, blocksize: int = 128):
    W = np.array(W_bar, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    d = W.shape[1]
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(d)] += damping
    # upper Cholesky factor of H^{-1}: row i holds the OBS update for column i
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T
    if budget.kind == "nm":
        n_prune_of_m, m = budget.m - budget.n, budget.m
    else:
        sparsity = 1.0 - budget.total(W.shape) / W.size
    pruned = np.zeros_like(W, dtype=bool)
    for i1 in range(0, d, blocksize):
        i2 = min(i1 + blocksize, d)
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        hdiag = np.diag(Hinv1)
        mask1 = np.zeros_like(W1, dtype=bool)
        if budget.kind != "nm":
            tmp = (W1**2 / hdiag[None, :] ** 2).ravel()
            # round up so that the layer never keeps more than the budget
            n_prune = min(tmp.size, math.ceil(tmp.size * sparsity - 1e-9))
            mask1.ravel()[np.argpartition(tmp, n_prune - 1)[:n_prune]] = n_prune > 0
        for i in range(i2 - i1):
            if budget.kind == "nm" and i % m == 0:
                tmp = W1[:, i : i + m] ** 2 / hdiag[i : i + m][None, :] ** 2
                idx = np.argsort(tmp, axis=1, kind="stable")[:, :n_prune_of_m]
                np.put_along_axis(mask1[:, i : i + m], idx, True, axis=1)
            w = W1[:, i]
            q = np.where(mask1[:, i], 0.0, w)
            Q1[:, i] = q
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= np.outer(err, Hinv1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    keep = ~pruned
    return np.where(keep, W, 0.0), keep


def wanda(H, W_bar, budget: Budget, damping: float):
    W = np.asarray(W_bar, dtype=np.float64)
    score = np.abs(W) * np.sqrt(np.maximum(np.diag(H), 0.0))[None, :]
    if budget.kind == "layer":
        # Wanda compares weights per output row: spread the layer's k over rows
        d_out = W.shape[0]
        base, extra = divmod(budget.k, d_out)
        mask = Budget.per_row(base).project(score)
        if extra:
            mask[:extra] = Budget.per_row(base + 1).project(score[:extra])
    else:
        mask = budget.project(score)
    return np.where(mask, W, 0.0), mask
