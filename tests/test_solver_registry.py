"""The method registry: one list, capabilities known without imports, options that match."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest

import chita_opt as co
from chita_opt.solvers import METHODS, method_info
from chita_opt.solvers._common import make_solution

OPTIMIZERS = ["backsolve", "iht", "active_set", "swap", "chita"]
HEURISTICS = ["magnitude", *OPTIMIZERS]


def test_every_listed_method_is_available_and_described():
    names = [m.name for m in METHODS]
    assert len(set(names)) == len(names)
    assert set(names) <= set(co.available_methods())
    for name in names:
        assert name in co.solve.__doc__, f"solve's docstring does not list {name}"
        assert method_info(name).name == name


@pytest.mark.parametrize("info", METHODS, ids=lambda m: m.name)
def test_declared_options_match_the_function_signature(info):
    from chita_opt.solvers import _registry

    importlib.import_module(info.module)
    fn = _registry._REGISTRY[info.name]
    params = inspect.signature(fn).parameters
    keyword = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keyword == set(info.options)
    assert info.warm_start == ("w0" in keyword)
    for old, new in info.deprecated:
        assert old in info.options and new in info.options


def test_capability_flags():
    assert method_info("magnitude").needs_gradients is False
    assert all(method_info(m).needs_gradients for m in OPTIMIZERS)
    assert method_info("chita").accepts("max_swaps")
    assert not method_info("iht").accepts("max_swaps")
    assert method_info("brute_force").exact and method_info("mip").exact
    assert not any(method_info(m).exact for m in HEURISTICS)


def test_method_info_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"method: expected one of \[.*'chita'.*\], got 'lasso'"):
        method_info("lasso")
    with pytest.raises(TypeError, match=r"method: expected one of .* got int 3"):
        method_info(3)


def test_method_info_imports_nothing():
    code = (
        "import sys, chita_opt as co\n"
        "from chita_opt.solvers import method_info\n"
        "[method_info(m) for m in co.available_methods()]\n"
        "bad = [m for m in ('chita_opt.reference.mip', 'chita_opt.solvers.chita', 'cvxpy')"
        " if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


_rng = np.random.default_rng(0)
A = _rng.standard_normal((30, 40))
y = A[:, :4] @ np.array([2.0, -1.0, 1.5, 1.0]) + 0.1 * _rng.standard_normal(30)


@pytest.mark.parametrize(
    ("method", "old", "new", "value"),
    [
        ("swap", "max_iter", "max_swaps", 2),
        ("swap", "candidates", "swap_candidates", 5),
        ("active_set", "max_iter", "max_rounds", 2),
        ("chita", "max_iter", "max_rounds", 2),
    ],
)
def test_deprecated_names_warn_and_mean_the_same(method, old, new, value):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated, use '{new}'"):
        a = co.solve(A, y, 4, method=method, **{old: value})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        b = co.solve(A, y, 4, method=method, **{new: value})
    assert a.w.tobytes() == b.w.tobytes() and a.status == b.status
    with pytest.raises(TypeError, match=f"{old}/{new}: expected only {new}"):
        co.solve(A, y, 4, method=method, **{old: value, new: value})


@pytest.mark.parametrize("method", [*HEURISTICS, "brute_force"])
def test_k_zero_is_optimal_for_every_method(method):
    sol = co.solve(A[:, :8], y, 0, method=method)
    assert sol.status == "optimal" and not np.any(sol.w)


@pytest.mark.parametrize("method", OPTIMIZERS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_k_equal_p_is_the_certified_global_minimiser(method, l2):
    B = A[:, :6]
    sol = co.solve(B, y, 6, method=method, l2=l2)
    direct = np.linalg.solve(B.T @ B + l2 * np.eye(6), B.T @ y)
    assert sol.status == "optimal"
    np.testing.assert_allclose(sol.w, direct, rtol=1e-8)


def test_non_finite_point_is_an_error_never_converged():
    P = co.L0Problem(A, y, 3)
    w = np.zeros(40)
    w[[0, 1]] = [np.nan, 1.0]
    sol = make_solution(P, w, method="iht", status="converged")
    assert sol.status == "error" and not sol.success
    assert "not finite" in sol.message


def test_objective_overflow_is_refused_at_the_boundary():
    with pytest.raises(ValueError, match=r"y/w_bar: expected data whose objective at w = 0"):
        co.L0Problem(A * 1e200, y * 1e200, 3)


def test_magnitude_with_w_bar_does_not_read_a():
    # needs_design is False: ranking |w_bar| must not touch A (no column norms
    # computed, no rescaled copy)
    P = co.L0Problem(A, y, 3, w_bar=np.arange(40.0))
    sol = co.solve(P, method="magnitude")
    assert sol.support.tolist() == [37, 38, 39]
    assert "col_sq_norms" not in P.__dict__


def test_every_option_is_documented_in_algorithms_md():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "algorithms.md").read_text()
    for name in ["magnitude", "backsolve", "iht", "active_set", "swap", "chita"]:
        info = method_info(name)
        deprecated = {old for old, _ in info.deprecated}
        for option in info.options - deprecated:
            assert f"`{option}`" in text, f"{name}: option {option!r} missing in the docs"
        for old, new in info.deprecated:
            assert f"`{old}`" in text and f"`{new}`" in text
