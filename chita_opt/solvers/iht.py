"""Iterative hard thresholding with CHITA's step-size scheme.

One iteration from a k-sparse ``w`` with gradient ``g``:

1. the "safe" step ``1/L`` (``L`` = largest eigenvalue of ``A^T A + l2 I``)
   proposes ``T = supp(H_k(w - g/L))``;
2. an exact line search along ``-g`` restricted to ``T`` gives
   ``tau_ls = ||g_T||^2 / (||A_T g_T||^2 + l2 ||g_T||^2) >= 1/L``;
3. steps ``tau_ls * 2^j`` (j = -1..2) and ``1/L`` are tried -- larger steps are
   where the support changes -- and the candidate ``H_k(w - tau g)`` with the
   lowest objective is kept (each costs O(p + n k): a selection and a
   support-restricted product);
4. when the support has not changed for ``refit_after`` iterations, ``w`` is
   replaced by the exact minimiser on that support (the backsolve), which
   turns IHT's linear convergence on a fixed support into one solve.

IHT with step ``1/L`` never increases f, so the best candidate never does
either. The method stops at a fixed point of the ``1/L`` step,
``w = H_k(w - grad f(w) / L)`` (to ``tol``), the stationarity notion of
Beck & Eldar (2013). One iteration costs one pass over ``A`` (``A^T r``) plus
O(p + n k) per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from .._kernels.linalg import support_matvec
from ..problem import L0Problem
from ..result import Solution
from . import register
from ._common import (
    Stopwatch,
    check_tol,
    hard_threshold,
    make_solution,
    resolve_max_iter,
    start_point,
    top_k,
)
from ._refit import refit
from .magnitude import magnitude_support

__all__ = ["IHTResult", "lipschitz_constant", "run_iht", "solve_iht"]

_STEP_MULTIPLIERS = (0.5, 1.0, 2.0, 4.0)


def lipschitz_constant(problem: L0Problem, random_state: int | None = 0) -> float:
    """Largest eigenvalue of ``A^T A + l2 I`` (Lanczos on the smaller Gram side).

    A relative safety margin of 1e-6 is added so the step ``1/L`` is safe
    even with the float32 rounding of the passes over ``A``.
    """
    A = problem.A
    n, p = A.shape
    if min(n, p) <= 128:
        top = float(np.linalg.norm(np.asarray(A, dtype=np.float64), 2) ** 2)
    else:
        dim = min(n, p)
        dt = A.dtype
        if n <= p:

            def matvec(v: np.ndarray) -> np.ndarray:
                return (A @ (A.T @ v.astype(dt))).astype(np.float64)

        else:

            def matvec(v: np.ndarray) -> np.ndarray:
                return (A.T @ (A @ v.astype(dt))).astype(np.float64)

        op = LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
        v0 = np.random.default_rng(random_state).standard_normal(dim)
        top = float(eigsh(op, k=1, which="LA", v0=v0, tol=1e-6, return_eigenvectors=False)[0])
    return top * (1.0 + 1e-6) + problem.l2


@dataclass
class IHTResult:
    w: np.ndarray
    n_iter: int
    converged: bool
    lipschitz: float
    history: list[float] = field(default_factory=list)
    n_refits: int = 0


def _evaluate(problem: L0Problem, v: np.ndarray, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Objective, point and residual of ``H_k(v)`` (O(p + n k))."""
    support = top_k(np.abs(v), k)
    w = np.zeros_like(v)
    w[support] = v[support]
    r = problem.y - support_matvec(problem.A, support, w[support])
    return problem.objective_from_residual(w, r), w, r


