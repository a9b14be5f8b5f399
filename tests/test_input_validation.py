"""Bad input: a clear error naming the argument, what was expected and what was received."""

from __future__ import annotations

import numpy as np
import pytest

import chita_opt as co

rng = np.random.default_rng(0)
A = rng.standard_normal((8, 5))
y = rng.standard_normal(8)


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"A": np.ones(5)}, ValueError, r"A: expected a 2-D array.*got 1-D"),
        ({"A": np.ones((0, 5))}, ValueError, r"A: expected a non-empty matrix"),
        ({"A": np.full((8, 5), np.nan)}, ValueError, r"A: expected finite values, got 40 NaN"),
        ({"A": "matrix"}, TypeError, r"A: expected a numeric array, got str"),
        ({"A": np.ones((8, 5), dtype=complex)}, TypeError, r"A: expected a real-valued array"),
        ({"y": np.ones(7)}, ValueError, r"y: expected length 8, got length 7"),
        ({"y": np.ones((8, 1))}, ValueError, r"y: expected a 1-D array.*2-D"),
        ({"y": np.r_[np.inf, np.ones(7)]}, ValueError, r"y: expected finite values.*1 Inf"),
        ({"k": 6}, ValueError, r"k: expected an integer in \[0, 5\], got 6"),
        ({"k": -1}, ValueError, r"k: expected an integer in \[0, 5\], got -1"),
        ({"k": 2.0}, TypeError, r"k: expected an integer in \[0, 5\], got float 2.0"),
        ({"k": "2"}, TypeError, r"k: expected an integer"),
        ({"k": True}, TypeError, r"k: expected an integer"),
        ({"l2": -0.1}, ValueError, r"l2: expected a finite non-negative number, got -0.1"),
        ({"l2": np.nan}, ValueError, r"l2: expected a finite non-negative number"),
        ({"l2": "big"}, TypeError, r"l2: expected a non-negative real number"),
        ({"w_bar": np.ones(4)}, ValueError, r"w_bar: expected length 5, got length 4"),
        ({"w_bar": np.r_[np.nan, np.ones(4)]}, ValueError, r"w_bar: expected finite values"),
        ({"c": np.ones(6)}, ValueError, r"c: expected length 5, got length 6"),
        ({"method": "lasso"}, ValueError, r"method: expected one of \[.*'chita'.*\], got 'lasso'"),
        ({"method": 3}, TypeError, r"method: expected one of"),
    ],
)
def test_bad_input_messages(kwargs, exc, pattern):
    args = {"A": A, "y": y, "k": 2}
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        co.solve(args.pop("A"), args.pop("y"), args.pop("k"), **args)


def test_unknown_option_is_rejected():
    with pytest.raises(TypeError, match=r"method 'iht' does not accept option\(s\) \['max_itr'\]"):
        co.solve(A, y, 2, method="iht", max_itr=3)


def test_bad_options():
    with pytest.raises(TypeError, match="max_iter: expected a positive integer"):
        co.solve(A, y, 2, method="iht", max_iter=1.5)
    with pytest.raises(ValueError, match="tol: expected a finite positive number"):
        co.solve(A, y, 2, method="iht", tol=-1.0)


def test_problem_plus_data_is_rejected():
    P = co.L0Problem(A, y, 2)
    with pytest.raises(TypeError, match="k: expected nothing besides an L0Problem"):
        co.solve(P, k=3)


def test_problem_is_immutable_and_input_untouched():
    A_in = A.copy()
    P = co.L0Problem(A_in, y, 2)
    with pytest.raises(AttributeError, match="immutable"):
        P.k = 3
    with pytest.raises(ValueError):
        P.A[0, 0] = 1.0
    co.solve(P)
    np.testing.assert_array_equal(A_in, A)
    assert A_in.flags.writeable


