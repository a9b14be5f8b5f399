"""Layer-wise core: solvers against an exhaustive oracle on tiny layers, budgets, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chita_opt.groups import nm_groups, project_groups
from chita_opt.layerwise import (
    LAYER_METHODS,
    Budget,
    LayerProblem,
    budget_from_sparsity,
    solve_layer,
)
from chita_opt.layerwise._refit import refit_rows


def _row_opt(Hd, wb, support):
    """min over w (w_D = 0) of 1/2 (w - wb)^T Hd (w - wb), by least squares in a square root."""
    d = wb.size
    if len(support) == d:
        return 0.0
    evals, evecs = np.linalg.eigh(Hd)
    R = (evecs * np.sqrt(np.clip(evals, 0, None))).T  # R^T R = Hd
    A = R[:, list(support)]
    y = R @ wb
    if A.shape[1]:
        w, *_ = np.linalg.lstsq(A, y, rcond=None)
        y = y - A @ w
    return 0.5 * float(y @ y)


def oracle(prob: LayerProblem, row_hessians=None) -> float:
    """Exact optimum: rows are independent given their supports; a layer budget is a knapsack.

    ``row_hessians`` (one d_in x d_in matrix per row) replaces the shared ``prob.Hd``.
    """
    Wb, bud = prob.W_bar, prob.budget
    d_out, d_in = Wb.shape
    total = 0.0
    best_by_size = []
    for r in range(d_out):
        best = {}
        for s in range(d_in + 1):
            for sup in itertools.combinations(range(d_in), s):
                if bud.kind == "nm":
                    counts = np.bincount(np.array(sup, dtype=int) // bud.m, minlength=d_in // bud.m)
                    if (counts > bud.n).any():
                        continue
                elif bud.kind == "row" and s > bud.k:
                    continue
                Hd = prob.Hd if row_hessians is None else row_hessians[r]
                f = _row_opt(Hd, Wb[r], sup)
                best[s] = min(best.get(s, np.inf), f)
        best_by_size.append(best)
        if bud.kind != "layer":
            total += min(best.values())
    if bud.kind != "layer":
        return total
    # knapsack over rows: dp[t] = least error with t weights kept so far
    dp = np.full(bud.k + 1, np.inf)
    dp[0] = 0.0
    for best in best_by_size:
        new = np.full_like(dp, np.inf)
        for t in range(bud.k + 1):
            if np.isfinite(dp[t]):
                for s, f in best.items():
                    if t + s <= bud.k:
                        new[t + s] = min(new[t + s], dp[t] + f)
        dp = new
    return float(dp.min())


def draw_layer_budget(draw, nm_pairs, max_d_in):
    """A tiny layer's ``(d_out, d_in, budget)``: per-row, whole-layer or N:M (from ``nm_pairs``)."""
    d_out = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["row", "layer", "nm"]))
    if kind == "nm":
        n, m = draw(st.sampled_from(nm_pairs))
        d_in = m * draw(st.integers(1, 2))
        return d_out, d_in, Budget.nm(n, m)
    d_in = draw(st.integers(2, max_d_in))
    k = draw(st.integers(0, d_in if kind == "row" else d_out * d_in))
    return d_out, d_in, Budget.per_row(k) if kind == "row" else Budget.layer(k)


@st.composite
def layers(draw):
    d_out, d_in, bud = draw_layer_budget(draw, [(1, 2), (2, 4), (1, 4), (3, 4)], 6)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_samples = draw(st.sampled_from([2, d_in, 3 * d_in]))  # rank-deficient H too
    X = rng.standard_normal((n_samples, d_in)) * np.exp(rng.standard_normal(d_in))
    if draw(st.booleans()):
        X[:, 0] = X[:, -1]  # duplicated input feature
    W = rng.standard_normal((d_out, d_in))
    H = X.T @ X
    damping = draw(st.sampled_from([0.0, 1e-3, 0.1])) * float(np.diag(H).mean())
    return LayerProblem(H, W, bud, damping)


