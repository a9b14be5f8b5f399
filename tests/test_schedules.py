"""Sparsity schedules of the multi-stage and gradual pruning loops."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt import k_from_sparsity
from chita_opt.pruning import SCHEDULES, sparsity_schedule, stage_ks


def test_single_stage_is_the_target_for_every_schedule():
    for name in SCHEDULES:
        assert sparsity_schedule(0.93, 1, name).tolist() == [0.93]


def test_exp_matches_the_papers_formula():
    # s_t = b + M (2^t - 1) / 2^t  with  M = (s - b) 2^(T-1) / (2^(T-1) - 1)
    s, b, T = 0.98, 0.2, 6
    M = (s - b) * 2 ** (T - 1) / (2 ** (T - 1) - 1)
    expected = [b + M * (2**t - 1) / 2**t for t in range(T)]
    np.testing.assert_allclose(sparsity_schedule(s, T, "exp", base_level=b), expected, rtol=1e-12)


def test_exp_steps_shrink_geometrically():
    levels = sparsity_schedule(0.9, 8, "exp", base_level=0.1)
    steps = np.diff(levels)
    np.testing.assert_allclose(steps[1:] / steps[:-1], 0.5, rtol=1e-10)


def test_poly_is_cubic_in_the_remaining_fraction():
    s, b, T = 0.95, 0.3, 7
    levels = sparsity_schedule(s, T, "poly", base_level=b)
    t = np.arange(T)
    np.testing.assert_allclose((s - levels) / (s - b), (1 - t / (T - 1)) ** 3, atol=1e-12)


def test_linear_has_equal_steps_and_const_stays_at_target():
    levels = sparsity_schedule(0.9, 4, "linear", base_level=0.3)
    np.testing.assert_allclose(levels, [0.3, 0.5, 0.7, 0.9], atol=1e-12)
    assert sparsity_schedule(0.7, 5, "const").tolist() == [0.7] * 5


def test_default_base_level_is_clipped_to_the_target():
    assert sparsity_schedule(0.5, 3, "linear")[0] == pytest.approx(0.1)
    # a target below the default base level starts (and stays) at the target
    np.testing.assert_allclose(sparsity_schedule(0.05, 3, "linear"), [0.05] * 3)


def test_explicit_levels_are_validated_and_kept():
    assert sparsity_schedule(0.8, 3, [0.2, 0.5, 0.8]).tolist() == [0.2, 0.5, 0.8]
    with pytest.raises(ValueError, match="schedule: expected 3 levels"):
        sparsity_schedule(0.8, 3, [0.5, 0.8])
    with pytest.raises(ValueError, match="non-decreasing"):
        sparsity_schedule(0.8, 3, [0.6, 0.5, 0.8])
    with pytest.raises(ValueError, match="last level to equal sparsity"):
        sparsity_schedule(0.8, 3, [0.2, 0.5, 0.7])
    with pytest.raises(ValueError, match=r"schedule: expected a number in \[0, 1\)"):
        sparsity_schedule(0.8, 3, [-0.1, 0.5, 0.8])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"sparsity": 1.5, "stages": 2},
            ValueError,
            r"sparsity: expected a number in \[0, 1\), got 1.5",
        ),
        ({"sparsity": 0.5, "stages": 0}, ValueError, "stages: expected a positive integer, got 0"),
        ({"sparsity": 0.5, "stages": 2.0}, TypeError, "stages: expected a positive integer"),
        (
            {"sparsity": 0.5, "stages": 2, "schedule": "cosine"},
            ValueError,
            "schedule: expected one of",
        ),
        ({"sparsity": 0.5, "stages": 2, "schedule": 3}, TypeError, "schedule: expected one of"),
        (
            {"sparsity": 0.5, "stages": 2, "base_level": 0.7},
            ValueError,
            "base_level: expected a level",
        ),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sparsity_schedule(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    s=st.floats(0.0, 0.999),
    frac=st.floats(0.0, 1.0),
    T=st.integers(1, 30),
    name=st.sampled_from(SCHEDULES),
    p=st.integers(1, 100_000),
)
def test_every_schedule_is_monotone_from_base_to_target(s, frac, T, name, p):
    base = s * frac
    levels = sparsity_schedule(s, T, name, base_level=base)
    assert levels.shape == (T,)
    assert levels[-1] == s
    assert np.all(np.diff(levels) >= 0)
    assert np.all(levels >= min(base, s) - 1e-12) and np.all(levels <= s)
    if name != "const" and T > 1:
        assert levels[0] == pytest.approx(base, abs=1e-12)
    ks = stage_ks(p, levels)
    assert all(a >= b for a, b in itertools.pairwise(ks))
    assert ks[-1] == k_from_sparsity(p, s) == p - round(s * p)
