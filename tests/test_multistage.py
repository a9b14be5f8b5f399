"""The framework-agnostic multi-stage loop (CHITA++) on a least-squares "network"."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chita_opt
from chita_opt import L0Problem, k_from_sparsity
from chita_opt.pruning import (
    ParamLayout,
    PruneReport,
    multistage_prune,
    select_damping,
    sparsity_schedule,
)

METHOD = "chita"  # the default pipeline


class LeastSquaresNet:
    """Loss (1/2N) sum_i (x_i^T w - t_i)^2 with per-sample gradients (x_i^T w - t_i) x_i."""

    def __init__(self, n=60, p=40, seed=0):
        rng = np.random.default_rng(seed)
        self.X = rng.normal(size=(n, p))
        w_true = rng.normal(size=p) * (rng.random(p) < 0.5)
        self.t = self.X @ w_true + 0.1 * rng.normal(size=n)
        self.w0 = np.linalg.lstsq(self.X, self.t, rcond=None)[0]
        self.calls = []

    def loss(self, w):
        r = self.X @ w - self.t
        return 0.5 * float(r @ r) / len(r)

    def gradient_fn(self, w, columns):
        self.calls.append((w.copy(), columns.copy()))
        r = self.X @ w - self.t
        return (r[:, None] * self.X)[:, columns]


def test_one_stage_equals_a_direct_solve():
    net = LeastSquaresNet()
    rep = multistage_prune(
        net.w0, net.gradient_fn, sparsity=0.6, method="backsolve", progress=False
    )
    G = net.gradient_fn(net.w0, np.ones(net.w0.size, bool))
    direct = chita_opt.solve(
        L0Problem.from_gradients(G, net.w0, sparsity=0.6, damping=1e-3), method="backsolve"
    )
    np.testing.assert_allclose(rep.weights, direct.w, rtol=1e-10, atol=1e-12)
    assert rep.objective == pytest.approx(direct.objective, rel=1e-10)
    assert rep.mask.sum() == k_from_sparsity(net.w0.size, 0.6)


def test_pruned_weights_stay_pruned_and_memory_is_n_by_p_alive():
    net = LeastSquaresNet()
    p = net.w0.size
    rep = multistage_prune(
        net.w0,
        net.gradient_fn,
        sparsity=0.8,
        stages=5,
        schedule="linear",
        method=METHOD,
        progress=False,
    )
    ks = [r.k for r in rep.stages]
    assert ks == [k_from_sparsity(p, s) for s in sparsity_schedule(0.8, 5, "linear")]
    assert len(net.calls) == 5
    # stage t asks for gradients of exactly the weights kept by stage t-1, at those weights
    alive = np.ones(p, bool)
    for (w_seen, cols), k_prev in zip(net.calls, [p, *ks[:-1]], strict=True):
        assert cols.sum() == k_prev
        assert not np.any(cols & ~alive)
        assert not np.any(w_seen[~cols])
        alive = cols
    assert np.count_nonzero(rep.weights) == rep.k == ks[-1]
    assert not np.any(rep.weights[~rep.mask])
    assert not np.any(rep.mask & ~net.calls[-1][1])


def test_first_order_term_is_the_sum_of_gradient_rows():
    net = LeastSquaresNet()
    # move away from the least-squares optimum so that the mean gradient is not ~0
    w = net.w0 + 0.3
    rep = multistage_prune(
        w,
        net.gradient_fn,
        sparsity=0.5,
        method="backsolve",
        first_order=True,
        first_order_scale=0.5,
        progress=False,
    )
    G = net.gradient_fn(w, np.ones(w.size, bool))
    prob = L0Problem.from_gradients(
        G, w, sparsity=0.5, damping=1e-3, first_order=True, first_order_scale=0.5
    )
    np.testing.assert_allclose(prob.c, 0.5 * G.sum(axis=0))
    assert rep.objective == pytest.approx(prob.objective(rep.weights), rel=1e-9)
    without = multistage_prune(w, net.gradient_fn, sparsity=0.5, method="backsolve", progress=False)
    assert not np.allclose(rep.weights, without.weights)


def test_magnitude_needs_no_gradients():
    rng = np.random.default_rng(1)
    w = rng.normal(size=50)
    rep = multistage_prune(w, None, sparsity=0.7, stages=3, method="magnitude", progress=False)
    k = k_from_sparsity(50, 0.7)
    keep = np.argsort(-np.abs(w))[:k]
    expected = np.zeros_like(w)
    expected[keep] = w[keep]
    np.testing.assert_array_equal(rep.weights, expected)
    assert rep.objective is None


def test_initial_mask_is_respected_and_sparser_stages_are_skipped():
    net = LeastSquaresNet()
    p = net.w0.size
    mask = np.ones(p, bool)
    mask[::2] = False  # half the weights already pruned
    rep = multistage_prune(
        net.w0,
        net.gradient_fn,
        sparsity=0.7,
        stages=3,
        schedule="linear",
        base_level=0.2,
        mask=mask,
        method="backsolve",
        progress=False,
    )
    assert next(r.status for r in rep.stages) == "skipped"  # 0.2 < 0.5 already pruned
    assert all(not c[~mask].any() for _, c in net.calls)
    assert not rep.weights[~mask].any()
    assert np.count_nonzero(rep.weights) == k_from_sparsity(p, 0.7)


def test_report_has_layers_times_and_a_readable_table():
    net = LeastSquaresNet(p=40)
    layout = ParamLayout(["a", "b"], [(5, 4), (20,)])
    rep = multistage_prune(
        net.w0,
        net.gradient_fn,
        sparsity=0.5,
        stages=2,
        method="backsolve",
        layout=layout,
        progress=False,
        options={"n_samples": 60},
    )
    assert isinstance(rep, PruneReport)
    assert [la.name for la in rep.layers] == ["a", "b"]
    assert sum(la.n_nonzero for la in rep.layers) == rep.n_nonzero == 20
    assert rep.achieved_sparsity == pytest.approx(0.5)
    assert rep.gradient_time >= 0 and rep.solve_time > 0 and rep.total_time >= rep.solve_time
    text = str(rep)
    for piece in ("stage", "objective", "a", "5x4", "total", "n_samples=60", "backsolve"):
        assert piece in text
    assert rep.to_dict()["layers"][1]["size"] == 20


def test_gradient_errors_are_annotated_with_the_stage():
    net = LeastSquaresNet()
    state = {"calls": 0}

    def flaky(w, columns):
        state["calls"] += 1
        if state["calls"] == 2:
            raise FloatingPointError("boom")
        return net.gradient_fn(w, columns)

    with pytest.raises(FloatingPointError, match="boom") as info:
        multistage_prune(net.w0, flaky, sparsity=0.5, stages=3, method="backsolve", progress=False)
    assert any("stage 2" in note for note in info.value.__notes__)


def test_bad_solver_status_raises(monkeypatch):
    from chita_opt.result import Solution
    from chita_opt.solvers import _REGISTRY

    def broken(problem):
        return Solution(np.zeros(problem.p), np.empty(0, np.int64), 0.0, "unbounded", "no min")

    monkeypatch.setitem(_REGISTRY, "broken_for_test", broken)
    net = LeastSquaresNet()
    with pytest.raises(
        RuntimeError,
        match=r"stage 1: method 'broken_for_test' returned status 'unbounded'.*larger damping",
    ):
        multistage_prune(
            net.w0, net.gradient_fn, sparsity=0.5, method="broken_for_test", progress=False
        )


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"sparsity": 1.0}, ValueError, r"sparsity: expected a number in \[0, 1\)"),
        ({"method": "nope"}, ValueError, "method: expected one of"),
        ({"damping": -1.0}, ValueError, "damping: expected a finite non-negative"),
        ({"first_order": 1}, TypeError, "first_order: expected a bool"),
        ({"mask": np.ones(3, bool)}, ValueError, "mask: expected a boolean array of length 40"),
        ({"mask": np.ones(40)}, TypeError, "mask: expected a boolean array"),
        ({"layout": ParamLayout(["a"], [(3,)])}, ValueError, "layout: expected a layout of 40"),
        ({"max_columns": 10}, ValueError, "max_columns: only meaningful with blocks"),
        ({"block_size": 10, "blocks": [(0, 40)]}, TypeError, "block_size/blocks"),
        ({"executor": object(), "block_size": 10}, TypeError, "executor: expected an object"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    net = LeastSquaresNet()
    args = {"sparsity": 0.5, "method": "backsolve", "progress": False, **kwargs}
    with pytest.raises(exc, match=match):
        multistage_prune(net.w0, net.gradient_fn, **args)
    assert net.calls == []  # rejected before any gradient was computed


def test_gradient_fn_with_the_wrong_shape_is_reported():
    net = LeastSquaresNet()
    with pytest.raises(ValueError, match=r"gradient_fn: expected an \(n, 40\) array"):
        multistage_prune(
            net.w0, lambda w, c: net.X[:, :5], sparsity=0.5, method="backsolve", progress=False
        )
    with pytest.raises(TypeError, match="gradient_fn: expected a callable"):
        multistage_prune(net.w0, None, sparsity=0.5, method="backsolve", progress=False)


def test_select_damping_keeps_the_lowest_held_out_loss():
    net = LeastSquaresNet(n=40, p=30, seed=3)
    held = LeastSquaresNet(n=200, p=30, seed=3)  # same w_true and X law: fresh samples
    rng = np.random.default_rng(4)
    held.X = rng.normal(size=(200, 30))
    held.t = held.X @ np.linalg.lstsq(net.X, net.t, rcond=None)[0]

    def run(d):
        return multistage_prune(
            net.w0, net.gradient_fn, sparsity=0.6, damping=d, method="backsolve", progress=False
        )

    grid = [1e-6, 1e-2, 1.0, 100.0]
    sel = select_damping(run, lambda rep: held.loss(rep.weights), grid)
    assert set(sel.losses) == set(grid)
    assert sel.losses[sel.damping] == min(sel.losses.values())
    assert held.loss(sel.report.weights) == pytest.approx(sel.losses[sel.damping])
    assert "chosen" in str(sel)
    with pytest.raises(RuntimeError, match="non-finite"):
        select_damping(run, lambda rep: float("nan"), [1e-3])
    with pytest.raises(TypeError, match="grid: expected a sequence"):
        select_damping(run, lambda rep: 0.0, 0.1)


def test_select_damping_ranks_scores_by_error_then_loss():
    from chita_opt.pruning.damping import Score

    # a fake run per damping: its score is looked up, not computed
    scores = {1.0: Score(loss=0.30, error=0.20), 0.1: Score(loss=0.50, error=0.10),
              0.01: Score(loss=0.40, error=0.10), 1e-3: Score(loss=0.10, error=float("nan"))}

    def run(d):
        return PruneReport(method="backsolve", sparsity=0.0, k=1, p=1,
                           weights=np.array([d]), mask=np.ones(1, bool))

    sel = select_damping(run, lambda rep: scores[float(rep.weights[0])], list(scores))
    # the error decides (0.1 < 0.2 although its loss is higher), the loss breaks the tie,
    # and a non-finite score is never chosen even with the lowest loss
    assert sel.damping == 0.01
    assert sel.losses == {d: sc.loss for d, sc in scores.items()}
    assert sel.errors[0.1] == 0.10 and np.isnan(sel.errors[1e-3])
    assert sel.report.options["damping_errors"]["0.01"] == 0.10
    assert "error 0.1000" in str(sel)
    # plain floats: the loss alone, no errors recorded
    plain = select_damping(run, lambda rep: scores[float(rep.weights[0])].loss, list(scores))
    assert plain.damping == 1e-3 and plain.errors is None
    with pytest.raises(TypeError, match="evaluate: expected a float loss or a Score, got 'bad'"):
        select_damping(run, lambda rep: "bad", [1.0])
    with pytest.raises(RuntimeError, match=r"non-finite held-out score.*errors"):
        select_damping(run, lambda rep: Score(loss=1.0, error=float("nan")), [1.0])


@settings(max_examples=25, deadline=None)
@given(
    s=st.floats(0.05, 0.95),
    stages=st.integers(1, 4),
    schedule=st.sampled_from(["exp", "poly", "linear", "const"]),
    seed=st.integers(0, 10_000),
)
def test_exactly_k_survive_for_any_schedule(s, stages, schedule, seed):
    net = LeastSquaresNet(n=30, p=25, seed=seed)
    rep = multistage_prune(
        net.w0,
        net.gradient_fn,
        sparsity=s,
        stages=stages,
        schedule=schedule,
        method="backsolve",
        progress=False,
    )
    k = k_from_sparsity(25, s)
    assert rep.mask.sum() == k
    assert np.count_nonzero(rep.weights) <= k
    assert not np.any(rep.weights[~rep.mask])


def test_solver_option_typos_are_rejected_before_any_gradient():
    net = LeastSquaresNet()
    with pytest.raises(TypeError, match="does not accept option"):
        multistage_prune(
            net.w0,
            net.gradient_fn,
            sparsity=0.5,
            method="backsolve",
            solver_options={"max_itr": 3},
            progress=False,
        )
    assert net.calls == []


# tiny synthetic nets move far from their weights: the warning is expected
@pytest.mark.filterwarnings("ignore::chita_opt.pruning.ModelValidityWarning")
def test_wide_intermediate_stages_skip_swaps_and_the_last_stage_does_not(monkeypatch):
    import chita_opt.solvers as solvers

    seen = []
    real_solve = solvers.solve

    def recording_solve(problem, method, **options):
        seen.append((problem.k, problem.n, options.get("max_swaps")))
        return real_solve(problem, method=method, **options)

    monkeypatch.setattr(solvers, "solve", recording_solve)
    net = LeastSquaresNet(n=5, p=40)
    multistage_prune(net.w0, net.gradient_fn, sparsity=0.9, stages=4, schedule="linear",
                     method="chita", progress=False)
    assert len(seen) == 4
    for i, (k, n, max_swaps) in enumerate(seen):
        wide_and_intermediate = k > 3 * n and i < len(seen) - 1
        assert max_swaps == (0 if wide_and_intermediate else None), (i, k, n, max_swaps)
    assert any(s[2] == 0 for s in seen) and seen[-1][2] is None
    # an explicit choice wins
    seen.clear()
    multistage_prune(net.w0, net.gradient_fn, sparsity=0.9, stages=4, schedule="linear",
                     method="chita", solver_options={"max_swaps": 7}, progress=False)
    assert [s[2] for s in seen] == [7, 7, 7, 7]


def test_stages_record_how_far_they_moved_the_weights_and_warn_when_too_far():
    import warnings

    net = LeastSquaresNet()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a normal run: no warning
        rep = multistage_prune(net.w0, net.gradient_fn, sparsity=0.8, stages=3, progress=False)
    w_prev = net.w0
    seen = [*net.calls[1:], (rep.weights, None)]
    for stage, (w_seen, _) in zip(rep.stages, seen, strict=True):
        expected = np.linalg.norm(w_seen - w_prev) / np.linalg.norm(w_prev)
        assert stage.weight_change == pytest.approx(expected, rel=1e-12)
        w_prev = w_seen
    assert "|dw|/|w|" in rep.to_table()
    # Far from a stationary point the first-order term with no damping jumps to
    # the least-squares fit, more than twice the norm of the starting weights away.
    start = 0.05 * net.w0
    from chita_opt.pruning import ModelValidityWarning

    with pytest.warns(ModelValidityWarning,
                      match=r"stage 1 moved the weights by .* Increase `damping`"):
        far = multistage_prune(start, net.gradient_fn, sparsity=0.5, first_order=True,
                               damping=0.0, progress=False)
    assert far.stages[0].weight_change > 1.0


def test_damping_selection_warns_only_about_the_chosen_candidate():
    import warnings

    from chita_opt.pruning import ModelValidityWarning

    net = LeastSquaresNet()
    start = 0.05 * net.w0  # far from stationary: damping 0 jumps far, 10 barely moves

    def run(d):
        return multistage_prune(start, net.gradient_fn, sparsity=0.5, first_order=True,
                                damping=d, progress=False)

    def evaluate_quiet(rep):  # prefers the quiet candidate
        return float(rep.stages[0].weight_change)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelValidityWarning)
        sel = select_damping(run, evaluate_quiet, grid=[0.0, 10.0])
    assert sel.damping == 10.0
    with pytest.warns(ModelValidityWarning, match="with the chosen damping 0, stage 1"):
        sel = select_damping(run, lambda rep: -evaluate_quiet(rep), grid=[0.0, 10.0])
    assert sel.damping == 0.0


def _auto_run_with_early_ties(**kwargs):
    """CHITA++ with damping="auto" on a net whose held-out score ties until the last stage
    (so a search there would tie); checks that every stage before the last used
    STAGE_DAMPING * lambda_0 of its own gradients. Returns the report."""
    from chita_opt.pruning.damping import STAGE_DAMPING, fisher_scale

    net = LeastSquaresNet(n=80, p=30, seed=3)

    def evaluate(w):  # constant until the last stage: every candidate ties
        return 1.0 if np.count_nonzero(w) > 10 else net.loss(w)

    report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=4,
                              damping="auto", evaluate=evaluate, method=METHOD, progress=False,
                              **kwargs)
    for rec, (w_at, columns) in zip(report.stages[:-1], net.calls, strict=False):
        G = net.gradient_fn(w_at, columns)
        assert rec.damping == pytest.approx(STAGE_DAMPING * fisher_scale(G), rel=1e-9)
        assert np.isfinite(rec.damping)
    return report


def test_auto_stages_before_the_last_use_a_share_of_their_own_fisher_scale():
    """damping="auto" in CHITA++: no search before the last stage (the held-out scores of a
    nearly dense network tie, and a tie once chose magnitude pruning for every later stage);
    STAGE_DAMPING * lambda_0 of each stage's own gradients instead, and a search at the end."""
    from chita_opt.pruning.damping import N_POINTS, REFINE_STEPS

    report = _auto_run_with_early_ties()
    *middle, last = report.stages
    assert all(rec.damping_losses is None for rec in middle)
    # the grid (N_POINTS dampings and magnitude pruning) and up to REFINE_STEPS bisection points
    grid = N_POINTS + 1
    assert last.damping_losses is not None
    assert grid <= len(last.damping_losses) <= grid + REFINE_STEPS
    # the ties did not end at magnitude pruning (the one-shot guard may prefer one-shot CHITA)
    assert report.options.get("fallback") != "magnitude"


