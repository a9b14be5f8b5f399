"""chita_opt.pruning.damping: the scale-aware grid and the held-out choice (no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chita_opt.pruning.damping import (
    DECADES,
    N_POINTS,
    TOP,
    DampingChoice,
    choose_damping,
    damping_grid,
    fisher_scale,
    split_held_out,
)


def _G(n=30, p=50, scale=1.0, seed=0):
    return scale * np.random.default_rng(seed).standard_normal((n, p)).astype(np.float32)


# ----------------------------------------------------------------- the grid
def test_fisher_scale_is_mean_fisher_diagonal():
    G = _G()
    expected = np.mean(np.diag(G.astype(np.float64).T @ G) / G.shape[0])
    assert fisher_scale(G) == pytest.approx(expected, rel=1e-10)
    sq = (G.astype(np.float64) ** 2).sum(axis=0)
    assert fisher_scale(col_sq_norms=sq, n=G.shape[0]) == pytest.approx(expected, rel=1e-10)


def test_grid_default_shape_and_span():
    G = _G()
    grid = damping_grid(G)
    lam0 = fisher_scale(G)
    assert grid.shape == (N_POINTS,)
    assert np.all(np.diff(grid) < 0), "largest first"
    assert grid[0] == pytest.approx(lam0 * 10**TOP)
    assert math.log10(grid[0] / grid[-1]) == pytest.approx(DECADES)


def test_grid_is_scale_aware():
    # gradients 1000x larger -> Fisher 1e6x larger -> every candidate 1e6x larger
    g1 = damping_grid(_G(scale=1.0), n_points=5, decades=4)
    g2 = damping_grid(_G(scale=1e3), n_points=5, decades=4)
    np.testing.assert_allclose(g2 / g1, 1e6, rtol=1e-5)


def test_grid_options_and_summary_input():
    G = _G()
    sq = (G.astype(np.float64) ** 2).sum(axis=0)
    a = damping_grid(G, n_points=4, decades=3, top=1.0)
    b = damping_grid(col_sq_norms=sq, n=G.shape[0], n_points=4, decades=3, top=1.0)
    np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_allclose(np.log10(a / fisher_scale(G)), [1, 0, -1, -2], atol=1e-12)
    assert damping_grid(G, n_points=1).size == 1


def test_grid_zero_gradients_uses_floor():
    grid = damping_grid(np.zeros((4, 6)), n_points=3, decades=2, top=0, floor=1e-9)
    np.testing.assert_allclose(grid, [1e-9, 1e-10, 1e-11])


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(n_points=0), ValueError),
        (dict(decades=-1), ValueError),
        (dict(decades=0, n_points=3), ValueError),
    ],
)
def test_grid_bad_options(kwargs, err):
    with pytest.raises(err):
        damping_grid(_G(), **kwargs)


def test_fisher_scale_errors():
    with pytest.raises(TypeError, match="exactly one"):
        fisher_scale()
    with pytest.raises(ValueError, match="n:"):
        fisher_scale(col_sq_norms=np.ones(3))
    G = _G()
    G[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fisher_scale(G)


def test_split_held_out():
    fit, held = split_held_out(100, 0.2, seed=0)
    assert held.size == 20 and fit.size == 80
    assert np.intersect1d(fit, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([fit, held])), np.arange(100))
    _, held2 = split_held_out(100, 0.2, seed=None)
    assert np.array_equal(held2, np.arange(80, 100))
    with pytest.raises(ValueError):
        split_held_out(3, 0.01)


# ---------------------------------------------------------------- the choice
def _quadratic_loss(best_log10):
    def held_out_loss(w):
        return (math.log10(w["d"]) - best_log10) ** 2

    return held_out_loss


def test_choose_damping_picks_lowest_loss_and_warm_starts():
    grid = [1e-1, 1e-3, 1e-2, 1e-5, 1e-4]
    calls = []

    def prune_at(d, w0):
        calls.append((d, None if w0 is None else w0["d"]))
        return {"d": d}

    choice = choose_damping(grid, prune_at, _quadratic_loss(-3.2))
    assert isinstance(choice, DampingChoice)
    assert choice.damping == 1e-3 and choice.w == {"d": 1e-3}
    # solved largest first, each from its neighbour
    assert [c[0] for c in calls] == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
    assert [c[1] for c in calls] == [None, 1e-1, 1e-2, 1e-3, 1e-4]
    assert set(choice.losses) == set(grid)
    assert "chosen" in str(choice)


def test_choose_damping_without_warm_start():
    seen = []
    choose_damping([1.0, 0.1], lambda d, w0: seen.append(w0) or {"d": d},
                   _quadratic_loss(0), warm_start=False)
    assert seen == [None, None]


def test_ties_go_to_larger_damping():
    choice = choose_damping([1e-2, 1e-1, 1e-3], lambda d, w0: {"d": d}, lambda w: 1.0)
    assert choice.damping == 1e-1


def test_nan_loss_raises_naming_the_loss_function():
    def my_held_out_loss(w):
        return float("nan") if w["d"] < 1e-2 else 1.0

    with pytest.raises(ValueError, match=r"my_held_out_loss.*non-finite.*0\.001"):
        choose_damping([1e-1, 1e-3], lambda d, w0: {"d": d}, my_held_out_loss)


def test_nan_loss_skipped_is_never_chosen():
    def loss(w):  # NaN would "win" any comparison-based argmin done carelessly
        return float("nan") if w["d"] == 1e-3 else -math.log10(w["d"])

    with pytest.warns(RuntimeWarning, match="skipped"):
        choice = choose_damping([1e-1, 1e-2, 1e-3], lambda d, w0: {"d": d}, loss,
                                on_nonfinite="skip")
    assert choice.damping == 1e-1
    assert math.isnan(choice.losses[1e-3])


def test_all_nan_raises_even_when_skipping():
    def nan_loss(w):
        return float("inf")

    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match=r"nan_loss.*every"):
        choose_damping([1e-1, 1e-2], lambda d, w0: {"d": d}, nan_loss, on_nonfinite="skip")


@pytest.mark.parametrize(
    "candidates, match",
    [([], "at least one"), ([1e-3, -1.0], "non-negative"), ([float("nan")], "NaN")],
)
def test_bad_candidates(candidates, match):
    with pytest.raises(ValueError, match=match):
        choose_damping(candidates, lambda d, w0: d, lambda w: 0.0)


def test_bad_callables_and_values():
    with pytest.raises(TypeError, match="prune_at"):
        choose_damping([1.0], None, lambda w: 0.0)
    with pytest.raises(TypeError, match="evaluate"):
        choose_damping([1.0], lambda d, w0: d, None)
    with pytest.raises(TypeError, match="expected a float loss"):
        choose_damping([1.0], lambda d, w0: d, lambda w: ())
    with pytest.raises(TypeError, match="expected a float loss"):
        choose_damping([1.0], lambda d, w0: d, lambda w: "bad")
    with pytest.raises(ValueError, match="on_nonfinite"):
        choose_damping([1.0], lambda d, w0: d, lambda w: 0.0, on_nonfinite="ignore")


def test_tuple_scores_compare_lexicographically():
    # (error rate, loss): the error decides, the loss breaks ties
    scores = {1e-1: (0.20, 0.5), 1e-2: (0.10, 0.9), 1e-3: (0.10, 0.7), 1e-4: (0.15, 0.1)}
    choice = choose_damping(list(scores), lambda d, w0: {"d": d}, lambda w: scores[w["d"]])
    assert choice.damping == 1e-3
    assert choice.losses[1e-3] == 0.10


def test_nan_inside_tuple_score_raises():
    def error_and_loss(w):
        return (0.1, float("nan"))

    with pytest.raises(ValueError, match="error_and_loss"):
        choose_damping([1.0], lambda d, w0: d, error_and_loss)


def test_infinite_candidate_stands_for_magnitude_pruning():
    calls = []

    def prune_at(d, w0):
        calls.append((d, w0))
        return {"d": d}

    choice = choose_damping([math.inf, 1e-1, 1e-2], prune_at,
                            lambda w: 0.0 if math.isinf(w["d"]) else 1.0)
    assert math.isinf(choice.damping)
    # inf is tried first; the finite chain does not start from the magnitude point
    assert calls == [(math.inf, None), (1e-1, None), (1e-2, {"d": 1e-1})]
