"""Every solver option is checked at the public boundary (type, range, finiteness).

The table of what each option accepts is written here independently of the
solvers: a bad value must raise ``TypeError``/``ValueError`` naming the
option, never an error from inside Numba or a silent truncation; numpy
scalars of the right kind are accepted.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chita_opt as co
from chita_opt.solvers import method_info

rng = np.random.default_rng(3)
A = rng.standard_normal((12, 9))
y = A[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(12)
K = 3

# kind of every option: (lowest valid value, integer?, None allowed?)
KINDS = {
    "max_iter": (1, True, True),
    "max_rounds": (1, True, True),
    "max_swaps": (0, True, True),
    "inner_max_iter": (1, True, False),
    "cd_sweeps": (1, True, False),
    "refit_after": (1, True, False),
    "restarts": (0, True, True),
    "ils_iters": (0, True, True),
    "swap_candidates": (1, True, True),
    "candidates": (1, True, True),
    "random_state": (0, True, True),
    "tol": (0.0, False, False),  # strictly positive
    "ws_factor": (1.0, False, False),
    "lipschitz": (0.0, False, True),  # strictly positive
}
# a deprecated name takes the range of the name it stands for
OVERRIDES = {("swap", "max_iter"): KINDS["max_swaps"]}
STRICT = {"tol", "lipschitz"}
CASES = [
    (m, opt)
    for m in ["iht", "active_set", "swap", "chita"]
    for opt in sorted(method_info(m).options - {"w0", "support"})
]


def test_the_table_covers_every_option():
    assert {opt for _, opt in CASES} <= set(KINDS)


def _kind(method: str, opt: str) -> tuple:
    return OVERRIDES.get((method, opt), KINDS[opt])


def _bad_values(method: str, opt: str) -> st.SearchStrategy:
    low, integer, none_ok = _kind(method, opt)
    bad = [
        st.text(max_size=3),
        st.just([1]),
        st.just(True),
        st.just(np.bool_(False)),
        st.just(complex(1, 1)),
        st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    ]
    if integer:
        bad += [st.floats(0.5, 1e6).filter(lambda v: not float(v).is_integer()),
                st.integers(-10**6, low - 1), st.just(2.0)]
    else:
        bad += [st.floats(-1e6, low, exclude_max=low in (0.0,) and opt not in STRICT)
                .filter(lambda v: v < low or (opt in STRICT and v <= low))]
    if not none_ok:
        bad.append(st.none())
    return st.one_of(*bad)


def _call(method, **opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return co.solve(A, y, K, method=method, **opts)


@pytest.mark.parametrize(("method", "opt"), CASES)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_bad_option_values_are_refused_with_the_option_named(method, opt, data):
    value = data.draw(_bad_values(method, opt), label=opt)
    with pytest.raises((TypeError, ValueError)) as info:
        _call(method, **{opt: value})
    assert str(info.value).startswith(f"{opt}: expected"), str(info.value)


@pytest.mark.parametrize(("method", "opt"), CASES)
def test_numpy_scalars_are_accepted(method, opt):
    low, integer, _ = _kind(method, opt)
    if opt == "lipschitz":
        value = np.float64(np.linalg.norm(A, 2) ** 2 * 1.01)
    elif integer:
        value = np.int64(max(low, 2))
    else:
        value = np.int64(1) if opt == "tol" else np.float64(max(low, 1.0) * 1.5)
    sol = _call(method, **{opt: value})
    assert sol.status in ("converged", "max_iter", "optimal")


def test_random_state_is_named_in_its_errors():
    with pytest.raises(TypeError, match="random_state: expected None or a non-negative integer"):
        co.solve(A, y, K, random_state="abc")
    with pytest.raises(ValueError, match="random_state: expected None or a non-negative integer"):
        co.solve(A, y, K, method="iht", random_state=-1)


def test_k_from_sparsity_checks_p():
    with pytest.raises(ValueError, match="p: expected a non-negative integer, got -3"):
        co.k_from_sparsity(-3, 0.5)
    with pytest.raises(TypeError, match="p: expected a non-negative integer, got float"):
        co.k_from_sparsity(3.5, 0.5)
    assert co.k_from_sparsity(np.int64(10), 0.3) == 7