def test_auto_stages_never_end_below_one_shot_magnitude_on_held_out():
    net = LeastSquaresNet(n=80, p=30, seed=4)
    k = k_from_sparsity(net.w0.size, 0.7)
    magnitude = np.zeros_like(net.w0)
    top = np.argsort(-np.abs(net.w0))[:k]
    magnitude[top] = net.w0[top]

    def evaluate(w):  # a held-out set that prefers exactly the one-shot magnitude point
        return 0.0 if np.array_equal(w, magnitude) else 1.0 + net.loss(w)

    with pytest.warns(chita_opt.pruning.ModelValidityWarning,
                      match="below one-shot magnitude") as caught:
        report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=3,
                                  damping="auto", evaluate=evaluate, method=METHOD, progress=False)
    assert {w.filename for w in caught} == {__file__}  # at the caller's line
    assert report.options["fallback"] == "magnitude"
    assert "returned: one-shot magnitude pruning" in str(report)
    np.testing.assert_array_equal(report.weights, magnitude)
    assert report.mask.sum() == k


def test_auto_stages_return_the_one_shot_prune_when_it_scores_better_on_held_out():
    """CHITA++ with damping="auto" solves the whole run's one-shot problem from its first
    stage's gradients (what stages=1 returns) and returns it when the held-out samples
    prefer it; otherwise the multi-stage weights, with the one-shot score in the report."""
    net = LeastSquaresNet(n=80, p=30, seed=5)
    one = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=1, damping="auto",
                           evaluate=net.loss, method=METHOD, progress=False)
    w_one = one.weights.copy()

    def prefers_one_shot(w):
        return 0.0 if np.array_equal(w, w_one) else 1.0 + net.loss(w)

    with pytest.warns(chita_opt.pruning.ModelValidityWarning, match="below one-shot pruning"):
        report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=3,
                                  damping="auto", evaluate=prefers_one_shot, method=METHOD,
                                  progress=False)
    assert report.options["fallback"] == "one-shot"
    np.testing.assert_array_equal(report.weights, w_one)
    # the table says so, in the warning's words
    assert f"returned: one-shot pruning (damping {one.options['damping']:.3g})" in report.to_table()
    assert report.options["damping"] == one.options["damping"]
    assert report.options["one_shot"]["damping"] == one.options["damping"]
    assert len(report.stages) == 3  # the multi-stage run that was tried stays in the report

    def prefers_stages(w):  # the one-shot weights score worst: the stages are kept
        return 2.0 if np.array_equal(w, w_one) else net.loss(w)

    kept = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=3, damping="auto",
                            evaluate=prefers_stages, method=METHOD, progress=False)
    assert "fallback" not in kept.options
    assert kept.options["one_shot"]["held_out_loss"] >= kept.stages[-1].held_out_loss
    assert not np.array_equal(kept.weights, w_one)
    assert np.count_nonzero(kept.weights) == kept.k