def test_with_l2_is_from_gradients_at_another_damping_without_a_pass_over_A():
    G = rng.standard_normal((6, 20)).astype(np.float32)
    w = rng.standard_normal(20)
    groups = np.arange(20) // 4
    base = co.L0Problem.from_gradients(G, w, k=6, damping=0.0, first_order=True).replace(
        groups=groups, group_k=2)
    norms = base.col_sq_norms
    P = base.with_l2(6 * 1e-2)
    Q = co.L0Problem.from_gradients(G, w, k=6, damping=1e-2, first_order=True).replace(
        groups=groups, group_k=2)
    assert P.l2 == Q.l2 and P.k == Q.k and P.A is not None
    np.testing.assert_array_equal(P.y, Q.y)
    np.testing.assert_array_equal(P.c, Q.c)
    np.testing.assert_array_equal(P.groups, Q.groups)
    assert P.group_caps is base.group_caps  # the validated caps carry over
    assert np.shares_memory(P.A, base.A)  # no copy of A
    np.testing.assert_array_equal(P.col_sq_norms, norms)
    v = rng.standard_normal(20)
    assert P.objective(v) == Q.objective(v)
    assert co.solve(P).objective == pytest.approx(co.solve(Q).objective, rel=1e-12)
    with pytest.raises(ValueError, match="l2: expected a finite non-negative number"):
        base.with_l2(-1.0)
    with pytest.raises(ValueError, match="l2: expected a finite non-negative number"):
        base.with_l2(float("nan"))
    with pytest.raises(ValueError, match="objective at w = 0"):
        base.with_l2(1e308)  # finite, but l2 ||w_bar||^2 / 2 overflows


def test_with_k_is_replace_k_without_a_pass_over_A(monkeypatch):
    A = rng.standard_normal((8, 20))
    base = co.L0Problem(A, rng.standard_normal(8), 6, l2=0.1, w_bar=rng.standard_normal(20),
                        groups=np.arange(20) // 4, group_k=2)
    norms = base.col_sq_norms
    import chita_opt.problem as problem_module

    def no_pass(*args, **kwargs):
        raise AssertionError("with_k validated A again")

    monkeypatch.setattr(problem_module, "check_design", no_pass)
    P = base.with_k(4)
    monkeypatch.undo()
    Q = base.replace(k=4)
    assert (P.k, P.l2, P.p) == (Q.k, Q.l2, Q.p) == (4, 0.1, 20)
    assert np.shares_memory(P.A, base.A) and P.group_caps is base.group_caps
    np.testing.assert_array_equal(P.col_sq_norms, norms)
    v = rng.standard_normal(20)
    assert P.objective(v) == Q.objective(v) and P.is_feasible(v) == Q.is_feasible(v)
    assert co.solve(P).objective == co.solve(Q).objective
    assert base.with_k(20).k == base.replace(k=20).k == 10  # clipped to what the caps allow
    with pytest.raises(ValueError, match=r"k: expected an integer in \[0, 20\], got 21"):
        base.with_k(21)
    with pytest.raises(TypeError, match=r"k: expected an integer in \[0, 20\], got float 3.0"):
        base.with_k(3.0)


def test_from_gradients():
    G = rng.standard_normal((6, 20)).astype(np.float32)
    w = rng.standard_normal(20)
    P = co.L0Problem.from_gradients(G, w, sparsity=0.75, damping=1e-2, first_order=True)
    assert P.k == 5 and P.l2 == pytest.approx(6 * 1e-2)
    np.testing.assert_allclose(P.y, G.astype(np.float64) @ w, rtol=1e-6)
    np.testing.assert_allclose(P.c, G.astype(np.float64).sum(0), rtol=1e-6)
    with pytest.raises(TypeError, match="exactly one of k or sparsity"):
        co.L0Problem.from_gradients(G, w)
    with pytest.raises(TypeError, match="exactly one of k or sparsity"):
        co.L0Problem.from_gradients(G, w, k=3, sparsity=0.5)
    with pytest.raises(ValueError, match=r"sparsity: expected a number in \[0, 1\), got 1.0"):
        co.L0Problem.from_gradients(G, w, sparsity=1.0)
    with pytest.raises(ValueError, match="w_bar: expected length 20"):
        co.L0Problem.from_gradients(G, w[:3], k=2)
    # the quadratic model: f(w) - f(w_bar) equals the Taylor model times n
    v = rng.standard_normal(20)
    Gd = G.astype(np.float64)
    model = 0.5 * np.sum((Gd @ (v - w)) ** 2) + 0.5 * 6e-2 * np.sum((v - w) ** 2)
    model += Gd.sum(0) @ (v - w)
    assert P.objective(v) - P.objective(w) == pytest.approx(model, rel=1e-6)