def run_iht(
    problem: L0Problem,
    w: np.ndarray,
    *,
    lipschitz: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    refit_after: int = 2,
    random_state: int | None = 0,
) -> IHTResult:
    """IHT from ``w`` (projected to k non-zeros); see the module docstring."""
    k = problem.k
    L = lipschitz if lipschitz is not None else lipschitz_constant(problem, random_state)
    if L <= 0.0:  # A == 0 and l2 == 0: f is linear, any step is "safe"; use a unit step
        L = 1.0
    w = hard_threshold(np.asarray(w, dtype=np.float64), k)
    support = np.flatnonzero(w)
    r = problem.y - support_matvec(problem.A, support, w[support])
    f = problem.objective_from_residual(w, r)
    history = [f]
    stable = 0
    refitted_support: np.ndarray | None = None
    n_refits = 0
    for it in range(1, max_iter + 1):
        g = problem.gradient_from_residual(w, r)
        v_safe = w - g / L
        f_safe, w_safe, r_safe = _evaluate(problem, v_safe, k)
        scale = max(float(np.max(np.abs(w))), float(np.max(np.abs(w_safe))), 1e-300)
        if np.array_equal(np.flatnonzero(w_safe), support) and (
            np.max(np.abs(w_safe - w)) <= tol * scale
        ):
            history.append(f)
            return IHTResult(w, it, True, L, history, n_refits)

        # exact line search along -g restricted to the support the safe step picks
        T = np.flatnonzero(w_safe)
        gT = g[T]
        AgT = support_matvec(problem.A, T, gT)
        num = float(gT @ gT)
        den = float(AgT @ AgT) + problem.l2 * num
        best = (f_safe, w_safe, r_safe)
        if den > 0.0 and num > 0.0:
            tau_ls = num / den
            for mult in _STEP_MULTIPLIERS:
                tau = tau_ls * mult
                if tau * L <= 1.0 + 1e-12:  # no larger than the safe step: nothing new
                    continue
                cand = _evaluate(problem, w - tau * g, k)
                if cand[0] < best[0]:
                    best = cand
        f_new, w_new, r_new = best
        new_support = np.flatnonzero(w_new)
        stable = stable + 1 if np.array_equal(new_support, support) else 0
        if f_new <= f:
            w, r, f, support = w_new, r_new, f_new, new_support
        if stable >= refit_after and (
            refitted_support is None or not np.array_equal(refitted_support, support)
        ):
            res = refit(problem, support)
            if res.bounded:
                r_fit = problem.y - support_matvec(problem.A, support, res.w[support])
                f_fit = problem.objective_from_residual(res.w, r_fit)
                if f_fit <= f:
                    w, r, f = res.w, r_fit, f_fit
                    support = np.flatnonzero(w)
            refitted_support = support
            n_refits += 1
            stable = 0
        history.append(f)
    return IHTResult(w, max_iter, False, L, history, n_refits)


def initial_point(problem: L0Problem, w0: np.ndarray | None, support: np.ndarray | None):
    """Default start of the iterative methods: the exact refit on a good support.

    ``w0`` if given; else the refit on ``support`` if given; else the refit on
    the magnitude support of ``w_bar`` (or the marginal-gain support when
    ``w_bar`` is zero).
    """
    if w0 is not None:
        return hard_threshold(w0, problem.k)
    if support is None:
        support = magnitude_support(problem)
    res = refit(problem, support)
    if res.bounded:
        return res.w
    w = np.zeros(problem.p)
    w[support] = problem.w_bar[support]
    return w


@register("iht")
def solve_iht(
    problem: L0Problem,
    *,
    w0: Any = None,
    support: Any = None,
    max_iter: int | None = None,
    tol: float = 1e-7,
    refit_after: int = 2,
    lipschitz: float | None = None,
    random_state: int | None = 0,
) -> Solution:
    """IHT with CHITA's step-size scheme on the full problem.

    Parameters
    ----------
    w0, support : warm start (a point, or a support to refit on)
    max_iter : int, default 500
    tol : float
        Fixed-point tolerance, relative to ``max |w|``.
    refit_after : int
        Exact refit once the support is unchanged this many iterations.
    lipschitz : float, optional
        ``L``; computed by Lanczos (a few dozen passes over ``A``) if omitted.
    random_state : int
        Seed of the Lanczos start vector.

    ``Solution.info["step_size"]`` is ``1/L``: at convergence
    ``w = H_k(w - step_size * grad f(w))``.
    """
    clock = Stopwatch()
    w0, support = start_point(problem, w0, support)
    max_iter = resolve_max_iter(max_iter, 500)
    tol = check_tol(tol)
    if problem.k == 0:
        return make_solution(problem, np.zeros(problem.p), method="iht", status="converged",
                             message="k = 0: the only feasible point is w = 0", stopwatch=clock)
    w_start = initial_point(problem, w0, support)
    res = run_iht(problem, w_start, lipschitz=lipschitz, max_iter=max_iter, tol=tol,
                  refit_after=refit_after, random_state=random_state)
    status = "converged" if res.converged else "max_iter"
    message = (
        f"fixed point of the 1/L step after {res.n_iter} iterations ({res.n_refits} refits)"
        if res.converged
        else f"no fixed point within max_iter={max_iter}"
    )
    return make_solution(problem, res.w, method="iht", status=status, message=message,
                         n_iter=res.n_iter, stopwatch=clock, history=res.history,
                         step_size=1.0 / res.lipschitz, lipschitz=res.lipschitz)