def test_one_shot_candidates_the_held_out_samples_cannot_score_are_skipped():
    """A NaN held-out score in the guard's one-shot search skips that candidate (with a
    warning) instead of failing a multi-stage run that needs no such candidate."""
    net = LeastSquaresNet(n=80, p=30, seed=7)
    calls = []

    def evaluate(w):  # the first two scores are the one-shot search's grid candidates
        calls.append(1)
        return float("nan") if len(calls) <= 2 else net.loss(w)

    with pytest.warns(RuntimeWarning, match="candidate skipped"):
        report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=3,
                                  damping="auto", evaluate=evaluate, method=METHOD,
                                  progress=False)
    assert np.isfinite(report.options["one_shot"]["held_out_loss"])
    assert np.count_nonzero(report.weights) == report.k


@pytest.mark.parametrize("extra", [
    {"block_size": 8},                                              # blocks
    {"groups": np.repeat(np.arange(10), 4), "group_cap": 2},         # 2:4 groups
])
def test_one_shot_fallback_keeps_blocks_and_group_caps(extra):
    """The one-shot weights the guard may return are the stages=1 prune with the same
    blocks or N:M caps -- so they keep every constraint of the run."""
    net = LeastSquaresNet(n=80, p=40, seed=6)
    kw = dict(sparsity=0.5, damping="auto", method=METHOD, progress=False, **extra)
    w_one = multistage_prune(net.w0, net.gradient_fn, stages=1, evaluate=net.loss,
                             **kw).weights.copy()

    def prefers_one_shot(w):
        return 0.0 if np.array_equal(w, w_one) else 1.0 + net.loss(w)

    with pytest.warns(chita_opt.pruning.ModelValidityWarning, match="below one-shot pruning"):
        report = multistage_prune(net.w0, net.gradient_fn, stages=3,
                                  evaluate=prefers_one_shot, **kw)
    assert report.options["fallback"] == "one-shot"
    np.testing.assert_array_equal(report.weights, w_one)
    assert np.count_nonzero(report.weights) == report.k
    if "groups" in extra:
        per_group = np.bincount(extra["groups"], weights=report.weights != 0)
        assert (per_group == 2).all()


