"""chita's Gram-matrix iterated local search (solvers/_local_search.py, _kernels/gram_search.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import chita_opt as co
from chita_opt import L0Problem
from chita_opt._kernels.gram_search import local_search
from chita_opt.datasets import make_gradient_like
from chita_opt.solvers._local_search import _gram, resolve_ils
from chita_opt.solvers._refit import refit


def _pruning_problem(seed: int, n: int = 12, p: int = 30, k: int = 6) -> L0Problem:
    data = make_gradient_like(n, p, dtype=np.float64, random_state=np.random.default_rng(seed))
    return data.problem(k=k, damping=1e-3)


def _exhaustive(problem: L0Problem) -> float:
    return min(
        problem.objective(refit(problem, np.array(s)).w)
        for s in itertools.combinations(range(problem.p), problem.k)
    )


@pytest.mark.parametrize("seed", [3, 7, 10])
def test_reaches_the_optimum_on_pruning_shaped_instances(seed):
    # validation-report instances (pruning-shaped block: seed sequence 0,
    # instances 3, 7, 10) that the pipeline without the Gram search missed
    seeds = np.random.SeedSequence(0).spawn(20)
    problem = make_gradient_like(
        12, 30, dtype=np.float64, random_state=np.random.default_rng(seeds[seed])
    ).problem(sparsity=0.8, damping=1e-3)
    f_opt = co.solve(problem, method="brute_force").objective
    sol = co.solve(problem)
    assert (sol.objective - f_opt) <= 1e-6 * abs(f_opt)


def test_never_worse_than_without_it_and_deterministic():
    for seed in range(6):
        problem = _pruning_problem(100 + seed, n=10, p=20, k=5)
        base = co.solve(problem, ils_iters=0)
        a = co.solve(problem, random_state=3)
        b = co.solve(problem, random_state=3)
        assert a.objective <= base.objective + 1e-12 * abs(base.objective)
        np.testing.assert_array_equal(a.w, b.w)
        assert a.objective <= _exhaustive(problem) * (1 + 1e-6)


def test_unregularised_least_squares():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 14))
    y = A[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.standard_normal(30)
    problem = L0Problem(A, y, 4)
    sol = co.solve(problem, ils_iters=200)
    assert sol.objective <= _exhaustive(problem) * (1 + 1e-9)


def test_local_search_values_match_exact_refits():
    problem = _pruning_problem(5, n=10, p=16, k=4)
    G, b, f0 = _gram(problem)
    S = np.array([0, 1, 2, 3], dtype=np.int64)
    in_s = np.zeros(problem.p, dtype=np.bool_)
    in_s[S] = True
    value, _, _ = local_search(G, b, S, in_s, 1000, 1e-13 * f0)
    assert sorted(np.flatnonzero(in_s)) == sorted(S)
    f_end = problem.objective(refit(problem, np.sort(S)).w)
    assert f_end == pytest.approx(f0 - value / 2, rel=1e-9)
    # a swap-local optimum: no single swap improves the exact objective
    for i in range(problem.k):
        for j in np.flatnonzero(~in_s):
            T = S.copy()
            T[i] = j
            assert problem.objective(refit(problem, np.sort(T)).w) >= f_end * (1 - 1e-9)


def test_default_gating():
    small = _pruning_problem(0)
    assert resolve_ils(small, None, 24)[0] > 0
    assert resolve_ils(small, None, 0) == (0, 0.0)  # restarts=0: no extra starts at all
    assert resolve_ils(small, 5, 0) == (5, np.inf)  # an explicit value is honoured
    wide_p = make_gradient_like(4, 300, random_state=0).problem(k=10)
    assert resolve_ils(wide_p, None, 24)[0] == 0
    rng = np.random.default_rng(0)
    no_ridge_k_gt_n = L0Problem(rng.standard_normal((5, 20)), rng.standard_normal(5), 8)
    assert resolve_ils(no_ridge_k_gt_n, None, 24)[0] == 0
    sol = co.solve(no_ridge_k_gt_n)
    assert np.count_nonzero(sol.w) <= 8
    assert "24 restarts" in sol.message  # the Python restarts run instead


def test_gram_search_replaces_the_restarts_by_default():
    problem = _pruning_problem(1)
    assert "0 restarts" in co.solve(problem).message
    both = co.solve(problem, restarts=3)  # explicit restarts: both searches run
    assert "3 restarts" in both.message
    assert both.objective <= co.solve(problem, restarts=3, ils_iters=0).objective * (1 + 1e-12)


@pytest.mark.parametrize("bad", [1.5, "10", True, None.__class__])
def test_ils_iters_type_errors(bad):
    with pytest.raises(TypeError, match="ils_iters: expected a non-negative integer"):
        co.solve(_pruning_problem(0), ils_iters=bad)


def test_ils_iters_value_error():
    with pytest.raises(ValueError, match=r"ils_iters: expected a non-negative integer.*-1"):
        co.solve(_pruning_problem(0), ils_iters=-1)


def test_linear_term_only_and_float32():
    # y = 0, w_bar = 0: f(0) = 0, the whole objective comes from c and the ridge
    rng = np.random.default_rng(4)
    A = rng.standard_normal((8, 14)).astype(np.float32)
    problem = L0Problem(A, np.zeros(8), 4, l2=0.1, c=rng.standard_normal(14))
    sol = co.solve(problem)
    f_opt = _exhaustive(problem)
    assert sol.objective <= f_opt + 1e-6 * abs(f_opt)
