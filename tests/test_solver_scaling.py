"""Scale: the units of A and y must not change the answer.

Scaling ``A -> a A``, ``y -> b y`` (with ``l2 -> a^2 l2``, ``w_bar -> (b/a) w_bar``,
``c -> a b c``) maps every point to ``w -> (b/a) w`` and f to ``b^2 f``; scaling
column j by ``s_j`` (``l2 = 0``, ``c_j -> s_j c_j``) maps ``w_j -> w_j / s_j`` and
keeps f. The same support and the mapped objective, exact in the user's
units, are expected from every method (except IHT under column scaling: its
step and stationarity are defined in the user's coordinates; see
docs/algorithms.md).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chita_opt as co

from .oracle import Instance, brute_force, objective

HEURISTICS = ["magnitude", "backsolve", "iht", "active_set", "swap", "chita"]


def _instance(seed: int, ridge: bool) -> Instance:
    # well-posed small instances (a unique optimum by a margin), so that the
    # comparison is about scale and not about ties
    rng = np.random.default_rng(seed)
    p = int(rng.integers(5, 10))
    n = int(rng.integers(p + 3, 3 * p))
    k = int(rng.integers(1, p - 1))
    A = rng.standard_normal((n, p)) * np.exp(rng.uniform(-1, 1, p))
    wt = np.zeros(p)
    wt[rng.choice(p, k, replace=False)] = rng.choice([-1, 1], k) * rng.uniform(1, 3, k)
    y = A @ wt + 0.1 * rng.standard_normal(n)
    l2 = float(rng.choice([0.01, 0.5])) if ridge else 0.0
    w_bar = rng.standard_normal(p) if ridge else None
    c = 0.1 * rng.standard_normal(p) if ridge else None
    return Instance(A, y, k, l2, w_bar, c)


def _solve(inst: Instance, method: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", co.ConvergenceWarning)
        return co.solve(inst.A, inst.y, inst.k, method=method, **inst.kwargs())


def _scaled(inst: Instance, a: float, b: float) -> Instance:
    return Instance(
        inst.A * a, inst.y * b, inst.k, inst.l2 * a * a,
        None if inst.w_bar is None else inst.w_bar * (b / a),
        None if inst.c is None else inst.c * (a * b),
    )


def _check_scaled(sol, ref, inst_scaled, factor):
    assert sol.status == ref.status, sol.message
    np.testing.assert_array_equal(sol.support, ref.support)
    assert np.isfinite(sol.objective)
    # exact in the user's units: the reported value is f of the returned point ...
    f_direct = objective(inst_scaled, np.asarray(sol.w))
    assert sol.objective == pytest.approx(f_direct, rel=1e-9)
    # ... and it is the unscaled optimum mapped to these units
    assert sol.objective == pytest.approx(ref.objective * factor, rel=1e-7, abs=1e-12 * factor)


@pytest.mark.parametrize("method", HEURISTICS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), ea=st.integers(-150, 150), eb=st.integers(-150, 150),
       ridge=st.booleans())
def test_overall_scale_of_a_and_y(method, seed, ea, eb, ridge):
    a, b = 10.0**ea, 10.0**eb
    if ridge and not (abs(2 * ea) < 290 and abs(ea + eb) < 290 and abs(2 * (eb - ea)) < 280):
        return  # l2 a^2, c a b or ||w||^2 (in f's ridge term) would not be normal float64s
    inst = _instance(seed, ridge)
    ref = _solve(inst, method)
    scaled = _scaled(inst, a, b)
    sol = _solve(scaled, method)
    _check_scaled(sol, ref, scaled, b * b)


@pytest.mark.parametrize("method", [m for m in HEURISTICS if m != "iht"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), data=st.data())
def test_column_scales_from_1e_minus_8_to_1e8(method, seed, data):
    inst = _instance(seed, ridge=False)
    p = inst.A.shape[1]
    exps = data.draw(st.lists(st.floats(-8, 8), min_size=p, max_size=p), label="log10 scales")
    s = 10.0 ** np.array(exps)
    ref = _solve(inst, method)
    scaled = Instance(inst.A * s, inst.y, inst.k, 0.0, None, None)
    sol = _solve(scaled, method)
    _check_scaled(sol, ref, scaled, 1.0)
    np.testing.assert_allclose(np.asarray(sol.w) * s, ref.w, rtol=1e-6, atol=1e-9)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), data=st.data())
def test_iht_under_column_scales_is_valid_and_never_worse_than_its_start(seed, data):
    inst = _instance(seed, ridge=False)
    p = inst.A.shape[1]
    exps = data.draw(st.lists(st.floats(-8, 8), min_size=p, max_size=p), label="log10 scales")
    scaled = Instance(inst.A * 10.0 ** np.array(exps), inst.y, inst.k, 0.0, None, None)
    sol = _solve(scaled, "iht")
    start = _solve(scaled, "backsolve")
    assert sol.status in ("converged", "max_iter")
    assert np.isfinite(sol.objective)
    assert sol.objective == pytest.approx(objective(scaled, np.asarray(sol.w)), rel=1e-9)
    assert sol.objective <= start.objective * (1 + 1e-9)


@pytest.mark.parametrize("method", HEURISTICS)
@pytest.mark.parametrize("a", [1e-160, 1e-150, 1e150, 1e200])
def test_the_reported_reproducers(method, a):
    rng = np.random.default_rng(1)
    B = rng.standard_normal((30, 10))
    z = B[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(30)
    ref = co.solve(B, z, 3, method=method)
    b = 1.0 if a > 1e160 else (a if a > 1 else 1.0)  # y scaled with A up to 1e150
    sol = co.solve(B * a, z * b, 3, method=method)
    assert sol.status == ref.status
    np.testing.assert_array_equal(sol.support, ref.support)
    assert sol.objective == pytest.approx(ref.objective * b * b, rel=1e-8)


def test_chita_finds_the_optimum_at_extreme_scales():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((30, 10))
    z = B[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(30)
    best, _ = brute_force(Instance(B, z, 3, 0.0, None, None))
    for a in (1e-150, 1e150):
        sol = co.solve(B * a, z * a, 3, method="swap")
        assert sol.objective == pytest.approx(best * a * a, rel=1e-9)


def test_regression_iht_line_search_on_rounding_noise():
    # Found by hypothesis: after a refit the support gradient is rounding noise,
    # and IHT's line-search step computed from it differed between two copies of
    # the same normalised problem, so active_set ended on different supports
    # (objectives 0.057 and 3.47) when one column was scaled by 10.
    inst = _instance(58748494, ridge=False)
    s = np.ones(inst.A.shape[1])
    s[-1] = 10.0
    a = co.solve(inst.A, inst.y, inst.k, method="active_set")
    b = co.solve(inst.A * s, inst.y, inst.k, method="active_set")
    np.testing.assert_array_equal(a.support, b.support)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)


@pytest.mark.parametrize("method", HEURISTICS)
@pytest.mark.parametrize("a", [1e-30, 1e-15, 1e15, 1e30])
def test_float32_data_at_extreme_scales(method, a):
    # float32 overflows near 3e38: products such as A (A^T v) must be formed on
    # the rescaled copy, and no overflow warning may escape
    rng = np.random.default_rng(1)
    B = rng.standard_normal((30, 10))
    z = B[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(30)
    ref = co.solve(B.astype(np.float32), z, 3, method=method)
    b = a if a > 1 else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = co.solve((B * a).astype(np.float32), z * b, 3, method=method)
    assert sol.status == ref.status
    np.testing.assert_array_equal(sol.support, ref.support)
    assert sol.objective == pytest.approx(ref.objective * b * b, rel=1e-5)


@pytest.mark.parametrize("method", HEURISTICS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), l2=st.sampled_from([0.0, 1e-3, 1.0]))
def test_columns_300_orders_of_magnitude_apart_never_crash(method, seed, l2):
    # far beyond what float64 linear algebra can resolve: a result whose
    # reported objective is f of the returned point, or status "error" -- never
    # a raw LAPACK exception and never a non-finite "converged"
    rng = np.random.default_rng(seed)
    p, n = int(rng.integers(4, 12)), int(rng.integers(3, 20))
    k = int(rng.integers(1, p))
    A = rng.standard_normal((n, p)) * 10.0 ** rng.uniform(-150, 150, p)
    y = rng.standard_normal(n) * 10.0 ** rng.uniform(-100, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", co.ConvergenceWarning)
        sol = co.solve(A, y, k, method=method, l2=l2)
    if sol.status == "error":
        assert "numerical breakdown" in sol.message
        return
    assert sol.status in ("converged", "optimal", "max_iter")
    f = objective(Instance(A, y, k, l2, None, None), np.asarray(sol.w))
    # exact up to the cancellation in an interpolating fit, judged against f(0)
    assert abs(sol.objective - f) <= 1e-6 * max(abs(f), 1e-10 * 0.5 * float(y @ y))


def test_column_norms_exact_for_zero_tiny_and_huge_columns(monkeypatch):
    # columns whose squared norms underflow or overflow are re-measured in chunks
    # (all-zero columns -- dead pixels -- can be thousands of them)
    from chita_opt.solvers import _scaling

    monkeypatch.setattr(_scaling, "_ODD_CHUNK", 3)  # several chunks, one partial
    rng = np.random.default_rng(0)
    B = rng.standard_normal((6, 9))
    scales = np.array([1.0, 0.0, 1e-170, 1e-200, 1e170, 0.0, 1e-300, 2.0, 1e200])
    A = B * scales
    problem = co.L0Problem(A, np.ones(6), k=2)
    norms = _scaling.safe_col_norms(problem)
    expected = np.linalg.norm(B, axis=0) * scales
    np.testing.assert_allclose(norms, expected, rtol=1e-12, atol=0.0)