def test_auto_bisects_toward_the_best_damping_only_where_held_out_errors_differ():
    """The pipeline's search: the grid, then bisection points between grid dampings when
    the held-out errors differ (a score that prefers the solution at lambda_0 * 10^-2.5),
    and the grid alone when every candidate has the same held-out error."""
    from chita_opt.pruning.damping import N_POINTS, Score, damping_grid, fisher_scale

    # fewer rows than kept weights: the solution moves with the damping over many decades
    net = LeastSquaresNet(n=25, p=60, seed=3)
    G = net.gradient_fn(net.w0, np.ones(net.w0.size, bool))
    lam0 = fisher_scale(G)
    k = k_from_sparsity(net.w0.size, 0.5)
    target = lam0 * 10**-2.5  # the first bisection point between the grid's 10^0 and 10^-5
    w_star = chita_opt.solve(L0Problem.from_gradients(G, net.w0, k=k, damping=target),
                             method=METHOD).w

    def distance(w):  # lowest at the solution for the target damping
        return float(np.linalg.norm(w - w_star))

    report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.5, damping="auto",
                              evaluate=lambda w: Score(distance(w), error=distance(w)),
                              method=METHOD, progress=False)
    tried = report.stages[-1].damping_losses
    grid = {*damping_grid(scale=lam0), math.inf}
    refined = [d for d in tried if not any(math.isclose(d, g) for g in grid)]
    assert len(tried) == N_POINTS + 1 + len(refined) and 1 <= len(refined) <= 2
    assert report.stages[-1].damping == pytest.approx(target, rel=1e-6)
    np.testing.assert_allclose(report.weights, w_star, atol=1e-12)

    flat = multistage_prune(net.w0, net.gradient_fn, sparsity=0.5, damping="auto",
                            evaluate=lambda w: Score(distance(w), error=0.1),
                            method=METHOD, progress=False)
    assert len(flat.stages[-1].damping_losses) == N_POINTS + 1  # the grid and magnitude

    # errors that differ by less than 2 points: significant on 10,000 held-out samples,
    # not on 200
    def close_errors(n):
        return lambda w: Score(distance(w), error=0.1 + 0.1 * distance(w), n=n)

    for n, searched in ((200, N_POINTS + 1), (10_000, len(tried))):
        rep = multistage_prune(net.w0, net.gradient_fn, sparsity=0.5, damping="auto",
                               evaluate=close_errors(n), method=METHOD, progress=False)
        assert len(rep.stages[-1].damping_losses) == searched, n


