"""chita_opt.pruning.damping: the scale-aware grid and the held-out choice (no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt.pruning.damping import (
    DECADES,
    N_POINTS,
    REFINE_MIN_ERROR_SAMPLES,
    REFINE_MIN_ERROR_SPREAD,
    REFINE_STEPS,
    TOP,
    DampingChoice,
    choose_damping,
    damping_grid,
    errors_differ,
    fisher_scale,
    magnitude_wins,
    min_error_spread,
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


@pytest.mark.parametrize(
    "finite, magnitude, tie, chosen",
    [
        # errors 0.8 points apart (2 of 250 samples): noise, magnitude's lower loss decides
        ((0.844, 2.338), (0.852, 2.275), 0.02, math.inf),
        ((0.844, 2.338), (0.852, 2.275), 0.0, 1e-2),  # without the tie: the error alone
        ((0.844, 2.338), (0.836, 2.400), 0.02, 1e-2),  # either way: the finite loss is lower
        ((0.844, 2.338), (0.836, 2.400), 0.0, math.inf),
        ((0.844, 2.338), (0.852, 2.400), 0.02, 1e-2),  # tied errors, the finite loss is lower
        ((0.800, 2.900), (0.852, 2.275), 0.02, 1e-2),  # 5.2 points: a real difference
        ((0.100, 0.300), (0.119, 0.250), 0.02, math.inf),  # within the tie at any error level
    ],
)
def test_magnitude_tie_lets_the_loss_decide_between_finite_and_magnitude(
    finite, magnitude, tie, chosen
):
    scores = {1e-2: finite, 1e-5: (0.95, 9.0), math.inf: magnitude}
    choice = choose_damping(list(scores), lambda d, w0: {"d": d},
                            lambda w: scores[w["d"]], magnitude_tie=tie)
    assert choice.damping == chosen
    assert choice.w == {"d": chosen}  # the weights of the candidate chosen
    # the CHITA++ guard's comparison of a finished run with magnitude pruning is this one
    assert magnitude_wins(finite, magnitude, tie) == math.isinf(chosen)


def test_magnitude_tie_is_read_after_the_search_and_ignores_loss_only_scores():
    seen = []
    scores = {1e-2: (0.40, 1.0), math.inf: (0.41, 0.5)}

    def evaluate(w):
        seen.append(w["d"])
        return scores[w["d"]]

    def tie():
        assert len(seen) == 2  # every candidate scored before the tie is asked for
        return 0.02

    choice = choose_damping(list(scores), lambda d, w0: {"d": d}, evaluate, magnitude_tie=tie)
    assert math.isinf(choice.damping)
    # a loss alone (regression, language models): nothing to tie, the lower loss wins
    loss_only = {1e-2: 1.0, math.inf: 1.01}
    choice = choose_damping(list(loss_only), lambda d, w0: {"d": d},
                            lambda w: loss_only[w["d"]], magnitude_tie=0.5)
    assert choice.damping == 1e-2
    # no magnitude candidate: nothing changes
    finite_only = {1e-2: (0.40, 1.0), 1e-3: (0.41, 0.5)}
    choice = choose_damping(list(finite_only), lambda d, w0: {"d": d},
                            lambda w: finite_only[w["d"]], magnitude_tie=0.02)
    assert choice.damping == 1e-2


@pytest.mark.parametrize("tie", [-0.01, float("nan"), float("inf"), "0.02x", None])
def test_magnitude_tie_must_be_a_non_negative_number(tie):
    calls = []
    with pytest.raises(ValueError, match="magnitude_tie: expected a non-negative"):
        choose_damping([1e-2, math.inf], lambda d, w0: calls.append(d) or d,
                       lambda w: (0.1, 0.2), magnitude_tie=tie)
    assert calls == []  # rejected before any solve
    with pytest.raises(ValueError, match="magnitude_tie: expected a non-negative"):
        choose_damping([1e-2, math.inf], lambda d, w0: d, lambda w: (0.1, 0.2),
                       magnitude_tie=lambda: tie)


# ------------------------------------------------------------ the refinement
def _valley(best_exp, magnitude=3.0):
    """A held-out score with one valley at 10**best_exp (log-distance from it);
    magnitude pruning (damping inf) scores ``magnitude``."""
    def evaluate(d):
        return magnitude if math.isinf(d) else abs(math.log10(d) - best_exp)
    return evaluate


def _identity(d, _):
    return d


GRID = [10.0, 1e-3, 1e-7, math.inf]


@pytest.mark.parametrize(
    ("best_exp", "magnitude", "refined", "chosen"),
    [
        # grid best 1e-3; its better neighbour is 10: midpoint 1e-1 wins; then
        # toward 1e-3 (better than 10 now): 1e-2 does not
        (-1.2, 3.0, [1e-1, 1e-2], 1e-1),
        (-4.6, 3.0, [1e-5, 1e-4], 1e-5),
        # the smallest candidate is best: nothing below it is tried
        (-8.4, 3.0, [], 1e-7),
        # the largest finite one is best and magnitude beat 1e-3: mirrored upward
        (1.7, 3.0, [1e3, 1e2], 1e2),
        # ... and magnitude scored worst: toward 1e-3 instead
        (0.4, 100.0, [1e-1, 1e0], 1e0),
    ],
)
def test_refine_bisects_toward_the_better_neighbour(best_exp, magnitude, refined, chosen):
    evaluate = _valley(best_exp, magnitude)
    choice = choose_damping(GRID, _identity, evaluate, refine=2)
    assert choice.refined == pytest.approx(refined, rel=1e-9)
    assert choice.damping == pytest.approx(chosen, rel=1e-9)
    assert choice.order[: len(GRID)] == sorted(GRID, reverse=True)
    assert choice.order[len(GRID):] == choice.refined


def test_refine_ties_keep_the_larger_damping():
    # 10 and 1 are both 0.5 away from the valley: the refined 1 does not replace 10
    choice = choose_damping(GRID, _identity, _valley(0.5, 100.0), refine=2)
    assert choice.refined == pytest.approx([1e-1, 1e0])
    assert choice.damping == 10.0


def test_refine_after_magnitude_wins_bisects_between_finite_dampings():
    choice = choose_damping(GRID, _identity, _valley(-1.2, 1.5), refine=2)
    # grid: 10 -> 2.2, 1e-3 -> 1.8, 1e-7 -> 5.8, magnitude 1.5 (best); best finite 1e-3,
    # its better finite neighbour 10: midpoint 1e-1 (0.2) wins, then as usual
    assert choice.refined == pytest.approx([1e-1, 1e-2])
    assert choice.damping == pytest.approx(1e-1)
    # magnitude stays best: the bisection goes on between finite dampings
    choice = choose_damping(GRID, _identity, _valley(-1.2, 0.0), refine=2)
    assert choice.refined == pytest.approx([1e-1, 1e-2]) and math.isinf(choice.damping)


def _errors(table):
    """(error, loss) scores: the error from ``table`` (refinement points: 0.30),
    the loss a constant -- only the errors rank."""
    return lambda d: (table.get(d, 0.30), 1.0)


@pytest.mark.parametrize(
    ("errors", "both"),
    [
        # best 1e-3, its neighbours 10 and 1e-7 within 2 points: both midpoints
        ({10.0: 0.41, 1e-3: 0.32, 1e-7: 0.40, math.inf: 0.60}, [1e-5, 1e-1]),
        # best 10, between 1e-3 and magnitude pruning (tied): the lower midpoint and
        # the gap mirrored upward
        ({10.0: 0.32, 1e-3: 0.42, 1e-7: 0.60, math.inf: 0.43}, [1e-1, 1e3]),
    ],
)
def test_refine_probes_both_sides_when_the_neighbours_tie(errors, both):
    # as on the GroupNorm CNN at 0.9 (docs/benchmarks_zoo.md): the better-scoring
    # neighbour was a few held-out samples better, and the optimum on the other side
    choice = choose_damping(GRID, _identity, _errors(errors), refine=2, neighbour_tie=0.02)
    assert choice.refined == pytest.approx(both, rel=1e-9)
    assert choice.order[len(GRID):] == choice.refined
    # a callable is read once the grid is scored; more steps bisect on from the best
    choice = choose_damping(GRID, _identity, _errors({**errors, both[0]: 0.1}), refine=3,
                            neighbour_tie=lambda: 0.02)
    assert choice.refined[:2] == pytest.approx(both, rel=1e-9) and len(choice.refined) == 3
    assert choice.damping == pytest.approx(both[0])


@pytest.mark.parametrize(
    "kwargs",
    [dict(neighbour_tie=None), dict(neighbour_tie=0.005), dict(neighbour_tie=0.02, refine=1)],
)
def test_refine_goes_one_way_unless_the_neighbours_tie_within_the_bar(kwargs):
    errors = {10.0: 0.41, 1e-3: 0.32, 1e-7: 0.40, math.inf: 0.60}
    choice = choose_damping(GRID, _identity, _errors(errors), **{"refine": 2, **kwargs})
    one_way = choose_damping(GRID, _identity, _errors(errors), refine=kwargs.get("refine", 2))
    assert choice.refined == one_way.refined
    assert choice.refined[0] == pytest.approx(1e-5)  # toward the better neighbour, 1e-7


def test_neighbour_tie_ignores_loss_only_scores_and_must_be_a_number():
    # loss-only scores (no error rate): never both sides
    choice = choose_damping(GRID, _identity, _valley(-4.6), refine=2, neighbour_tie=0.5)
    assert choice.refined == pytest.approx([1e-5, 1e-4])
    calls = []
    with pytest.raises(ValueError, match="neighbour_tie: expected a non-negative"):
        choose_damping(GRID, lambda d, w0: calls.append(d) or d, _valley(-4.6), refine=2,
                       neighbour_tie=-0.1)
    assert calls == []
    with pytest.raises(ValueError, match="neighbour_tie: expected a non-negative"):
        choose_damping(GRID, _identity, _errors({}), refine=2, neighbour_tie=lambda: "x")


def test_refine_stops_where_there_is_nothing_to_bisect():
    # magnitude chosen with a single finite damping: nothing to bisect
    assert choose_damping([1e-3, math.inf], _identity, _valley(0.0, -1.0), refine=2).refined == []
    # one finite candidate next to magnitude: no gap to halve
    assert choose_damping([1e-3, math.inf], _identity, _valley(-4.0), refine=2).refined == []
    # refine=0 (the default) tries the grid only
    assert choose_damping(GRID, _identity, _valley(-4.6)).refined == []
    with pytest.raises(ValueError, match="refine"):
        choose_damping(GRID, _identity, _valley(-4.6), refine=-1)


def test_refine_if_sees_the_grid_scores_and_can_veto():
    seen = []

    def refine_if(scores):
        seen.append(scores)
        return False

    choice = choose_damping(GRID, _identity, lambda d: (0.1, _valley(-4.6)(d)), refine=2,
                            refine_if=refine_if)
    assert choice.refined == []
    assert len(seen) == 1 and len(seen[0]) == 3 and all(len(sc) == 2 for sc in seen[0])


def test_errors_differ():
    spread = REFINE_MIN_ERROR_SPREAD
    assert errors_differ([(0.10, 1.0), (0.10 + spread, 0.5)])
    assert not errors_differ([(0.10, 1.0), (0.10 + spread / 2, 0.5), (0.10, 0.2)])
    assert errors_differ([(0.10, 1.0), (0.10 + spread / 2, 0.5)], min_spread=spread / 4)
    assert errors_differ([(1.0,), (1.0,)])  # loss-only scores: always refine
    assert REFINE_STEPS >= 1


def test_min_error_spread_is_two_points_up_to_250_samples_then_a_few_samples():
    assert min_error_spread(None) == min_error_spread(0) == REFINE_MIN_ERROR_SPREAD
    assert min_error_spread(200) == min_error_spread(250) == REFINE_MIN_ERROR_SPREAD
    assert min_error_spread(10_000) == pytest.approx(REFINE_MIN_ERROR_SAMPLES / 10_000)


def test_refined_points_warm_start_from_the_best_so_far():
    starts = []

    def prune_at(d, w0):
        starts.append((d, w0))
        return d

    choose_damping(GRID, prune_at, _valley(-4.6), refine=2)
    (d1, w1), (d2, w2) = starts[len(GRID):]
    assert (d1, w1, d2, w2) == pytest.approx((1e-5, 1e-3, 1e-4, 1e-5), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=4, max_size=4),
       st.lists(st.floats(0.0, 10.0), min_size=2, max_size=2), st.integers(0, 3))
def test_refine_keeps_the_best_of_everything_tried(grid_scores, extra_scores, steps):
    table = dict(zip(GRID, grid_scores, strict=True))
    extra = iter(extra_scores + [5.0] * 3)

    def evaluate(d):
        if d not in table:
            table[d] = next(extra)
        return table[d]

    choice = choose_damping(GRID, _identity, evaluate, refine=steps)
    assert len(choice.refined) <= steps
    assert len(set(choice.order)) == len(choice.order), "no damping solved twice"
    best = min(table[d] for d in choice.order)
    assert table[choice.damping] == best
    # ties go to the larger damping
    assert choice.damping == max(d for d in choice.order if table[d] == best)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.floats(0.0, 5.0)), min_size=4, max_size=4),
       st.integers(0, 3), st.sampled_from([0.0, 0.02, 0.05]),
       st.sampled_from([None, 0.0, 0.02, 0.05]))
def test_magnitude_tie_only_trades_noise_in_the_error_for_a_lower_loss(raw, steps, tie,
                                                                       neighbour_tie):
    # errors on 200 held-out samples (multiples of 0.005), losses arbitrary; the grid's
    # largest point is magnitude pruning
    grid = [math.inf, 1e-2, 1e-4, 1e-6]
    table = {d: (e / 200, loss) for d, (e, loss) in zip(grid, raw, strict=True)}

    def evaluate(d):
        return table.setdefault(d, (0.2, 5.0))  # refinement points

    choice = choose_damping(grid, _identity, evaluate, refine=steps, magnitude_tie=tie,
                            neighbour_tie=neighbour_tie)
    assert len(choice.refined) <= steps
    assert len(set(choice.order)) == len(choice.order), "no damping solved twice"
    tried = {d: table[d] for d in choice.order}
    lexical = min(tried, key=lambda d: (tried[d], -d))
    best_finite = min((d for d in tried if math.isfinite(d)), key=lambda d: (tried[d], -d))
    mag = tried[math.inf]
    if choice.damping != lexical:
        # the only departure from the lexicographic rule: the pair (best finite,
        # magnitude) within the tie, decided by the lower loss
        pair = {best_finite, math.inf}
        assert lexical in pair and choice.damping in pair
        assert abs(tried[best_finite][0] - mag[0]) <= tie
        assert tried[choice.damping][1] <= tried[lexical][1]
    # never worse than magnitude pruning's held-out error by more than the tie
    assert tried[choice.damping][0] <= mag[0] + tie + 1e-12
