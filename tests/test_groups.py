"""Group caps: N:M group construction and the greedy projection against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt.groups import (
    check_groups,
    group_counts,
    is_feasible,
    nm_groups,
    parse_nm,
    project_groups,
)


@st.composite
def structures(draw, max_p=10):
    p = draw(st.integers(1, max_p))
    n_groups = draw(st.integers(1, p))
    groups = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=p, max_size=p)))
    if draw(st.booleans()):
        group_k = draw(st.integers(0, 3))
    else:
        group_k = np.array(draw(st.lists(st.integers(0, 3), min_size=n_groups, max_size=n_groups)))
    k = draw(st.one_of(st.none(), st.integers(0, p)))
    # few distinct values so that ties are common
    scores = np.array(
        draw(st.lists(st.integers(-3, 6).map(float), min_size=p, max_size=p))
    )
    return scores, groups, group_k, k


def _feasible_masks(p, groups, group_k, k):
    for bits in itertools.product([False, True], repeat=p):
        mask = np.array(bits, dtype=bool)
        if is_feasible(mask, groups, group_k, k):
            yield mask


@settings(max_examples=150, deadline=None)
@given(structures())
def test_greedy_projection_matches_brute_force(data):
    scores, groups, group_k, k = data
    p = scores.shape[0]
    mask = project_groups(scores, groups, group_k, k)
    assert mask.dtype == bool and mask.shape == (p,)
    assert is_feasible(mask, groups, group_k, k)
    feasible = list(_feasible_masks(p, groups, group_k, k))
    best_size = max(int(m.sum()) for m in feasible)
    # a basis: no feasible support is larger
    assert int(mask.sum()) == best_size
    # the best score sum among supports of maximum size
    best_sum = max(float(scores[m].sum()) for m in feasible if int(m.sum()) == best_size)
    assert float(scores[mask].sum()) == pytest.approx(best_sum, abs=1e-12)
    # with non-negative scores (|v|, v^2) it is the best over every feasible support
    nonneg = np.abs(scores)
    mask2 = project_groups(nonneg, groups, group_k, k)
    assert float(nonneg[mask2].sum()) == pytest.approx(
        max(float(nonneg[m].sum()) for m in feasible), abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(structures())
def test_projection_is_euclidean_projection(data):
    scores, groups, group_k, k = data
    v = scores - 1.5  # signed values; project by v^2
    mask = project_groups(v**2, groups, group_k, k)
    dist = float(np.sum(v[~mask] ** 2))
    best = min(float(np.sum(v[~m] ** 2)) for m in _feasible_masks(v.size, groups, group_k, k))
    assert dist == pytest.approx(best, abs=1e-12)


def test_projection_is_deterministic_on_ties():
    scores = np.ones(6)
    mask = project_groups(scores, np.array([0, 0, 0, 1, 1, 1]), 1)
    assert mask.tolist() == [True, False, False, True, False, False]


def test_nm_groups_linear_and_conv():
    g = nm_groups((2, 8), 4)
    assert g.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    # Conv2d (out=2, in=2, 1, 2): rows of 4 consecutive flattened entries
    gc = nm_groups((2, 2, 1, 2), 2)
    assert gc.reshape(2, 4).tolist() == [[0, 0, 1, 1], [2, 2, 3, 3]]
    with pytest.raises(ValueError, match="multiple of 4"):
        nm_groups((3, 6), 4)
    gp = nm_groups((2, 6), 4, allow_partial=True)
    assert gp.reshape(2, 6).tolist() == [[0, 0, 0, 0, 1, 1], [2, 2, 2, 2, 3, 3]]


def test_nm_projection_keeps_n_largest_per_group():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 16))
    mask = project_groups(np.abs(w).ravel(), nm_groups(w.shape, 4), 2).reshape(w.shape)
    blocks = np.abs(w).reshape(5, 4, 4)
    expect = np.argsort(-blocks, axis=-1)[..., :2]
    got = np.sort(np.nonzero(mask.reshape(5, 4, 4))[-1].reshape(5, 4, 2), axis=-1)
    assert np.array_equal(got, np.sort(expect, axis=-1))
    assert group_counts(mask.ravel(), nm_groups(w.shape, 4)).tolist() == [2] * 20


def test_parse_nm():
    assert parse_nm("2:4") == (2, 4)
    assert parse_nm((4, 8)) == (4, 8)
    with pytest.raises(ValueError, match="pattern: expected 1 <= N <= M"):
        parse_nm("5:4")
    with pytest.raises(ValueError, match="'N:M'"):
        parse_nm("2-4")
    with pytest.raises(TypeError, match="pattern"):
        parse_nm(0.5)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="groups: expected length 3"):
        check_groups(np.array([0, 1]), 1, p=3)
    with pytest.raises(ValueError, match="group_k: expected one cap per group"):
        check_groups(np.array([0, 1, 2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="group_k: expected non-negative"):
        check_groups(np.array([0, 1]), -1)
    with pytest.raises(TypeError, match="groups: expected a 1-D integer array"):
        check_groups(np.array([0.5, 1.0]), 1)
    with pytest.raises(ValueError, match="k: expected a non-negative integer"):
        check_groups(np.array([0, 1]), 1, k=-2)
    with pytest.raises(ValueError, match="scores: expected finite"):
        project_groups(np.array([np.nan, 1.0]), np.array([0, 0]), 1)