def _one_point_worse_magnitude(net, sparsity):
    """One-shot magnitude pruning at ``sparsity``, and ``held_out(n)``: held-out scores on
    ``n`` samples where it has one point more error than any other weights, and a lower
    loss."""
    from chita_opt.pruning.damping import Score

    k = k_from_sparsity(net.w0.size, sparsity)
    magnitude = np.zeros_like(net.w0)
    keep = np.argsort(-np.abs(net.w0), kind="stable")[:k]
    magnitude[keep] = net.w0[keep]

    def held_out(n):
        def evaluate(w):
            if np.array_equal(w, magnitude):
                return Score(0.1, error=0.31, n=n)
            return Score(1.0 + net.loss(w), error=0.30, n=n)
        return evaluate

    return magnitude, held_out


def test_auto_lets_the_loss_decide_against_magnitude_when_errors_are_within_noise():
    """Held-out errors one point apart are noise on 200 samples: magnitude pruning's lower
    loss wins; on 10,000 samples the same point is a real difference and the error decides."""
    net = LeastSquaresNet(n=25, p=60, seed=3)
    magnitude, held_out = _one_point_worse_magnitude(net, 0.5)
    for n, chosen in ((200, math.inf), (10_000, None)):
        report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.5, damping="auto",
                                  evaluate=held_out(n), method=METHOD, progress=False)
        d = report.stages[-1].damping
        if chosen is None:
            assert math.isfinite(d), n
            assert not np.array_equal(report.weights, magnitude)
        else:
            assert d == chosen
            np.testing.assert_array_equal(report.weights, magnitude)


