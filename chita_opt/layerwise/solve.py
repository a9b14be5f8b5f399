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
  then exchange local search (``_swaps.py``): for every row the best exchange
  of a kept weight i for a pruned weight j (inside one N:M group for N:M
  budgets; plus a drop in one row paired with an add in another for a
  whole-layer budget), first scored with the other weights fixed
  (``swap_rounds``), then scored after the exact refit (``exact_rounds``),
  applied when negative and followed by the exact refit of the changed rows.
  Every step is a descent step, so the objective never increases.

With a gradient block (``gradients=``, see :mod:`.problem`) every row has
its own Hessian ``Hd_r``; the same kernels then run row by row (one row at a
time is a layer with d_out = 1), so the algorithms are unchanged and the
shared-``H`` path is the code it was. That costs a Python loop over rows per
refit or exchange round and d_out x d_in^2 floats of memory.

Cost: a refit is one |S| x |S| Cholesky per row, O(d_out s^3 / 3) (through the
pruned set D when |D| < |S|, O(d_out |D|^2 d_in)); a cheap exchange round
scores O(d_out q d_in) pairs (q = ``swap_candidates``; O(d_out d_in m) for
N:M) and an exact one needs Hd_SS^{-1}, O(d_out s^3).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_nonnegative, describe
from ._linalg import _NUMPY, linalg_for
from ._refit import refit_rows
from ._swaps import cheap_moves, exact_moves
from .problem import Budget, LayerProblem

__all__ = ["LAYER_METHODS", "LayerSolution", "solve_layer"]

#: ``exact_rounds=None`` turns exact exchanges on for layers with d_in up to this
_EXACT_AUTO_MAX_D_IN = 64

LAYER_METHODS = ("magnitude", "backsolve", "iht", "chita")


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


def _refit(prob: LayerProblem, mask, rows=None, *, W_out=None, want_inv_diag=False, Hinv=None,
           la=_NUMPY):
    """:func:`refit_rows` in the problem's Hessian(s); ``Hinv`` per row when ``Hd_rows`` is set."""
    if prob.Hd_rows is None:
        return refit_rows(prob.Hd, prob.W_bar, mask, rows, W_out=W_out,
                          want_inv_diag=want_inv_diag, Hinv=Hinv, la=la)
    d_out = prob.W_bar.shape[0]
    W = np.zeros_like(prob.W_bar) if W_out is None else W_out
    inv_diag = np.full(W.shape, np.inf) if want_inv_diag else None
    for r in range(d_out) if rows is None else rows:
        Wr, dr = refit_rows(prob.Hd_rows[r], prob.W_bar[r : r + 1], mask[r : r + 1],
                            want_inv_diag=want_inv_diag, Hinv=None if Hinv is None else Hinv[r],
                            la=la)
        W[r] = Wr[0]
        if want_inv_diag:
            inv_diag[r] = dr[0]
    return W, inv_diag


def _hinv(prob: LayerProblem, la) -> np.ndarray:
    """``Hd^{-1}`` (d_in x d_in), or the stack of the rows' ``Hd_r^{-1}``."""
    if prob.Hd_rows is None:
        return la.inverse(prob.Hd)
    return la.spd_inverse(prob.Hd_rows)


def _inv_diag_rows(Hinv: np.ndarray, d_out: int) -> np.ndarray:
    """Each row's ``diag(Hd_r^{-1})`` as a d_out x d_in array, floored (no free removals)."""
    diag = np.diag(Hinv)[None, :] if Hinv.ndim == 2 else np.einsum("rii->ri", Hinv)
    return np.broadcast_to(np.maximum(diag, 1e-300), (d_out, diag.shape[1])).copy()


def _moves(prob: LayerProblem, W, G, mask, q, nm, exact, la):
    """Exchange scores of every row, in the shared Hessian or row by row in ``Hd_rows``."""
    # cheap moves are elementwise scoring, no factorisation: numpy either way
    def moves(*args):
        return exact_moves(*args, la=la) if exact else cheap_moves(*args)
    if prob.Hd_rows is None:
        return moves(prob.Hd, W, G, mask, q, nm)
    per_row = [moves(prob.Hd_rows[r], W[r : r + 1], G[r : r + 1], mask[r : r + 1], q, nm)
               for r in range(W.shape[0])]
    return tuple(np.concatenate(parts) for parts in zip(*per_row, strict=True))


