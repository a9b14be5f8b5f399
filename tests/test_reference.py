"""Exact references: brute force against an independent enumeration, the MIP against brute force."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import chita_opt
from chita_opt import L0Problem
from chita_opt.datasets import make_regression
from chita_opt.reference import brute_force, solve_mip
from chita_opt.result import ConvergenceWarning

from . import oracle

pytest.importorskip("cvxpy")
pytest.importorskip("pyscipopt")

# Examples per hypothesis run of the MIP-vs-brute-force property (each SCIP
# call costs ~0.05-0.5 s). For a long run:
#   CHITA_OPT_MIP_EXAMPLES=2000 python -m pytest tests/test_reference.py -k mip_matches
MIP_EXAMPLES = int(os.environ.get("CHITA_OPT_MIP_EXAMPLES", "40"))


# ------------------------------------------------------------------ helpers
def independent_supports(problem: L0Problem) -> list[tuple[float, np.ndarray]] | None:
    """``(f_S, w_S)`` for every support of size k, by numpy.linalg.lstsq (None if unbounded).

    No package code but f itself: on a support S the problem is the least
    squares ``|| [A_S; sqrt(l2) I] w - [y; sqrt(l2) w_bar_S] ||^2 / 2 + c_S^T w``;
    with ``c_S`` in the row space of the stacked matrix ``B`` it equals the
    least squares with right-hand side shifted by ``B^+T c_S`` (lstsq returns
    its minimum-norm minimiser); otherwise f is unbounded below on S.
    """
    A, y, c, wb, l2 = problem.A.astype(float), problem.y, problem.c, problem.w_bar, problem.l2
    p = A.shape[1]
    out = []
    for S in itertools.combinations(range(p), problem.k):
        S = list(S)
        B = A[:, S]
        rhs = y.copy()
        if l2 > 0:
            B = np.vstack([B, np.sqrt(l2) * np.eye(len(S))])
            rhs = np.concatenate([y, np.sqrt(l2) * wb[S]])
        # Stationarity: B^T B w = B^T rhs - c_S  =>  B w = P(rhs - B^{+T} c_S).
        shift = np.linalg.lstsq(B.T, c[S], rcond=None)[0] if len(S) else np.zeros(B.shape[0])
        if len(S) and np.linalg.norm(B.T @ shift - c[S]) > 1e-7 * max(np.linalg.norm(c[S]), 1):
            return None
        w_S = np.linalg.lstsq(B, rhs - shift, rcond=None)[0] if len(S) else np.zeros(0)
        w = np.zeros(p)
        w[S] = w_S
        out.append((problem.objective(w), w))
    return out


def independent_optimum(problem: L0Problem) -> tuple[float, bool]:
    """Optimum by independent enumeration: ``(f*, bounded)``."""
    supports = independent_supports(problem)
    if supports is None:
        return -np.inf, False
    return min(f for f, _ in supports), True


def rel_diff(a: float, b: float, problem: L0Problem) -> float:
    f0 = problem.objective(np.zeros(problem.p))
    return abs(a - b) / max(abs(b), 1e-6 * abs(f0), 1e-300)


@st.composite
def small_problems(
    draw, max_p: int = 8, full_k: bool = True, ridge: bool | None = None
) -> L0Problem:
    """Small problems covering l2 = 0, w_bar != 0, c != 0, duplicated columns and n < p.

    ``c`` is either zero, in the row space of ``A`` (f stays bounded) or
    generic (with l2 = 0 and n < p or duplicated columns f may be unbounded).
    ``full_k=False`` keeps ``k < p`` (the interesting, combinatorial case);
    ``ridge`` forces ``l2 > 0`` (True) or ``l2 = 0`` (False).
    """
    p = draw(st.integers(2 if full_k else 3, max_p))
    n = draw(st.integers(2, 10))
    k = draw(st.integers(1, p if full_k else p - 1))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, p))
    if draw(st.booleans()):  # correlated columns
        A[:, 1:] += 0.8 * A[:, :1]
    if draw(st.booleans()):  # an exact duplicate
        i, j = draw(st.sampled_from(list(itertools.permutations(range(p), 2))))
        A[:, j] = A[:, i]
    y = rng.standard_normal(n) + A @ (rng.standard_normal(p) * (rng.random(p) < 0.5))
    if ridge is None:
        ridge = draw(st.booleans())
    l2 = draw(st.sampled_from([0.05, 1.0])) if ridge else 0.0
    w_bar = rng.standard_normal(p) if draw(st.booleans()) else None
    kind = draw(st.sampled_from(["none", "range", "generic"]))
    c = None
    if kind == "range":
        c = 0.3 * A.T @ rng.standard_normal(n)
    elif kind == "generic":
        c = 0.5 * rng.standard_normal(p)
    return L0Problem(A, y, k, l2=l2, w_bar=w_bar, c=c)


# -------------------------------------------------------------- brute force
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(max_p=7))
def test_brute_force_matches_independent_enumeration(problem):
    sol = brute_force(problem)
    f_star, bounded = independent_optimum(problem)
    if not bounded:
        assert sol.status == "unbounded"
        return
    assert sol.status == "optimal"
    assert sol.k <= problem.k
    assert rel_diff(sol.objective, f_star, problem) <= 1e-8
    assert sol.lower_bound == sol.objective and sol.gap == 0.0


@settings(max_examples=30, deadline=None)
@given(small_problems(max_p=8), st.integers(0, 2**31 - 1))
def test_no_feasible_point_beats_brute_force(problem, seed):
    sol = brute_force(problem)
    if sol.status == "unbounded":
        return
    rng = np.random.default_rng(seed)
    for _ in range(20):
        w = np.zeros(problem.p)
        S = rng.choice(problem.p, size=problem.k, replace=False)
        w[S] = sol.w[S] + rng.standard_normal(problem.k) * rng.choice([1e-3, 1e-1, 1.0])
        assert problem.objective(w) >= sol.objective - 1e-9 * max(abs(sol.objective), 1.0)


def test_brute_force_unbounded_with_duplicated_columns_and_c():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 4))
    A[:, 2] = A[:, 1]
    c = np.array([0.0, 1.0, -1.0, 0.0])  # w_1 = -w_2 = t lowers f without bound
    sol = brute_force(A, rng.standard_normal(6), 2, c=c)
    assert sol.status == "unbounded"
    assert "unbounded" in sol.message


def test_brute_force_refuses_large_problems():
    A = np.ones((3, 60))
    with pytest.raises(ValueError, match=r"C\(60, 30\).*solve_mip"):
        brute_force(A, np.ones(3), 30)
    with pytest.raises(ValueError, match="max_supports=10"):
        brute_force(np.eye(8), np.ones(8), 3, max_supports=10)
    with pytest.raises(TypeError, match="max_supports: expected a positive integer"):
        brute_force(np.eye(3), np.ones(3), 1, max_supports=1.5)


def test_brute_force_trivial_k():
    A, y = np.eye(3), np.array([1.0, -2.0, 3.0])
    assert np.all(brute_force(A, y, 0).w == 0)
    full = brute_force(A, y, 3)
    assert full.status == "optimal"
    np.testing.assert_allclose(full.w, y)


def test_dispatch_through_solve():
    data = make_regression(20, 8, 3, random_state=1)
    a = chita_opt.solve(data.A, data.y, 3, method="brute_force")
    b = brute_force(data.A, data.y, 3)
    assert a.objective == b.objective and a.method == "brute_force"
    m = chita_opt.solve(data.A, data.y, 3, method="mip")
    assert m.method == "mip" and m.status == "optimal"
    assert rel_diff(m.objective, b.objective, L0Problem(data.A, data.y, 3)) <= 1e-6


# ---------------------------------------------------------------------- MIP
@pytest.mark.parametrize("ridge", [False, True], ids=["l2=0", "l2>0"])
@settings(
    max_examples=MIP_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_mip_matches_brute_force(ridge, data):
    problem = data.draw(small_problems(max_p=8, full_k=False, ridge=ridge))
    bf = brute_force(problem)
    # SCIP works to absolute tolerances of about 1e-7: a nearly singular
    # support with a generic c (l2 = 0) can put the optimum at |w| ~ 1e8, out
    # of any MIP solver's numerical range (solve_mip then reports "error";
    # see docs/exact_solving.md). Such instances are not a fair test.
    assume(bf.status == "unbounded" or np.max(np.abs(bf.w)) <= 1e4)
    sol = solve_mip(problem)
    if bf.status == "unbounded":
        assert sol.status == "unbounded"
        return
    assert sol.status == "optimal", sol.message
    assert sol.info["certified"] is True
    assert sol.k <= problem.k
    assert rel_diff(sol.objective, bf.objective, problem) <= 1e-6
    assert sol.gap is not None and sol.gap >= 0.0
    assert sol.gap <= 1e-4 or sol.objective - sol.lower_bound <= sol.info["tolerance_slack"]


def test_mip_certifies_a_near_zero_optimum_at_the_solvers_tolerance():
    # Found by hypothesis: the linear term cancels the quadratic part, f* = -3.3e-6,
    # and SCIP's bound sits 1.0e-8 below it (a relative gap of 3e-3) -- its
    # feasibility tolerance on the cones, not a suboptimal point.
    A = np.array([[0.18905338179353307, -0.5227484414807474, -0.41306354339189344],
                  [-2.4414673826398556, 1.799707382720902, 1.1441658720372287]])
    y = np.array([0.017251015850966056, -0.9094791386654036])
    problem = L0Problem(A, y, 2, l2=1.0,
                        w_bar=np.array([0.45495807124085547, -0.09919805171738795,
                                        0.5452887139646817]),
                        c=np.array([-0.12733096856138454, 0.1636975173235807,
                                    0.1187755112924427]))
    bf = brute_force(problem)
    sol = solve_mip(problem)
    assert sol.status == "optimal", sol.message
    assert rel_diff(sol.objective, bf.objective, problem) <= 1e-9
    assert 0.0 <= sol.objective - sol.lower_bound <= sol.info["tolerance_slack"] <= 1e-6
    assert sol.lower_bound <= sol.objective


@settings(max_examples=40, deadline=None)
@given(small_problems(max_p=7))
def test_derived_big_m_covers_the_optimum(problem):
    from chita_opt.reference.mip import derive_big_m

    supports = independent_supports(problem)
    if supports is None or problem.k in (0, problem.p):
        return
    f_star = min(f for f, _ in supports)
    tol = 1e-9 * max(abs(f_star), problem.objective(np.zeros(problem.p)), 1e-300)
    big_m = derive_big_m(problem, upper=f_star + tol)
    if big_m.valid and big_m.unbounded_support is None:
        # Valid means: *some* minimiser lies in the box. Ties (perfect fits)
        # can have several optimal supports; one of them must fit.
        best = min(np.max(np.abs(w)) for f, w in supports if f <= f_star + tol)
        assert best <= big_m.value * (1 + 1e-9)


def test_mip_heuristic_big_m_is_not_certified(monkeypatch):
    import chita_opt.reference._big_m as mip

    monkeypatch.setattr(mip, "_ENUMERATE_LIMIT", 0)
    rng = np.random.default_rng(4)
    A = rng.standard_normal((5, 8))  # n < p, l2 = 0: no curvature bound
    A[:, 3] = A[:, 2]
    problem = L0Problem(A, rng.standard_normal(5), 3)
    sol = solve_mip(problem)
    bf = brute_force(problem)
    assert sol.info["big_m_source"] == "heuristic"
    assert sol.info["certified"] is False
    assert sol.status == "converged"
    assert sol.lower_bound is None and sol.gap is None
    assert "box_lower_bound" in sol.info
    assert sol.objective >= bf.objective - 1e-9 * max(abs(bf.objective), 1)


def test_mip_detects_unboundedness():
    A = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 1.0]])
    sol = solve_mip(A, np.array([1.0, 0.0]), 2, c=np.array([1.0, -1.0, 0.0]))
    assert sol.status == "unbounded"


def test_mip_time_limit_returns_best_and_bound():
    data = make_regression(60, 40, 10, snr=1.0, random_state=5)
    with pytest.warns(ConvergenceWarning, match="time limit"):
        sol = solve_mip(data.A, data.y, 10, time_limit=0.3)
    assert sol.status == "time_limit"
    assert sol.k <= 10 and np.isfinite(sol.objective)
    # never worse than the backsolve heuristic it starts from
    heur = chita_opt.solve(data.A, data.y, 10, method="backsolve")
    assert sol.objective <= heur.objective + 1e-9
    if sol.lower_bound is not None:
        assert sol.lower_bound <= sol.objective and sol.gap >= 0


def test_mip_warm_start_and_ridge_perspective(monkeypatch):
    import chita_opt.reference._big_m as mip

    # exercise the bound that the ridge alone gives (no support enumeration)
    monkeypatch.setattr(mip, "_ENUMERATE_LIMIT", 0)
    data = make_regression(30, 12, 4, random_state=2)
    problem = L0Problem(data.A, data.y, 4, l2=0.5, w_bar=np.full(12, 0.1))
    heur = chita_opt.solve(problem, method="backsolve")
    sol = solve_mip(problem, warm_start=heur)
    sol2 = solve_mip(problem, warm_start=np.asarray(heur.w))
    bf = brute_force(problem)
    assert sol.info["perspective"] is True and sol.info["big_m_source"] == "curvature"
    for s in (sol, sol2):
        assert s.status == "optimal"
        assert rel_diff(s.objective, bf.objective, problem) <= 1e-6


def test_mip_trivial_k():
    A, y = np.eye(3), np.array([1.0, -2.0, 3.0])
    assert solve_mip(A, y, 0).status == "optimal"
    full = solve_mip(A, y, 3)
    assert full.status == "optimal" and full.gap == 0.0
    np.testing.assert_allclose(full.w, y)


# ---------------------------------------------------------------- bad input
def test_mip_bad_input_messages():
    A, y = np.eye(4), np.ones(4)
    with pytest.raises(TypeError, match=r"k: expected an integer in \[0, 4\], got float 1.5"):
        solve_mip(A, y, 1.5)
    with pytest.raises(ValueError, match=r"y: expected length 4, got length 3"):
        solve_mip(A, np.ones(3), 1)
    with pytest.raises(ValueError, match="time_limit: expected a positive number of seconds"):
        solve_mip(A, y, 1, time_limit=-1)
    with pytest.raises(TypeError, match="time_limit: expected a positive number"):
        solve_mip(A, y, 1, time_limit="10")
    with pytest.raises(ValueError, match=r"solver: expected one of \('SCIP', 'ECOS_BB'\)"):
        solve_mip(A, y, 1, solver="GUROBI")
    with pytest.raises(ValueError, match="warm_start: expected length 4, got length 2"):
        solve_mip(A, y, 1, warm_start=np.ones(2))
    with pytest.raises(TypeError, match="verbose: expected a bool"):
        solve_mip(A, y, 1, verbose="yes")
    with pytest.raises(TypeError, match="does not accept option"):
        chita_opt.solve(A, y, 1, method="mip", timelimit=3)


def test_mip_without_cvxpy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # makes `import cvxpy` fail
    with pytest.raises(ImportError, match=r"pip install chita_opt\[mip\]"):
        solve_mip(np.eye(3), np.ones(3), 1)


def test_missing_solver_names_what_to_install():
    import cvxpy

    if "ECOS_BB" in cvxpy.installed_solvers():
        pytest.skip("ECOS_BB is installed here")
    with pytest.raises(ImportError, match=r"ECOS_BB.*pip install ecos"):
        solve_mip(np.eye(3), np.ones(3), 1, solver="ECOS_BB")


def test_importing_reference_does_not_import_cvxpy():
    code = (
        "import sys, chita_opt.reference, chita_opt.reference.mip\n"
        "from chita_opt.reference import brute_force, solve_mip\n"
        "assert callable(brute_force) and callable(solve_mip)\n"
        "print('cvxpy' in sys.modules, 'pyscipopt' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ------------------------------------------------------- ill-scaled data
# The references' rank and unboundedness decisions use thresholds relative to
# O(1) quantities; these tests feed them data at the edges of float64 and
# check against the unscaled problem's independently computed optimum.
def _brief_example():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((30, 10))
    z = B[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(30)
    return rng, B, z


@pytest.mark.parametrize("solver", ["brute_force", "mip"])
def test_references_solve_columns_scaled_by_1e_minus_200(solver):
    _, B, z = _brief_example()
    f_star, w_star = oracle.brute_force(oracle.Instance(B, z, 3, 0.0, None, None))
    fn = brute_force if solver == "brute_force" else solve_mip
    sol = fn(B * 1e-200, z, 3)
    assert sol.status == "optimal", sol.message
    assert abs(sol.objective - f_star) <= 1e-6 * f_star  # 0.0846, not f(0) = 58.2
    np.testing.assert_array_equal(sol.support, np.flatnonzero(w_star))
    np.testing.assert_allclose(sol.w * 1e-200, w_star, rtol=1e-5)
    assert sol.lower_bound <= sol.objective * (1 + 1e-12) and "rescaled" in sol.message


@pytest.mark.parametrize("solver", ["brute_force", "mip"])
def test_references_solve_columns_spread_over_16_decades(solver):
    rng, B, z = _brief_example()
    D = 10.0 ** rng.integers(-8, 8, size=10)
    f_star, w_star = oracle.brute_force(oracle.Instance(B, z, 3, 0.0, None, None))
    fn = brute_force if solver == "brute_force" else solve_mip
    sol = fn(B * D, z, 3)
    assert sol.status == "optimal", sol.message  # was "unbounded" (c = 0, l2 = 0: f >= 0)
    assert abs(sol.objective - f_star) <= 1e-6 * f_star
    np.testing.assert_allclose(sol.w * D, w_star, rtol=1e-5, atol=1e-12)


def test_brute_force_names_an_astronomic_number_of_supports():
    with pytest.raises(ValueError, match=r"C\(5000, 2500\) = about 1\.5e\+1503 supports"):
        brute_force(np.ones((2, 5000)), np.ones(2), 2500)


def test_references_refuse_data_beyond_float64_after_rescaling():
    A = np.eye(3) * np.array([1e-300, 1.0, 1.0])
    y = np.array([1e150, 1.0, 1.0])  # w_0 = 1e450 is the optimum: not a float
    with pytest.raises(ValueError, match=r"A, y: expected data whose scales float64 can hold"):
        brute_force(A, y, 1)
    with pytest.raises(ValueError, match=r"A, y: expected data whose scales float64 can hold"):
        solve_mip(A, y, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    oracle.instances(max_p=7),
    st.integers(-150, 150),
    st.lists(st.integers(-12, 12), min_size=7, max_size=7),
    st.integers(-100, 100),
)
def test_brute_force_is_invariant_to_rescaling(inst, col_exp, spread, y_exp):
    """f*(a A D, s y) = s^2 f*(A, y): the optimum is found whatever the units.

    With l2 = 0 every column gets its own factor; with l2 > 0 one factor ``a``
    (and l2 a^2, w_bar s / a, c s a, which keep f* = s^2 f*). Checked against
    the oracle's optimum of the unscaled instance.
    """
    p = inst.A.shape[1]
    f_star, _ = oracle.brute_force(inst)
    s = 10.0**y_exp
    if inst.l2 == 0.0:
        D = 10.0 ** (col_exp + np.asarray(spread[:p], dtype=float))
        scaled = L0Problem(inst.A * D, inst.y * s, inst.k)
        back = D / s
    else:
        a = 10.0 ** (col_exp // 3)  # l2 a^2 must stay a float
        wb = None if inst.w_bar is None else inst.w_bar * s / a
        c = None if inst.c is None else inst.c * s * a
        scaled = L0Problem(inst.A * a, inst.y * s, inst.k, l2=inst.l2 * a * a, w_bar=wb, c=c)
        back = np.full(p, a / s)
    sol = brute_force(scaled)
    assert sol.status == "optimal", sol.message
    f0 = oracle.objective(inst, np.zeros(p))
    f_back = oracle.objective(inst, sol.w * back)  # the solution in the original units
    assert abs(f_back - f_star) <= 1e-8 * max(abs(f_star), 1e-6 * f0, 1e-300)
    assert abs(sol.objective / s**2 - f_star) <= 1e-8 * max(abs(f_star), 1e-6 * f0, 1e-300)
    assert sol.lower_bound == sol.objective and sol.gap == 0.0


def test_mip_time_limit_excludes_the_backend_import(monkeypatch):
    import time

    import chita_opt.reference.mip as mip

    real = mip.import_backend

    def slow_import(backend):  # a first import of cvxpy + pyscipopt takes seconds
        time.sleep(1.0)
        return real(backend)

    monkeypatch.setattr(mip, "import_backend", slow_import)
    data = make_regression(20, 8, 2, random_state=3)
    sol = solve_mip(data.A, data.y, 2, time_limit=0.8)
    assert sol.status == "optimal", sol.message
    assert sol.time >= 1.0  # Solution.time still reports the whole call


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(max_p=6, full_k=False, ridge=False), st.integers(-120, 120),
       st.lists(st.integers(-6, 6), min_size=6, max_size=6))
def test_mip_is_invariant_to_column_scaling(problem, col_exp, spread):
    bf = brute_force(problem)
    assume(bf.status == "optimal" and np.max(np.abs(bf.w)) <= 1e4)  # as in mip_matches
    D = 10.0 ** (col_exp + np.asarray(spread[: problem.p], dtype=float))
    # w = D v: f(w) = 1/2||y - (A D) v||^2 + (c D)^T v
    scaled = L0Problem(problem.A * D, problem.y, problem.k, c=problem.c * D)
    sol = solve_mip(scaled)
    assert sol.status == "optimal", sol.message
    assert rel_diff(problem.objective(sol.w * D), bf.objective, problem) <= 1e-6
    assert sol.lower_bound <= sol.objective