def test_auto_stages_compare_with_magnitude_as_the_one_shot_choice_does():
    """The CHITA++ guard ties errors within the noise bar like the one-shot choice: on 200
    held-out samples one point of error is noise and magnitude pruning's lower loss wins;
    on 10,000 the error decides against it."""
    net = LeastSquaresNet(n=80, p=30, seed=4)
    magnitude, held_out = _one_point_worse_magnitude(net, 0.7)
    with pytest.warns(chita_opt.pruning.ModelValidityWarning,
                      match="below one-shot magnitude .*within the noise of 200 held-out "
                            "samples count as tied and the loss decides"):
        report = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=3,
                                  damping="auto", evaluate=held_out(200), method=METHOD,
                                  progress=False)
    assert report.options["fallback"] == "magnitude"
    np.testing.assert_array_equal(report.weights, magnitude)
    kept = multistage_prune(net.w0, net.gradient_fn, sparsity=0.7, stages=3, damping="auto",
                            evaluate=held_out(10_000), method=METHOD, progress=False)
    assert kept.options.get("fallback") != "magnitude"  # the stages or one-shot CHITA
    assert not np.array_equal(kept.weights, magnitude)


def test_auto_shows_the_damping_search_when_progress_is_on(capsys):
    pytest.importorskip("tqdm")
    net = LeastSquaresNet(n=25, p=60, seed=3)
    multistage_prune(net.w0, net.gradient_fn, sparsity=0.5, damping="auto",
                     evaluate=net.loss, method=METHOD, progress=True)
    err = capsys.readouterr().err
    assert "stage 1 damping" in err and "damping " in err


@pytest.mark.filterwarnings("ignore::chita_opt.pruning.ModelValidityWarning")
def test_auto_with_first_order_uses_the_stage_damping_before_the_last_stage():
    """damping="auto", first_order=True: the stages before the last do not search the grid
    (their tie once chose magnitude pruning); they use STAGE_DAMPING * lambda_0 and only
    the first-order guard, and the last stage searches."""
    from chita_opt.pruning.damping import N_POINTS

    report = _auto_run_with_early_ties(first_order=True)
    *middle, last = report.stages
    assert all(rec.first_order_used is not None for rec in middle)
    assert last.damping_losses is not None and len(last.damping_losses) >= N_POINTS + 1
    assert last.first_order_used is not None
