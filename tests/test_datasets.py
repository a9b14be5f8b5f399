"""Synthetic generators: covariance structure, coefficient patterns, SNR, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chita_opt import L0Problem
from chita_opt.datasets import (
    GradientData,
    RegressionData,
    coefficient_pattern,
    make_gradient_like,
    make_regression,
)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    p=st.integers(1, 30),
    data=st.data(),
    design=st.sampled_from(["toeplitz", "equicorrelated", "independent"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_make_regression_shapes_and_determinism(n, p, data, design, seed):
    k = data.draw(st.integers(0, p))
    pattern = data.draw(st.integers(1, 5))
    a = make_regression(n, p, k, design=design, pattern=pattern, random_state=seed)
    b = make_regression(n, p, k, design=design, pattern=pattern, random_state=seed)
    assert isinstance(a, RegressionData)
    A, y, w_true, noise_std = a  # unpacks like a tuple
    assert A.shape == (n, p) and y.shape == (n,) and w_true.shape == (p,)
    assert A.dtype == np.float64 and noise_std >= 0
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_array_equal(a.y, b.y)
    c = make_regression(n, p, k, design=design, pattern=pattern, random_state=seed + 1)
    assert not np.array_equal(a.A, c.A)


def test_generator_argument_is_accepted_and_advanced():
    rng = np.random.default_rng(3)
    a = make_regression(5, 4, 2, random_state=rng)
    b = make_regression(5, 4, 2, random_state=rng)
    assert not np.array_equal(a.A, b.A)


@pytest.mark.parametrize("rho", [0.5, -0.3, 0.8])
def test_toeplitz_covariance(rho):
    data = make_regression(40_000, 6, 2, design="toeplitz", rho=rho, random_state=0)
    emp = np.cov(data.A, rowvar=False)
    i, j = np.indices((6, 6))
    np.testing.assert_allclose(emp, rho ** np.abs(i - j), atol=0.03)


def test_equicorrelated_covariance():
    data = make_regression(40_000, 5, 2, design="equicorrelated", rho=0.3, random_state=1)
    emp = np.cov(data.A, rowvar=False)
    expected = np.full((5, 5), 0.3) + 0.7 * np.eye(5)
    np.testing.assert_allclose(emp, expected, atol=0.03)


@pytest.mark.parametrize(
    "design,rho", [("toeplitz", 0.5), ("equicorrelated", 0.4), ("independent", 0.0)]
)
@pytest.mark.parametrize("snr", [0.5, 5.0])
def test_snr_is_population_signal_over_noise(design, rho, snr):
    data = make_regression(
        60_000, 10, 4, design=design, rho=rho, snr=snr, pattern=3, random_state=2
    )
    signal = data.A @ data.w_true
    noise = data.y - signal
    assert np.std(noise) == pytest.approx(data.noise_std, rel=0.02)
    assert np.var(signal) / data.noise_std**2 == pytest.approx(snr, rel=0.05)


def test_noiseless_with_infinite_snr():
    data = make_regression(20, 8, 3, snr=np.inf, random_state=0)
    assert data.noise_std == 0.0
    np.testing.assert_allclose(data.y, data.A @ data.w_true)


def test_coefficient_patterns():
    np.testing.assert_array_equal(coefficient_pattern(10, 4, 1), [1, 0, 0, 1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(coefficient_pattern(6, 3, 2), [1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(coefficient_pattern(5, 3, 3), [10, 5.25, 0.5, 0, 0])
    np.testing.assert_allclose(coefficient_pattern(8, 6, 4), [-10, -6, -2, 2, 6, 10, 0, 0])
    np.testing.assert_allclose(coefficient_pattern(5, 2, 5), [1, 1, 0.5, 0.25, 0.125])
    for pattern in (1, 2, 3, 4):
        w = coefficient_pattern(30, 7, pattern)
        assert np.count_nonzero(w) == 7


def test_normalize_keeps_signal():
    raw = make_regression(50, 6, 3, random_state=4)
    norm = make_regression(50, 6, 3, normalize=True, random_state=4)
    np.testing.assert_allclose(np.linalg.norm(norm.A, axis=0), 1.0)
    np.testing.assert_allclose(norm.A @ norm.w_true, raw.A @ raw.w_true)
    np.testing.assert_array_equal(norm.y, raw.y)


def test_float32_and_problem():
    data = make_regression(30, 10, 3, dtype=np.float32, random_state=0)
    assert data.A.dtype == np.float32 and data.y.dtype == np.float32
    problem = data.problem(3, l2=0.1)
    assert isinstance(problem, L0Problem) and problem.k == 3 and problem.l2 == 0.1


def test_gradient_like_shape_and_heavy_tailed_scales():
    data = make_gradient_like(32, 5000, random_state=0)
    assert isinstance(data, GradientData)
    G, w_bar = data
    assert G.shape == (32, 5000) and G.dtype == np.float32 and w_bar.shape == (5000,)
    norms = np.linalg.norm(G.astype(np.float64), axis=0)
    # lognormal column scales: the top percent is far above the median
    assert np.percentile(norms, 99) / np.median(norms) > 10
    flat = make_gradient_like(32, 5000, scale_spread=0.0, random_state=0)
    flat_norms = np.linalg.norm(flat.G.astype(np.float64), axis=0)
    assert np.percentile(flat_norms, 99) / np.median(flat_norms) < 2
    # heavy-tailed weights: kurtosis well above the Gaussian 3
    z = (w_bar - w_bar.mean()) / w_bar.std()
    assert np.mean(z**4) > 4


def test_gradient_like_determinism_and_problem():
    a = make_gradient_like(8, 300, dtype=np.float64, random_state=7)
    b = make_gradient_like(8, 300, dtype=np.float64, random_state=7)
    np.testing.assert_array_equal(a.G, b.G)
    np.testing.assert_array_equal(a.w_bar, b.w_bar)
    problem = a.problem(sparsity=0.9, damping=1e-3)
    assert problem.k == 30 and problem.l2 == pytest.approx(8e-3)
    A, y = a.as_regression()
    assert A is a.G
    np.testing.assert_allclose(y, a.G @ a.w_bar)
    # rows are correlated: a rank-8 part dominates the spectrum
    s = np.linalg.svd(a.G / np.linalg.norm(a.G, axis=0), compute_uv=False)
    assert s[0] > 1.5 * s[-1]


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"rho: expected a number in \(-1, 1\), got 1.5"):
        make_regression(10, 5, 2, rho=1.5)
    with pytest.raises(ValueError, match=r"rho: expected a number in \[0, 1\), got -0.2"):
        make_regression(10, 5, 2, design="equicorrelated", rho=-0.2)
    with pytest.raises(ValueError, match=r"pattern: expected one of \(1, 2, 3, 4, 5\), got 7"):
        make_regression(10, 5, 2, pattern=7)
    with pytest.raises(ValueError, match="design: expected one of"):
        make_regression(10, 5, 2, design="banded")
    with pytest.raises(ValueError, match=r"snr: expected a number in \(0, inf\], got -1.0"):
        make_regression(10, 5, 2, snr=-1)
    with pytest.raises(ValueError, match=r"k: expected an integer in \[0, 5\], got 6"):
        make_regression(10, 5, 6)
    with pytest.raises(TypeError, match="n: expected a positive integer, got float"):
        make_regression(10.0, 5, 2)
    with pytest.raises(TypeError, match="random_state: expected None, a non-negative integer"):
        make_regression(10, 5, 2, random_state="seed")
    with pytest.raises(ValueError, match="dtype: expected float32 or float64, got int64"):
        make_regression(10, 5, 2, dtype=np.int64)
    with pytest.raises(ValueError, match=r"weight_df: expected a number in \(0, inf\)"):
        make_gradient_like(4, 10, weight_df=0)
    with pytest.raises(ValueError, match="scale_spread: expected a number in"):
        make_gradient_like(4, 10, scale_spread=-1)