def _gap(f, f_opt, prob):
    scale = max(abs(f_opt), 1e-9 * prob.objective(np.zeros_like(prob.W_bar)), 1e-12)
    return (f - f_opt) / scale


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_every_method_is_feasible_and_never_beats_the_oracle(prob):
    f_opt = oracle(prob)
    for method in LAYER_METHODS:
        sol = solve_layer(prob, method=method)
        assert prob.budget.is_feasible(sol.mask), method
        assert np.all(sol.W[~sol.mask] == 0), method
        assert sol.objective == pytest.approx(prob.objective(sol.W), rel=1e-9, abs=1e-9)
        assert _gap(sol.objective, f_opt, prob) >= -1e-7, f"{method} beat the oracle"
    # the cheap path alone (the default for d_in > 64) is feasible too
    cheap = solve_layer(prob, exact_rounds=0)
    assert prob.budget.is_feasible(cheap.mask)
    assert _gap(cheap.objective, f_opt, prob) >= -1e-7
    # CHITA's local search starts from a refit support and only descends
    chita = solve_layer(prob, method="chita")
    assert chita.history.get("swaps", chita.objective) <= chita.history["gradual_obs"] + 1e-9


def tiny_layer_budget(rng, seed):
    """``(d_out, d_in, budget)`` of a tiny layer; the budget kind cycles with ``seed``."""
    d_out, d_in = 2, int(rng.integers(4, 7))
    kind = ["row", "layer", "nm"][seed % 3]
    if kind == "nm":
        return d_out, 8, Budget.nm(2, 4)
    if kind == "row":
        return d_out, d_in, Budget.per_row(int(rng.integers(1, d_in)))
    return d_out, d_in, Budget.layer(int(rng.integers(1, d_out * d_in)))


def test_chita_reaches_the_oracle_on_most_tiny_layers():
    """Fixed batch of 150 tiny layers: share solved to optimality, and the worst gap."""
    gaps = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        d_out, d_in, bud = tiny_layer_budget(rng, seed)
        X = rng.standard_normal((3 * d_in, d_in)) @ (
            np.eye(d_in) + 0.5 * rng.standard_normal((d_in, d_in))
        )
        H = X.T @ X
        prob = LayerProblem(H, rng.standard_normal((d_out, d_in)), bud, 1e-2 * np.diag(H).mean())
        gaps.append(_gap(solve_layer(prob).objective, oracle(prob), prob))
    gaps = np.array(gaps)
    assert gaps.min() >= -1e-7
    share = float(np.mean(gaps <= 1e-6))
    # measured: 89% optimal, worst gap 2.8 (a layer-budget local optimum) -- the
    # bar guards against regressions, it is not a guarantee of optimality
    assert share >= 0.85, f"optimal on {share:.0%}; worst gap {gaps.max():.3g}"
    assert np.median(gaps) <= 1e-6


def test_refit_is_the_exact_minimiser_on_the_support():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 10))
    H = X.T @ X
    Wb = rng.standard_normal((4, 10))
    mask = rng.random((4, 10)) < 0.5
    mask[0] = False
    mask[1] = True
    Hd = H + 0.1 * np.eye(10)
    W, inv_diag = refit_rows(Hd, Wb, mask, want_inv_diag=True)
    assert np.all(W[~mask] == 0)
    G = (W - Wb) @ Hd
    assert np.abs(G[mask]).max() < 1e-8  # stationary on the support
    for r in range(4):
        f = 0.5 * (W[r] - Wb[r]) @ Hd @ (W[r] - Wb[r])
        assert f == pytest.approx(_row_opt(Hd, Wb[r], np.flatnonzero(mask[r])), rel=1e-8, abs=1e-10)
        sup = np.flatnonzero(mask[r])
        if sup.size:
            expect = np.diag(np.linalg.inv(Hd[np.ix_(sup, sup)]))
            assert np.allclose(inv_diag[r, sup], expect)


