"""Group caps (N:M): validation, the exact projection, and every method against brute force.

The optimum over feasible supports comes from an oracle that does not use
the package's projection or refit (``oracle._support_min``: lstsq on each
support) on the smaller instances, and from ``method="brute_force"`` on the
larger ones after the two are checked to agree.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chita_opt
from chita_opt import L0Problem
from chita_opt.datasets import make_gradient_like
from chita_opt.solvers._group_caps import (
    GROUP_CAP_METHODS,
    allowed_slots,
    make_group_caps,
    mask_infeasible_pairs,
    perturb_support,
)

from .oracle import Instance, _support_min, make_instance


def counts_ok(groups: np.ndarray, caps: dict[int, int], k: int, support) -> bool:
    """Feasibility written from the definition (no package code)."""
    support = list(support)
    if len(support) > k:
        return False
    for g in set(groups[support].tolist()):
        if sum(1 for i in support if groups[i] == g) > caps[g]:
            return False
    return True


def cap_dict(groups: np.ndarray, group_k) -> dict[int, int]:
    ids = np.unique(groups)
    if isinstance(group_k, (int, np.integer)):
        return {int(g): int(group_k) for g in ids}
    if isinstance(group_k, dict):
        return {int(g): int(group_k[int(g)]) for g in ids}
    return {int(g): int(group_k[g]) for g in ids}


# ------------------------------------------------------------------ instances
def draw_groups(rng: np.random.Generator, p: int):
    """N:M groups of M consecutive coordinates, random (non-contiguous) ids, or one group."""
    kind = rng.choice(["nm", "nm", "random", "single"])
    if kind == "nm":
        m = int(rng.integers(2, 5))
        groups = np.arange(p) // m
        group_k = int(rng.integers(1, m))
    elif kind == "random":
        n_groups = int(rng.integers(1, 6))
        ids = rng.choice(20, size=n_groups, replace=False) * 3  # gaps in the ids
        groups = ids[rng.integers(n_groups, size=p)]
        caps = rng.integers(0, 4, size=int(ids.max()) + 1)
        group_k = caps if rng.random() < 0.5 else {int(g): int(caps[g]) for g in ids}
    else:
        groups = np.zeros(p, dtype=np.int64)
        group_k = int(rng.integers(1, p + 1))
    return groups.astype(np.int64), group_k


def capped_instance(seed: int, max_p: int = 16) -> tuple[Instance, np.ndarray, object]:
    rng = np.random.default_rng(seed + 10_000)
    inst = make_instance(seed, max_p)
    p = inst.A.shape[1]
    groups, group_k = draw_groups(rng, p)
    total = sum(min(c, int(np.sum(groups == g))) for g, c in cap_dict(groups, group_k).items())
    k = None if rng.random() < 0.5 else int(rng.integers(0, min(total + 1, p) + 1))
    return replace(inst, k=k), groups, group_k


def oracle_optimum(inst: Instance, groups, group_k) -> float:
    """min f over the feasible supports, by lstsq on each (independent of the package)."""
    caps = cap_dict(groups, group_k)
    p = inst.A.shape[1]
    total = sum(min(c, int(np.sum(groups == g))) for g, c in caps.items())
    k = total if inst.k is None else min(inst.k, total)
    best = np.inf
    for S in itertools.combinations(range(p), k):
        if counts_ok(groups, caps, k, S):
            best = min(best, _support_min(replace(inst, k=k), S)[0])
    return best


def solve(inst: Instance, groups, group_k, method: str, **options):
    return chita_opt.solve(inst.A, inst.y, inst.k, groups=groups, group_k=group_k, method=method,
                           **inst.kwargs(), **options)


def close_enough(f: float, f_star: float, inst: Instance, rel: float) -> bool:
    scale = max(abs(f_star), 1e-9 * max(float(inst.y @ inst.y), 1.0))
    return f <= f_star + rel * scale


def well_posed(inst: Instance) -> bool:
    # the oracle handles c != 0 only with l2 > 0 (else f may be unbounded)
    return inst.c is None or inst.l2 > 0


# ------------------------------------------------------------- validation
def test_problem_stores_caps_read_only_and_keeps_them():
    rng = np.random.default_rng(0)
    A, y = rng.standard_normal((8, 12)), rng.standard_normal(8)
    P = L0Problem(A, y, groups=np.arange(12) // 4, group_k=2)
    assert P.k == 6  # default: the sum of the caps
    assert not P.groups.flags.writeable
    with pytest.raises(AttributeError):
        P.groups = None
    assert P.with_k(4).group_caps is not None and P.with_k(4).k == 4
    assert P.with_k(10).k == 6  # clipped to the largest feasible support
    assert P.replace(l2=1.0).group_k == 2
    assert P.replace(groups=None, k=6).group_caps is None
    per_id = L0Problem(A, y, 5, groups=np.arange(12) // 4, group_k=[1, 2, 9])
    assert per_id.group_caps.cap.tolist() == [1, 2, 4] and per_id.k == 5
    assert not per_id.group_k.flags.writeable


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"groups": np.arange(11) // 4, "group_k": 2}, ValueError, "groups: expected length 12"),
        ({"groups": np.arange(12) / 4.0, "group_k": 2}, TypeError, "groups: .*integer dtype"),
        ({"groups": np.arange(12) - 1, "group_k": 2}, ValueError, "groups: .*non-negative"),
        ({"groups": np.arange(12) // 4, "group_k": -1}, ValueError, "group_k: .*non-negative"),
        ({"groups": np.arange(12) // 4, "group_k": 2.0}, TypeError, "group_k: expected"),
        ({"groups": np.arange(12) // 4, "group_k": True}, TypeError, "group_k: expected"),
        ({"groups": np.arange(12) // 4, "group_k": [1, 2]}, ValueError, "got length 2"),
        ({"groups": np.arange(12) // 4, "group_k": {0: 1, 1: 1}}, ValueError, r"ids \[2\]"),
        ({"groups": np.arange(12) // 4}, TypeError, "group_k: .*got None"),
        ({"group_k": 2, "k": 3}, TypeError, "group_k: expected None without groups"),
        ({}, TypeError, "k: expected an integer"),
    ],
)
def test_validation_names_the_argument(kwargs, error, match):
    rng = np.random.default_rng(0)
    A, y = rng.standard_normal((8, 12)), rng.standard_normal(8)
    with pytest.raises(error, match=match):
        chita_opt.solve(A, y, **kwargs)


def test_unsupported_method_and_misuse_refused(monkeypatch):
    from chita_opt.solvers import _REGISTRY

    rng = np.random.default_rng(1)
    A, y = rng.standard_normal((8, 12)), rng.standard_normal(8)
    # a method without the group_caps flag (registered at run time) is refused
    monkeypatch.setitem(_REGISTRY, "plain_for_test", _REGISTRY.get("backsolve")
                        or chita_opt.solvers.lookup("backsolve"))
    with pytest.raises(ValueError, match="groups: method 'plain_for_test' does not support"):
        chita_opt.solve(A, y, groups=np.arange(12) // 4, group_k=2, method="plain_for_test")
    P = L0Problem(A, y, groups=np.arange(12) // 4, group_k=2)
    with pytest.raises(TypeError, match="groups"):
        chita_opt.solve(P, groups=np.arange(12) // 4)
    with pytest.raises(ValueError, match="support: expected at most group_k=2 indices in group 0"):
        chita_opt.solve(P, method="backsolve", support=[0, 1, 2])
    sol = chita_opt.solve(P, method="backsolve", support=[0, 1, 4, 9])
    assert sol.support.tolist() == [0, 1, 4, 9]
    # an infeasible warm start is projected onto the caps, not refused
    w0 = np.arange(12, dtype=float) + 1
    assert np.flatnonzero(chita_opt.solve(P, method="magnitude", w0=w0).w).tolist() == [
        2, 3, 6, 7, 10, 11]


# ---------------------------------------------------------- the projection
@st.composite
def projection_cases(draw):
    p = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    groups, group_k = draw_groups(rng, p)
    # rounded scores: many ties, and zeros
    v = np.round(rng.standard_normal(p) * 2) / 2
    k = draw(st.integers(0, p + 1))
    return groups, group_k, v, k


@settings(max_examples=300, deadline=None)
@given(projection_cases())
def test_projection_is_exact_and_greedy(case):
    groups, group_k, v, k = case
    p = v.size
    caps = make_group_caps(groups, group_k, p)
    S = caps.project(np.abs(v), k)
    cd = cap_dict(groups, group_k)
    assert counts_ok(groups, cd, k, S)
    # exact: no feasible support keeps more of ||v||^2 (brute force over all subsets)
    best = max(
        float(np.sum(v[list(T)] ** 2))
        for r in range(min(k, p) + 1)
        for T in itertools.combinations(range(p), r)
        if counts_ok(groups, cd, k, T)
    )
    assert np.isclose(float(np.sum(v[S] ** 2)), best, rtol=0, atol=1e-12)
    # the greedy rule itself (ties to the smaller index), written out
    taken, used = [], dict.fromkeys(cd, 0)
    for i in sorted(range(p), key=lambda i: (-abs(v[i]), i)):
        g = int(groups[i])
        if len(taken) < k and used[g] < min(cd[g], int(np.sum(groups == g))):
            taken.append(i)
            used[g] += 1
    assert S.tolist() == sorted(taken)


@settings(max_examples=100, deadline=None)
@given(projection_cases(), st.integers(0, 2**31 - 1))
def test_swap_helpers_keep_every_cap(case, seed):
    groups, group_k, v, _ = case
    p = v.size
    caps = make_group_caps(groups, group_k, p)
    k = caps.total
    S = caps.project(np.abs(v), k)
    cd = cap_dict(groups, group_k)
    outside = np.setdiff1d(np.arange(p), S)
    # the pair mask marks exactly the swaps that break a cap
    delta = np.zeros((S.size, outside.size))
    mask_infeasible_pairs(caps, caps.counts(S), S, outside, delta)
    for a in range(S.size):
        for b, j in enumerate(outside):
            T = np.append(np.delete(S, a), j)
            assert np.isinf(delta[a, b]) == (not counts_ok(groups, cd, k, T))
    for j in outside:
        allowed = allowed_slots(caps, S, int(j))
        slots = range(S.size) if allowed is None else allowed
        for a in slots:
            assert counts_ok(groups, cd, k, np.append(np.delete(S, a), j))
    rng = np.random.default_rng(seed)
    T = perturb_support(caps, S, outside, rng, 3)
    assert T.size == S.size and counts_ok(groups, cd, k, T)


# ------------------------------------------------- methods vs the optimum
def test_brute_force_matches_the_independent_oracle():
    checked = 0
    for seed in range(40):
        inst, groups, group_k = capped_instance(seed, max_p=10)
        if not well_posed(inst):
            continue
        f_star = oracle_optimum(inst, groups, group_k)
        sol = solve(inst, groups, group_k, "brute_force")
        assert sol.status == "optimal"
        assert abs(sol.objective - f_star) <= 1e-7 * max(abs(f_star), 1.0)
        checked += 1
    assert checked >= 25


def _instance_results(seed: int):
    inst, groups, group_k = capped_instance(seed, max_p=16)
    f_star = solve(inst, groups, group_k, "brute_force").objective
    return inst, groups, group_k, f_star


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_no_method_breaks_a_cap_and_chita_is_near_optimal(seed):
    inst, groups, group_k, f_star = _instance_results(seed)
    if not well_posed(inst):
        return
    cd = cap_dict(groups, group_k)
    k_eff = L0Problem(inst.A, inst.y, inst.k, groups=groups, group_k=group_k).k
    for method in sorted(GROUP_CAP_METHODS):
        sol = solve(inst, groups, group_k, method)
        assert counts_ok(groups, cd, k_eff, np.flatnonzero(sol.w)), method
        assert sol.objective >= f_star - 1e-7 * max(abs(f_star), 1.0), method
    f = solve(inst, groups, group_k, "chita").objective
    assert close_enough(f, f_star, inst, rel=0.02)


def test_chita_reaches_the_optimum_on_95_percent():
    hits, total, worst = 0, 0, 0.0
    for seed in range(150):
        inst, groups, group_k, f_star = _instance_results(seed)
        if not well_posed(inst):
            continue
        f = solve(inst, groups, group_k, "chita").objective
        total += 1
        hits += close_enough(f, f_star, inst, rel=1e-6)
        worst = max(worst, (f - f_star) / max(abs(f_star), 1e-12))
    assert total >= 110
    assert hits >= 0.95 * total, f"optimal on {hits}/{total}"
    assert worst <= 0.02


# --------------------------------------------------------- pruning-shaped
@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8)])
def test_pruning_keeps_exactly_n_per_group(n, m):
    data = make_gradient_like(40, 128, random_state=n * 10 + m)
    P = L0Problem.from_gradients(data.G, data.w_bar, k=128, damping=1e-3)
    groups = np.arange(128) // m
    P = P.replace(groups=groups, group_k=n)
    assert P.k == 128 // m * n
    for method in ("magnitude", "backsolve", "iht", "active_set", "swap", "chita"):
        sol = chita_opt.solve(P, method=method)
        counts = np.bincount(groups[sol.support], minlength=128 // m)
        assert np.all(counts == n), (method, counts)
    chita = chita_opt.solve(P).objective
    assert chita <= chita_opt.solve(P, method="backsolve").objective + 1e-9


@pytest.mark.parametrize("method", ["iht", "active_set", "chita"])
def test_loose_caps_change_nothing(method):
    """One group with cap p is no constraint: the capped code path gives the same point."""
    inst = make_instance(3, 14)
    p = inst.A.shape[1]
    plain = chita_opt.solve(inst.A, inst.y, inst.k, method=method, **inst.kwargs())
    capped = chita_opt.solve(inst.A, inst.y, inst.k, groups=np.zeros(p, dtype=int), group_k=p,
                             method=method, **inst.kwargs())
    np.testing.assert_allclose(capped.w, plain.w, rtol=1e-10, atol=1e-12)


def test_solve_path_and_is_feasible_keep_the_caps():
    rng = np.random.default_rng(4)
    A, y = rng.standard_normal((10, 12)), rng.standard_normal(10)
    groups = np.arange(12) // 3
    P = L0Problem(A, y, groups=groups, group_k=1)
    sols = chita_opt.solve_path(P, [1, 2, 4, 12])
    assert [s.support.size for s in sols] == [1, 2, 4, 4]  # k = 12 is clipped to 4
    for s in sols:
        assert np.all(np.bincount(groups[s.support], minlength=4) <= 1)
        assert P.is_feasible(s.w)
    w = np.zeros(12)
    w[[0, 1]] = 1.0
    assert not P.is_feasible(w) and L0Problem(A, y, 2).is_feasible(w)
    from_arrays = chita_opt.solve_path(A, y, [1, 2, 4], groups=groups, group_k=1)
    assert [s.objective for s in from_arrays] == [s.objective for s in sols[:3]]


def test_results_are_deterministic():
    inst, groups, group_k = capped_instance(7)
    a = solve(inst, groups, group_k, "chita", random_state=3)
    b = solve(inst, groups, group_k, "chita", random_state=3)
    np.testing.assert_array_equal(a.w, b.w)


def test_mip_group_rows_select_the_projection():
    cp = pytest.importorskip("cvxpy")
    if "SCIP" not in cp.installed_solvers() and "HIGHS" not in cp.installed_solvers():
        pytest.skip("no MIP solver")
    from chita_opt.reference._group_constraints import group_cap_constraints

    rng = np.random.default_rng(5)
    p = 12
    P = L0Problem(rng.standard_normal((4, p)), rng.standard_normal(4), 5,
                  groups=np.arange(p) // 3, group_k=[1, 2, 0, 9])
    scores = rng.random(p)
    z = cp.Variable(p, boolean=True)
    rows = group_cap_constraints(z, P.group_caps)
    assert len(rows) == 3  # the group whose cap exceeds its size gets no row
    cp.Problem(cp.Maximize(scores @ z), [*rows, cp.sum(z) <= P.k]).solve()
    assert np.flatnonzero(z.value > 0.5).tolist() == P.group_caps.project(scores, P.k).tolist()


def test_mip_certifies_the_capped_optimum_of_brute_force():
    cp = pytest.importorskip("cvxpy")
    if "SCIP" not in cp.installed_solvers():
        pytest.skip("no SCIP")
    checked = 0
    for seed in range(12):
        inst, groups, group_k = capped_instance(seed, max_p=10)
        if not well_posed(inst):
            continue
        exact = solve(inst, groups, group_k, "brute_force")
        mip = solve(inst, groups, group_k, "mip")
        assert mip.status == "optimal" == exact.status
        scale = max(abs(exact.objective), 1e-9 * max(float(inst.y @ inst.y), 1.0))
        assert abs(mip.objective - exact.objective) <= 1e-4 * scale
        P = L0Problem(inst.A, inst.y, inst.k, groups=groups, group_k=group_k)
        assert P.is_feasible(mip.w)
        checked += 1
        if checked == 3:
            break
    assert checked == 3


def test_mip_reading_never_breaks_a_cap_when_a_weight_leaks():
    """The solver's w may carry a weight through z_i = 0 at its tolerance; the largest
    |w_i| then break a group cap unless they are read with the capped projection
    (regression: hypothesis seed 19212 returned 3 non-zeros in a group capped at 2)."""
    from chita_opt.reference._backend import Outcome
    from chita_opt.reference._certificate import best_point
    from chita_opt.result import Status

    rng = np.random.default_rng(0)
    P = L0Problem(rng.standard_normal((6, 5)), rng.standard_normal(6), 3,
                  groups=[0, 0, 0, 0, 1], group_k=2)
    leaked = np.array([3.0, 2.0, 1.5, 0.0, 0.1])  # z says {0, 1, 4}; |w| ranks 0, 1, 2 first
    outcome = Outcome(Status.OPTIMAL, leaked, np.array([0, 1, 4]), None, "optimal", 1, "",
                      0.0, False)
    w = best_point(P, outcome, [])
    assert P.is_feasible(w)
    for seed in (19212,):
        inst, groups, group_k = capped_instance(seed)
        sol = solve(inst, groups, group_k, "mip")
        assert L0Problem(inst.A, inst.y, inst.k, groups=groups, group_k=group_k).is_feasible(sol.w)


def test_brute_force_does_not_call_badly_scaled_supports_unbounded():
    """Columns scaled 1e-2 .. 8e3, l2 = 0, c = 0: f is bounded on every support
    (regression: the unscaled eigendecomposition reported "unbounded")."""
    inst, groups, group_k = capped_instance(2228)
    assert inst.l2 == 0 and inst.c is None
    for g, gk in ((None, None), (groups, group_k)):
        sol = chita_opt.solve(inst.A, inst.y, 4, groups=g, group_k=gk, method="brute_force",
                              **inst.kwargs())
        assert sol.status == "optimal"
        f_star = (oracle_optimum(replace(inst, k=4), np.zeros(8, dtype=np.int64), 4)
                  if g is None else oracle_optimum(replace(inst, k=4), g, gk))
        assert abs(sol.objective - f_star) <= 1e-7 * max(abs(f_star), 1.0)


def test_benchmark_script_smoke():
    """benchmarks/group_caps.py runs (tiny sizes) and every capped result is 2:4."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "group_caps.py"), "--smoke"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")][2:]
    assert len(rows) == 3 and all(row.rstrip(" |").endswith("yes") for row in rows)
    assert "group_caps.py --smoke" in proc.stdout and "# thread env" in proc.stdout
