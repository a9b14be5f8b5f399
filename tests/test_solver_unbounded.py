"""``"unbounded"`` from every optimiser exactly when f is unbounded below on a feasible support.

With ``l2 = 0``, f is unbounded below on S iff ``c_S`` has a component in the
null space of ``A_S``. The oracle here enumerates every support of size k
with numpy's SVD, independently of the package.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chita_opt as co

OPTIMIZERS = ["backsolve", "iht", "active_set", "swap", "chita"]


def oracle_unbounded(A: np.ndarray, c: np.ndarray, k: int) -> bool:
    """Whether some support of size k carries a null vector v of A with c^T v != 0."""
    p = A.shape[1]
    for S in itertools.combinations(range(p), k):
        idx = list(S)
        _, sig, Vt = np.linalg.svd(A[:, idx])
        tol = 1e-10 * max(sig.max(initial=0.0), 1e-300)
        null = Vt[int(np.sum(sig > tol)):]
        if null.size and np.linalg.norm(null @ c[idx]) > 1e-7 * np.linalg.norm(c[idx]):
            return True
    return False


def _design(rng: np.random.Generator, kind: str) -> np.ndarray:
    p = int(rng.integers(3, 8))
    n = int(rng.integers(2, 10))
    A = rng.standard_normal((n, p)) * np.exp(rng.uniform(-2, 2, p))
    if kind == "lowrank":
        r = int(rng.integers(1, min(n, p) + 1))
        A = rng.standard_normal((n, r)) @ rng.standard_normal((r, p))
    elif kind == "zero_column":
        A[:, rng.integers(p)] = 0.0
    elif kind == "parallel":
        i, j = rng.choice(p, 2, replace=False)
        A[:, j] = A[:, i] * rng.choice([-3.0, 0.5, 2.0])
    elif kind == "circuit3" and p >= 3:
        i, j, m = rng.choice(p, 3, replace=False)
        A[:, m] = A[:, i] - 2.0 * A[:, j]
    return A


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**31))
    kind = draw(st.sampled_from(["generic", "lowrank", "zero_column", "parallel", "circuit3"]))
    rng = np.random.default_rng(seed)
    A = _design(rng, kind)
    n, p = A.shape
    k = draw(st.integers(1, p), label="k")
    c_kind = draw(st.sampled_from(["generic", "in_range", "sparse"]))
    if c_kind == "in_range":
        c = A.T @ rng.standard_normal(n)
    elif c_kind == "sparse":
        c = np.zeros(p)
        c[rng.integers(p)] = 1.0
    else:
        c = rng.standard_normal(p)
    y = rng.standard_normal(n)
    return A, y, c, k


def _solve(A, y, k, c, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", co.ConvergenceWarning)
        return co.solve(A, y, k, c=c, method=method)


def _check_witness(sol, A, c, k):
    d = sol.info["unbounded_direction"]
    assert np.count_nonzero(d) <= k
    np.testing.assert_array_equal(np.flatnonzero(d), sol.info["unbounded_support"])
    assert np.linalg.norm(A @ d) <= 1e-8 * np.linalg.norm(A) * np.linalg.norm(d)
    assert c @ d < 0
    assert np.isfinite(sol.objective)
    assert not sol.success and sol.status.is_failure
    assert "unbounded" in sol.message


@pytest.mark.parametrize("method", OPTIMIZERS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_unbounded_exactly_when_the_oracle_says_so(method, case):
    A, y, c, k = case
    expected = oracle_unbounded(A, c, k)
    sol = _solve(A, y, k, c, method)
    assert (sol.status == "unbounded") == expected, (sol.status, sol.message)
    if expected:
        _check_witness(sol, A, c, k)
    else:
        assert np.isfinite(sol.objective)
        assert sol.status in ("converged", "optimal", "max_iter")


@pytest.mark.parametrize("method", OPTIMIZERS)
def test_the_reported_reproducer(method):
    r = np.random.default_rng(0)
    A = r.standard_normal((5, 12))
    y = r.standard_normal(5)
    c = 0.1 * r.standard_normal(12)
    sol = _solve(A, y, 8, c, method)
    assert sol.status == "unbounded"
    assert "k = 8 > rank(A) = 5" in sol.message
    _check_witness(sol, A, c, 8)


@pytest.mark.parametrize("method", OPTIMIZERS)
def test_larger_wide_problem(method):
    r = np.random.default_rng(1)
    A = r.standard_normal((40, 300)) * np.exp(r.uniform(-3, 3, 300))
    y = r.standard_normal(40)
    c = 1e-3 * r.standard_normal(300)
    sol = _solve(A, y, 41, c, method)
    assert sol.status == "unbounded"
    _check_witness(sol, A, c, 41)
    # k <= rank with a generic design: every support has full column rank
    assert _solve(A, y, 40, c, method).status != "unbounded"
    # c in the range of A^T: bounded for every k
    assert _solve(A, y, 60, A.T @ r.standard_normal(40), method).status != "unbounded"


@pytest.mark.parametrize("method", OPTIMIZERS)
def test_a_hidden_three_column_circuit_is_reported(method):
    # k <= rank(A) and C(60, 5) supports: too many to enumerate, so it is the
    # exact check of the support the method ends on that reports it
    rng = np.random.default_rng(0)
    n, p, k = 40, 60, 5
    A = rng.standard_normal((n, p))
    A[:, 7] = A[:, 3] - 2 * A[:, 11]
    c = np.zeros(p)
    c[7] = 1.0
    y = A[:, [3, 7, 11, 20]] @ np.array([1.0, 2.0, -1.0, 0.5]) + 0.01 * rng.standard_normal(n)
    assert oracle_unbounded(A[:, [3, 7, 11, 20, 30]], c[[3, 7, 11, 20, 30]], 5)
    sol = _solve(A, y, k, c, method)
    assert sol.status == "unbounded"
    assert {3, 7, 11} <= set(sol.support.tolist())
    assert "unbounded" in sol.message