@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
def test_nm_budget_is_exact_and_matches_the_general_projection(pattern):
    rng = np.random.default_rng(2)
    n, m = map(int, pattern.split(":"))
    X = rng.standard_normal((200, 32))
    H = X.T @ X
    Wb = rng.standard_normal((8, 32))
    sol = solve_layer(H, Wb, Budget.nm(pattern), damping=0.01 * np.diag(H).mean())
    counts = sol.mask.reshape(8, -1, m).sum(axis=2)
    assert (counts == n).all()
    scores = rng.random((8, 32))
    fast = Budget.nm(n, m).project(scores)
    general = project_groups(scores.ravel(), nm_groups(scores.shape, m), n).reshape(8, 32)
    assert np.array_equal(fast, general)


def test_layer_budget_lets_rows_differ_and_counts_exactly():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 16))
    H = X.T @ X
    Wb = rng.standard_normal((6, 16)) * np.array([[0.1], [1], [3], [0.5], [2], [1]])
    bud = budget_from_sparsity(Wb.shape, sparsity=0.5)
    sol = solve_layer(H, Wb, bud, damping=1.0)
    assert int(sol.mask.sum()) == 48
    assert len(set(sol.mask.sum(axis=1).tolist())) > 1  # rows got different budgets
    per_row = solve_layer(H, Wb, budget_from_sparsity(Wb.shape, 0.5, scope="row"), damping=1.0)
    assert (per_row.mask.sum(axis=1) == 8).all()
    assert sol.objective <= per_row.objective + 1e-9  # more freedom, never worse here


def test_chita_beats_one_shot_backsolve_on_a_correlated_layer():
    rng = np.random.default_rng(4)
    d = 64
    X = rng.standard_normal((500, d)) @ (np.eye(d) + 0.4 * rng.standard_normal((d, d)) / 8)
    X *= np.exp(rng.standard_normal(d))
    H = X.T @ X
    Wb = rng.standard_normal((32, d))
    prob = LayerProblem(H, Wb, Budget.layer(32 * d // 2), 0.01 * np.diag(H).mean())
    f = {m: solve_layer(prob, method=m).objective for m in LAYER_METHODS}
    assert f["chita"] < f["backsolve"] < f["magnitude"]
    assert f["iht"] <= f["backsolve"] + 1e-9


def test_input_errors_name_the_argument():
    H = np.eye(4)
    W = np.ones((2, 4))
    with pytest.raises(ValueError, match="H: expected shape"):
        LayerProblem(np.eye(3), W, Budget.per_row(2))
    with pytest.raises(ValueError, match="W_bar: expected a non-empty 2-D"):
        LayerProblem(H, np.ones(4), Budget.per_row(2))
    with pytest.raises(ValueError, match="budget: expected per-row k"):
        LayerProblem(H, W, Budget.per_row(5))
    with pytest.raises(ValueError, match="d_in divisible by 8"):
        LayerProblem(H, W, Budget.nm("2:8"))
    with pytest.raises(TypeError, match="budget: expected a Budget"):
        LayerProblem(H, W, 2)
    with pytest.raises(ValueError, match="damping"):
        LayerProblem(H, W, Budget.per_row(2), damping=-1.0)
    with pytest.raises(ValueError, match="method: expected one of"):
        solve_layer(H, W, Budget.per_row(2), method="sparsegpt")
    with pytest.raises(ValueError, match="exactly one of sparsity"):
        budget_from_sparsity((2, 4), 0.5, "2:4")
    with pytest.raises(ValueError, match="sparsity: expected a number in"):
        budget_from_sparsity((2, 4), 1.5)
    with pytest.raises(ValueError, match="H, W_bar: expected finite"):
        LayerProblem(H * np.nan, W, Budget.per_row(2))


def test_pruned_set_form_of_the_refit_agrees_with_the_kept_set_form():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 12))
    Hd = X.T @ X + 0.05 * np.eye(12)
    Wb = rng.standard_normal((5, 12))
    mask = rng.random((5, 12)) < 0.8  # mostly kept: the pruned-set form is used
    W1, d1 = refit_rows(Hd, Wb, mask, want_inv_diag=True)
    W2, d2 = refit_rows(Hd, Wb, mask, want_inv_diag=True, Hinv=np.linalg.inv(Hd))
    assert np.allclose(W1, W2, atol=1e-9)
    assert np.all(W2[~mask] == 0)
    assert np.allclose(d1[mask], d2[mask]) and np.all(np.isinf(d2[~mask]))