def _obs_scores(W: np.ndarray, inv_diag: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # twice the exact cost of removing each kept weight alone; pruned ones stay pruned
    scores = np.where(mask, W * W / inv_diag, -1.0)
    return scores


def _iht(prob: LayerProblem, W: np.ndarray, mask: np.ndarray, iters: int, la):
    # one step size for all rows: the largest curvature of any row's Hessian
    L = float(np.linalg.eigvalsh(prob.Hd if prob.Hd_rows is None else prob.Hd_rows).max())
    best_f, best_mask = prob.objective(W), mask
    for _ in range(iters):
        V = W - prob.gradient(W) / L
        mask = prob.budget.project(V * V)
        W = np.where(mask, V, 0.0)
    W_new, _ = _refit(prob, mask, la=la)
    f_new = prob.objective(W_new)
    if f_new < best_f:
        return W_new, mask, True
    return None, best_mask, False


def _swap_search(prob: LayerProblem, W, mask, max_rounds: int, tol: float, q: int, exact: bool,
                 la):
    """Exchange local search; returns (W, mask, rounds used, rows changed)."""
    d_out = W.shape[0]
    nm = prob.budget.m if prob.budget.kind == "nm" else None
    n_changed = 0
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - reported
        G = prob.gradient(W)
        f_now = prob.objective(W)
        scale = tol * max(f_now, 1e-300) / d_out
        delta, bi, bj, d_val, d_i, a_val, a_j = _moves(prob, W, G, mask, q, nm, exact, la)
        new_mask = mask.copy()
        changed = np.zeros(d_out, dtype=bool)
        for r in np.flatnonzero(delta < -scale):
            new_mask[r, bi[r]] = False
            new_mask[r, bj[r]] = True
            changed[r] = True
        if prob.budget.kind == "layer":
            # between rows: pair the cheapest drops with the largest adds of
            # other rows; each row changes at most once per round
            order_d = [r for r in np.argsort(d_val) if not changed[r] and np.isfinite(d_val[r])]
            order_a = [r for r in np.argsort(-a_val) if not changed[r] and np.isfinite(a_val[r])]
            ia = 0
            for rd in order_d:
                if changed[rd]:
                    continue
                while ia < len(order_a) and (changed[order_a[ia]] or order_a[ia] == rd):
                    ia += 1
                if ia >= len(order_a) or d_val[rd] - a_val[order_a[ia]] >= -scale:
                    break
                ra = order_a[ia]
                new_mask[rd, d_i[rd]] = False
                new_mask[ra, a_j[ra]] = True
                changed[rd] = changed[ra] = True
        if not changed.any():
            break
        ch = np.flatnonzero(changed)
        W_try = W.copy()
        _refit(prob, new_mask, ch, W_out=W_try, la=la)
        # each move is a descent step; stop if rounding says otherwise
        if prob.objective(W_try) >= f_now:
            break
        W, mask = W_try, new_mask
        n_changed += ch.size
    return W, mask, rounds, n_changed


def solve_layer(
    H: Any,
    W_bar: Any = None,
    budget: Budget | None = None,
    *,
    damping: float = 0.0,
    method: str = "chita",
    rounds: int = 4,
    iht_iters: int = 0,
    swap_rounds: int = 10,
    exact_rounds: int | None = None,
    swap_candidates: int = 16,
    tol: float = 1e-9,
    gradients: Any = None,
    gradient_weight: float = 1.0,
    device: Any = None,
) -> LayerSolution:
    """Prune one layer: ``solve_layer(H, W_bar, Budget.layer(k), damping=...)``.

    ``H`` may also be a :class:`LayerProblem` (then ``W_bar``, ``budget`` and
    ``damping`` come from it). ``rounds`` is the number of gradual OBS steps of
    ``"chita"``, ``iht_iters`` the IHT iterations (``"iht"`` uses 50 when 0),
    ``swap_rounds`` the most rounds of cheap exchanges (scored without refit),
    ``exact_rounds`` the most rounds of exchanges scored after the exact refit
    (O(s^3) per row and round; None: 10 when d_in <= 64, else 0),
    ``swap_candidates`` the pruned weights per row tried for addition in each
    round; ``tol`` is the relative
    improvement below which an exchange is not worth a refit. ``gradients``
    (n x d_out x d_in per-sample gradients of ``W_bar``) adds each row's
    gradient block with relative weight ``gradient_weight`` (see
    :class:`LayerProblem`); ``LayerSolution.objective`` then includes it,
    ``row_errors`` stay the reconstruction errors. ``device`` (None: numpy and
    LAPACK) runs the batched Cholesky solves, inverses and exchange products
    with ``torch.linalg`` in float64 on that torch device (``"cpu"``,
    ``"cuda"``); inputs and results stay numpy (see :mod:`._linalg`).
    """
    if isinstance(H, LayerProblem):
        prob = H
    else:
        prob = LayerProblem(H, W_bar, budget, damping, gradients, gradient_weight)
    if exact_rounds is None:
        # exact exchanges cost O(d_out s^3) a round: on by default only where
        # that is small (they matter most there, measured on tiny layers)
        exact_rounds = 10 if prob.shape[1] <= _EXACT_AUTO_MAX_D_IN else 0
    if method not in LAYER_METHODS:
        raise ValueError(f"method: expected one of {LAYER_METHODS}, got {describe(method)}")
    for name, val in (("rounds", rounds), ("swap_rounds", swap_rounds), ("iht_iters", iht_iters),
                      ("exact_rounds", exact_rounds), ("swap_candidates", swap_candidates)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {describe(val)}")
    if rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1, got {rounds}")
    check_nonnegative(tol, "tol")
    la = linalg_for(device)
    t0 = time.perf_counter()
    Wb, Hd, bud = prob.W_bar, prob.Hd, prob.budget
    hist: dict[str, float] = {}
    if method == "magnitude":
        mask = bud.project(np.abs(Wb))
        W = np.where(mask, Wb, 0.0)
    elif method in ("backsolve", "iht"):
        if prob.Hd_rows is not None:
            hinv_diag = _inv_diag_rows(la.spd_inverse(prob.Hd_rows), Wb.shape[0])
        else:
            try:
                hinv_diag = np.diag(np.linalg.inv(Hd))
            except np.linalg.LinAlgError:
                hinv_diag = np.maximum(np.diag(np.linalg.pinv(Hd, hermitian=True)), 1e-300)
            hinv_diag = hinv_diag[None, :]
        # a zero diagonal (singular Hd, damping 0) would make a removal look free
        mask = bud.project(Wb * Wb / np.maximum(hinv_diag, 1e-300))
        W, _ = _refit(prob, mask, la=la)
        hist["backsolve"] = prob.objective(W)
        if method == "iht":
            W_new, mask_new, better = _iht(prob, W, mask, iht_iters or 50, la)
            if better:
                W, mask = W_new, mask_new
            hist["iht"] = prob.objective(W)
    else:
        mask = np.ones(Wb.shape, dtype=bool)
        Hinv = _hinv(prob, la)
        W, inv_diag = Wb.copy(), _inv_diag_rows(Hinv, Wb.shape[0])
        steps = _intermediate_budgets(bud, Wb.shape, rounds)
        for t, step in enumerate(steps):
            mask = step.project(_obs_scores(W, inv_diag, mask))
            # the removal costs are needed only for the next step
            W, inv_diag = _refit(prob, mask, want_inv_diag=t + 1 < len(steps), Hinv=Hinv,
                                 la=la)
        hist["gradual_obs"] = prob.objective(W)
        if iht_iters:
            W_new, mask_new, better = _iht(prob, W, mask, iht_iters, la)
            if better:
                W, mask = W_new, mask_new
            hist["iht"] = prob.objective(W)
        for exact, n_rounds in ((False, swap_rounds), (True, exact_rounds)):
            if n_rounds:
                W, mask, used, n_sw = _swap_search(
                    prob, W, mask, n_rounds, tol, swap_candidates, exact, la
                )
                tag = "exact_swaps" if exact else "swaps"
                hist[tag] = prob.objective(W)
                hist[tag + "_rounds"] = float(used)
                hist[tag + "_rows_changed"] = float(n_sw)
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
