"""Solvers for the layer problem, all working in ``Hd = H + damping I``.

Methods (each returns a :class:`LayerSolution`):

* ``"magnitude"`` — keep the largest ``|w̄|`` the budget allows, no refit.
* ``"backsolve"`` — keep the largest one-shot OBS saliencies
  ``w̄_i^2 / [Hd^{-1}]_ii`` (the exact cost of removing one weight alone, with a
  refit), then the exact per-row refit.
* ``"iht"`` — from ``"backsolve"``, iterative hard thresholding
  ``W <- P(W - (W - W̄) Hd / L)`` with the exact projection P onto the budget
  and ``L = lambda_max(Hd)``, then the exact refit; kept only if it is better.
* ``"chita"`` (default) — gradual OBS: prune in ``rounds`` steps, each time
  dropping the weights whose exact removal cost ``w_i^2 / [Hd_SS^{-1}]_ii`` on
  the current refit support is smallest, and refitting; then optional IHT;
  then swap local search: for every row the best exchange of a kept weight i
  for a pruned weight j (inside one N:M group for N:M budgets, and between
  rows for a whole-layer budget) by the exact change of the objective
  ``1/2 w_i^2 Hd_ii - w_i g_i - (g_j - w_i Hd_ij)^2 / (2 Hd_jj)`` (g the
  gradient), applied when negative, followed by the exact refit of the changed
  rows. Every step is a descent step, so the objective never increases.

Cost: the refit is one batched |S| x |S| Cholesky per row, O(d_out s^3); a
swap round evaluates O(d_out s (d_in - s)) exchanges (O(d_out d_in m) for N:M).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_nonnegative, describe
from ._refit import refit_rows
from .problem import Budget, LayerProblem

__all__ = ["LAYER_METHODS", "LayerSolution", "solve_layer"]

LAYER_METHODS = ("magnitude", "backsolve", "iht", "chita")
#: entries of the (rows, s, d_in - s) exchange tensor evaluated at once
_SWAP_CHUNK = 4_000_000


@dataclass
class LayerSolution:
    """Pruned weight, its mask, the objective and per-row reconstruction errors."""

    W: np.ndarray
    mask: np.ndarray
    objective: float
    row_errors: np.ndarray
    method: str
    seconds: float
    history: dict[str, float] = field(default_factory=dict)

    @property
    def error(self) -> float:
        """Layer reconstruction error ``sum_r 1/2 ||X (w_r - w̄_r)||^2`` (no damping)."""
        return float(self.row_errors.sum())


def _intermediate_budgets(budget: Budget, shape: tuple[int, int], rounds: int) -> list[Budget]:
    d_out, d_in = shape
    if budget.kind == "nm":
        caps = [budget.m - round((budget.m - budget.n) * t / rounds) for t in range(1, rounds + 1)]
        caps = sorted(set(caps), reverse=True)
        return [Budget("nm", n=c, m=budget.m) for c in caps]
    full = d_in if budget.kind == "row" else d_out * d_in
    ks = [full - round((full - budget.k) * t / rounds) for t in range(1, rounds + 1)]
    return [Budget(budget.kind, k=k) for k in sorted(set(ks), reverse=True)]


def _obs_scores(W: np.ndarray, inv_diag: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # twice the exact cost of removing each kept weight alone; pruned ones stay pruned
    scores = np.where(mask, W * W / inv_diag, -1.0)
    return scores


def _iht(prob: LayerProblem, W: np.ndarray, mask: np.ndarray, iters: int):
    L = float(np.linalg.eigvalsh(prob.Hd)[-1])
    best_f, best_mask = prob.objective(W), mask
    for _ in range(iters):
        V = W - ((W - prob.W_bar) @ prob.Hd) / L
        mask = prob.budget.project(V * V)
        W = np.where(mask, V, 0.0)
    W_new, _ = refit_rows(prob.Hd, prob.W_bar, mask)
    f_new = prob.objective(W_new)
    if f_new < best_f:
        return W_new, mask, True
    return None, best_mask, False


def _best_row_swaps(prob: LayerProblem, W, G, mask, n_cand: int):
    """Best within-row exchange (i out, j in) for every row: (delta, i, j).

    ``delta`` is the exact objective change of zeroing w_i and setting w_j to
    its best value with the rest fixed. For N:M budgets all pairs inside each
    group are scanned; otherwise i ranges over the ``n_cand`` kept weights that
    are cheapest to drop and j over every pruned weight.
    """
    Hd = prob.Hd
    hdiag = np.diag(Hd)
    d_out, d_in = W.shape
    a = np.where(mask, 0.5 * W * W * hdiag - W * G, np.inf)  # cost of dropping i, no refit
    if prob.budget.kind == "nm":
        m = prob.budget.m
        nb = d_in // m
        Hb = Hd.reshape(nb, m, nb, m)[np.arange(nb), :, np.arange(nb), :]  # (nb, m, m)
        Wg, Gg = W.reshape(d_out, nb, m), G.reshape(d_out, nb, m)
        t = Gg[:, :, None, :] - Wg[:, :, :, None] * Hb[None]
        delta = a.reshape(d_out, nb, m)[..., None] - t * t / (2.0 * hdiag.reshape(nb, m)[None, :, None, :])
        delta = np.where(mask.reshape(d_out, nb, 1, m), np.inf, delta)
        flat = delta.reshape(d_out, -1).argmin(axis=1)
        best = delta.reshape(d_out, -1)[np.arange(d_out), flat]
        blk, rem = np.divmod(flat, m * m)
        ii, jj = np.divmod(rem, m)
        return best, blk * m + ii, blk * m + jj
    q = max(1, min(n_cand, d_in))
    cand = np.argpartition(a, q - 1, axis=1)[:, :q] if q < d_in else np.tile(np.arange(d_in), (d_out, 1))
    a_c = np.take_along_axis(a, cand, axis=1)
    w_c = np.take_along_axis(W, cand, axis=1)
    deltas = np.empty(d_out)
    best_i = np.empty(d_out, dtype=np.int64)
    best_j = np.empty(d_out, dtype=np.int64)
    chunk = max(1, _SWAP_CHUNK // (q * d_in))
    for c0 in range(0, d_out, chunk):
        sl = slice(c0, min(d_out, c0 + chunk))
        t = G[sl, None, :] - w_c[sl, :, None] * Hd[cand[sl]]  # (rows, q, d_in)
        delta = a_c[sl, :, None] - t * t / (2.0 * hdiag)
        delta = np.where(mask[sl, None, :], np.inf, delta)
        flat = delta.reshape(delta.shape[0], -1).argmin(axis=1)
        n = delta.shape[0]
        deltas[sl] = delta.reshape(n, -1)[np.arange(n), flat]
        ci, best_j[sl] = np.divmod(flat, d_in)
        best_i[sl] = cand[sl][np.arange(n), ci]
    return deltas, best_i, best_j


def _swap_search(prob: LayerProblem, W, mask, max_rounds: int, tol: float, n_cand: int):
    """Exchange local search; returns (W, mask, rounds used, swaps applied)."""
    d_out, d_in = W.shape
    hdiag = np.diag(prob.Hd)
    rows = np.arange(d_out)
    n_swaps = 0
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - reported
        G = (W - prob.W_bar) @ prob.Hd
        f_rows = prob.row_objectives(W)
        scale = tol * max(float(f_rows.sum()), 1e-300) / d_out
        deltas, bi, bj = _best_row_swaps(prob, W, G, mask, n_cand)
        take = deltas < -scale
        changed = set()
        new_mask = mask.copy()
        for r in np.flatnonzero(take):
            new_mask[r, bi[r]] = False
            new_mask[r, bj[r]] = True
            changed.add(int(r))
        if prob.budget.kind == "layer":
            # between rows: drop the cheapest weight of one row, add the best
            # weight of another (each row changed at most once per round)
            drop = np.where(mask, 0.5 * W * W * hdiag - W * G, np.inf)
            gain = np.where(mask, -np.inf, G * G / (2.0 * hdiag))
            free = np.array([r not in changed for r in range(d_out)])
            d_i = drop.argmin(axis=1)
            a_j = gain.argmax(axis=1)
            d_val = drop[rows, d_i]
            a_val = gain[rows, a_j]
            order_d = [r for r in np.argsort(d_val) if free[r] and np.isfinite(d_val[r])]
            order_a = [r for r in np.argsort(-a_val) if free[r] and np.isfinite(a_val[r])]
            used = set()
            ia = 0
            for rd in order_d:
                if rd in used:
                    continue
                while ia < len(order_a) and order_a[ia] in used | {rd}:
                    ia += 1
                if ia >= len(order_a) or d_val[rd] - a_val[order_a[ia]] >= -scale:
                    break
                ra = order_a[ia]
                new_mask[rd, d_i[rd]] = False
                new_mask[ra, a_j[ra]] = True
                used.update((rd, ra))
                changed.update((int(rd), int(ra)))
        if not changed:
            break
        ch = np.array(sorted(changed), dtype=np.int64)
        W_try = W.copy()
        refit_rows(prob.Hd, prob.W_bar, new_mask, ch, W_out=W_try)
        # exact refit is never worse than the exchanged point; guard against rounding
        if prob.objective(W_try) >= f_rows.sum():
            break
        W, mask = W_try, new_mask
        n_swaps += len(ch)
    return W, mask, rounds, n_swaps


def solve_layer(
    H: Any,
    W_bar: Any = None,
    budget: Budget | None = None,
    *,
    damping: float = 0.0,
    method: str = "chita",
    rounds: int = 4,
    iht_iters: int = 0,
    swap_rounds: int = 30,
    swap_candidates: int = 8,
    tol: float = 1e-9,
) -> LayerSolution:
    """Prune one layer: ``solve_layer(H, W_bar, Budget.layer(k), damping=...)``.

    ``H`` may also be a :class:`LayerProblem` (then ``W_bar``, ``budget`` and
    ``damping`` come from it). ``rounds`` is the number of gradual OBS steps of
    ``"chita"``, ``iht_iters`` the IHT iterations (``"iht"`` uses 50 when 0),
    ``swap_rounds`` the most exchange rounds, ``swap_candidates`` the kept
    weights per row tried for removal in each round (unstructured budgets); ``tol`` is the relative
    improvement below which an exchange is not worth a refit.
    """
    prob = H if isinstance(H, LayerProblem) else LayerProblem(H, W_bar, budget, damping)
    if method not in LAYER_METHODS:
        raise ValueError(f"method: expected one of {LAYER_METHODS}, got {describe(method)}")
    for name, val in (("rounds", rounds), ("swap_rounds", swap_rounds), ("iht_iters", iht_iters)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {describe(val)}")
    if rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1, got {rounds}")
    check_nonnegative(tol, "tol")
    t0 = time.perf_counter()
    Wb, Hd, bud = prob.W_bar, prob.Hd, prob.budget
    hist: dict[str, float] = {}
    if method == "magnitude":
        mask = bud.project(np.abs(Wb))
        W = np.where(mask, Wb, 0.0)
    elif method in ("backsolve", "iht"):
        try:
            hinv_diag = np.diag(np.linalg.inv(Hd))
        except np.linalg.LinAlgError:
            hinv_diag = np.maximum(np.diag(np.linalg.pinv(Hd, hermitian=True)), 1e-300)
        mask = bud.project(Wb * Wb / hinv_diag[None, :])
        W, _ = refit_rows(Hd, Wb, mask)
        hist["backsolve"] = prob.objective(W)
        if method == "iht":
            W_new, mask_new, better = _iht(prob, W, mask, iht_iters or 50)
            if better:
                W, mask = W_new, mask_new
            hist["iht"] = prob.objective(W)
    else:
        mask = np.ones(Wb.shape, dtype=bool)
        W, inv_diag = Wb.copy(), np.tile(np.diag(np.linalg.pinv(Hd, hermitian=True)), (Wb.shape[0], 1))
        steps = _intermediate_budgets(bud, Wb.shape, rounds)
        for t, step in enumerate(steps):
            mask = step.project(_obs_scores(W, inv_diag, mask))
            # the removal costs are needed only for the next step
            W, inv_diag = refit_rows(Hd, Wb, mask, want_inv_diag=t + 1 < len(steps))
        hist["gradual_obs"] = prob.objective(W)
        if iht_iters:
            W_new, mask_new, better = _iht(prob, W, mask, iht_iters)
            if better:
                W, mask = W_new, mask_new
            hist["iht"] = prob.objective(W)
        if swap_rounds:
            W, mask, used, n_sw = _swap_search(prob, W, mask, swap_rounds, tol, swap_candidates)
            hist["swaps"] = prob.objective(W)
            hist["swap_rounds"] = float(used)
            hist["swaps_applied"] = float(n_sw)
    W = np.where(mask, W, 0.0)
    assert bud.is_feasible(mask), "internal error: budget violated"
    return LayerSolution(
        W=W,
        mask=mask,
        objective=prob.objective(W),
        row_errors=prob.row_errors(W),
        method=method,
        seconds=time.perf_counter() - t0,
        history=hist,
    )
