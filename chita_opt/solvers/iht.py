"""Iterative hard thresholding with CHITA's step-size scheme.

One iteration from a k-sparse ``w`` with gradient ``g``:

1. the "safe" step ``1/L`` (``L`` = largest eigenvalue of ``A^T A + l2 I``)
   is always a candidate;
2. an exact line search along ``-g_S``, restricted to the current support S,
   gives ``tau_ls = ||g_S||^2 / (||A_S g_S||^2 + l2 ||g_S||^2) >= 1/L``;
3. a search over the steps at which the support changes: ``tau_ls * 2^j``
   (j = -1..2) and multiples of ``tau_c``, the step at which an outside
   coordinate overtakes the weakest support coordinate; the candidate
   ``H_k(w - tau g)`` with the lowest objective is kept. Each candidate costs
   O(p) plus the columns entering or leaving the support (see ``_Steps``);
4. when the support has not changed for ``refit_after`` iterations, ``w`` is
   replaced by the exact minimiser on that support (the backsolve), which
   turns IHT's linear convergence on a fixed support into one solve.

IHT with step ``1/L`` never increases f, so the best candidate never does
either. The method stops at a fixed point of the ``1/L`` step,
``w = H_k(w - grad f(w) / L)`` (to ``tol``), the stationarity notion of
Beck & Eldar (2013) -- where no candidate step lowers f either
(``run_iht(until_no_descent=True)``, what the ``iht`` method does: the first
safe fixed point is often the magnitude refit it starts from, while the longer
steps still lower f; the active-set stage of ``chita`` stops at the safe fixed
point, its swap search does the rest). One iteration costs one pass over ``A`` (``A^T r``), one
support-restricted product ``A_S g_S`` and O(p + n |S xor T|) per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from .._kernels.linalg import SupportColumns, grouped_matvec, support_matvec
from .._validation import check_int, check_random_state, check_real
from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._common import check_tol, project, resolve_budget, select_support
from ._ranking import magnitude_support
from ._refit import refit, refit_or_centre
from ._registry import register

__all__ = ["IHTResult", "lipschitz_constant", "run_iht", "solve_iht"]

_STEP_MULTIPLIERS = (0.5, 1.0, 2.0, 4.0)
_LANCZOS_RTOL = 1e-3
#: ``run_iht(until_no_descent=True)``: a candidate step counts as lowering f
#: when it does so by more than this times |f|.
_DESCENT_RTOL = 1e-9
_NOISE_RTOL = 1e-9  # ||g_S|| below this times ||g||: the support gradient is rounding noise
# Keep a contiguous copy of the support columns when k <= p / _GATHER_FRACTION.
_GATHER_FRACTION = 4


def lipschitz_constant(problem: L0Problem, random_state: int | None = 0) -> float:
    """An upper bound on the largest eigenvalue of ``A^T A + l2 I``, within 0.1% of it.

    Lanczos on the smaller Gram side to a relative residual of 1e-3: the
    top Ritz value ``theta`` is below the largest eigenvalue and, as the
    residual bounds the distance to it, ``theta (1 + 1e-3)`` is above it. That
    needs about 40 products with the Gram matrix where a 1e-6 residual needed
    60-70, and a step ``1/L`` 0.1% shorter than optimal costs nothing
    measurable. Small problems use the exact norm (plus a 1e-6 margin for
    rounding).
    """
    A = problem.A
    n, p = A.shape
    if min(n, p) <= 128:
        top = float(np.linalg.norm(np.asarray(A, dtype=np.float64), 2) ** 2)
        margin = 1e-6
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
        top = float(eigsh(op, k=1, which="LA", v0=v0, tol=_LANCZOS_RTOL,
                          return_eigenvectors=False)[0])
        margin = _LANCZOS_RTOL
    return top * (1.0 + margin) + problem.l2


@dataclass
class IHTResult:
    w: np.ndarray
    n_iter: int
    converged: bool
    lipschitz: float
    history: list[float] = field(default_factory=list)
    n_refits: int = 0


class _Steps:
    """Evaluates ``H_k(w - tau g)`` for several ``tau`` at the cost of the columns that change.

    With ``S`` the current support and ``A w`` known, the product
    ``A H_k(w - tau g) = A w - tau A_S g_S - A_{S\\T} v_{S\\T} + A_{T\\S} v_{T\\S}``
    (``v = w - tau g``, ``T`` its top-k) needs ``A_S g_S`` once per iteration
    and then only the columns entering or leaving: O(p + n |S xor T|) a step.
    """

    def __init__(self, problem: L0Problem, w: np.ndarray, S: np.ndarray, Aw: np.ndarray,
                 g: np.ndarray, AgS: np.ndarray) -> None:
        self.problem, self.w, self.S, self.Aw, self.g, self.AgS = problem, w, S, Aw, g, AgS

    def line_search_step(self) -> float | None:
        """Exact minimiser of f along ``-g_S`` (the support-preserving direction)."""
        gS = self.g[self.S]
        num = float(gS @ gS)
        # After a refit g_S is rounding noise, and the step "along" it would be
        # a random number (1 / the Rayleigh quotient of a random vector): use
        # what that estimates, deterministically -- 1 / the mean eigenvalue of
        # A_S^T A_S + l2 I.
        if num <= _NOISE_RTOL**2 * float(self.g @ self.g):
            P = self.problem
            trace = float(np.sum(P.col_sq_norms[self.S])) + P.l2 * self.S.size
            return self.S.size / trace if trace > 0.0 else None
        den = float(self.AgS @ self.AgS) + self.problem.l2 * num
        return num / den if num > 0.0 and den > 0.0 else None

    def evaluate(self, taus: list[float]) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
        """``(f, w_new, T, A w_new)`` for each step in ``taus`` (one batched product)."""
        P = self.problem
        points, cols, vals, groups = [], [], [], []
        for g_id, tau in enumerate(taus):
            v = self.w - tau * self.g
            T = select_support(P, np.abs(v))  # H_k, or the projection under group caps
            leaving = np.setdiff1d(self.S, T, assume_unique=True)
            entering = np.setdiff1d(T, self.S, assume_unique=True)
            cols += [leaving, entering]
            vals += [-v[leaving], v[entering]]
            groups.append(np.full(leaving.size + entering.size, g_id))
            points.append((tau, v, T))
        changes = grouped_matvec(P.A, np.concatenate(cols), np.concatenate(vals),
                                 np.concatenate(groups), len(taus))
        out = []
        for (tau, v, T), change in zip(points, changes, strict=True):
            Aw = self.Aw - tau * self.AgS + change
            w_new = np.zeros_like(v)
            w_new[T] = v[T]
            out.append((P.objective_on_support(T, v[T], P.y - Aw), w_new, T, Aw))
        return out


def _support_change_step(w: np.ndarray, g: np.ndarray, S: np.ndarray) -> float | None:
    """Smallest step at which an outside coordinate could overtake the weakest inside one.

    Exact when ``g_S = 0`` (after a refit), a useful scale otherwise.
    """
    outside = np.abs(g)
    outside[S] = 0.0
    top_out = float(outside.max(initial=0.0))
    if top_out <= 0.0 or S.size == 0:
        return None
    return float(np.min(np.abs(w[S]))) / top_out


def run_iht(
    problem: L0Problem,
    w: np.ndarray,
    *,
    lipschitz: float | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    refit_after: int = 2,
    random_state: int | None = 0,
    until_no_descent: bool = False,
) -> IHTResult:
    """IHT from ``w`` (projected to k non-zeros); see the module docstring.

    ``until_no_descent``: at a fixed point of the safe step, go on while some
    candidate step still lowers f by more than ``1e-9 |f|``.
    """
    P = problem
    k = P.k
    L = lipschitz if lipschitz is not None else lipschitz_constant(P, random_state)
    if L <= 0.0:  # A == 0 and l2 == 0: f is linear, any step is "safe"; use a unit step
        L = 1.0
    w = project(P, np.asarray(w, dtype=np.float64))
    S = select_support(P, np.abs(w))
    # A_S v from a contiguous copy of the support columns when the support is a
    # small part of a C-ordered A (strided rows would cost a full pass; the
    # columns of an F-ordered A, e.g. a working set, are contiguous already).
    wants_copy = P.A.flags.c_contiguous and not P.A.flags.f_contiguous
    columns = SupportColumns(P.A, S) if wants_copy and 0 < k <= P.p // _GATHER_FRACTION else None

    def support_product(v: np.ndarray) -> np.ndarray:
        return columns.matvec(v) if columns is not None else support_matvec(P.A, S, v[S])

    Aw = support_product(w)
    f = P.objective_from_residual(w, P.y - Aw)
    history = [f]
    stable = 0
    refitted: np.ndarray | None = None
    n_refits = 0
    for it in range(1, max_iter + 1):
        if it % 25 == 0:  # the incremental A w drifts slowly: recompute it now and then
            Aw = support_product(w)
        g = P.gradient_from_residual(w, P.y - Aw)
        steps = _Steps(P, w, S, Aw, g, support_product(g))
        taus = [1.0 / L]
        tau_ls = steps.line_search_step()
        if tau_ls is not None:
            taus += [tau_ls * m for m in _STEP_MULTIPLIERS]
        tau_c = _support_change_step(w, g, S)
        if tau_c is not None:
            taus += [tau_c * m for m in (1.01, 2.0, 4.0)]
        # only steps larger than the safe one can bring something new
        taus = [taus[0]] + [t for t in taus[1:] if t * L > 1.0 + 1e-12]
        candidates = steps.evaluate(taus)
        _, w_safe, T_safe, _ = candidates[0]
        scale = max(float(np.max(np.abs(w), initial=0.0)), float(np.max(np.abs(w_safe))), 1e-300)
        best = min(candidates, key=lambda cand: cand[0])
        if np.array_equal(T_safe, S) and np.max(np.abs(w_safe - w)) <= tol * scale and not (
                until_no_descent and best[0] < f - _DESCENT_RTOL * abs(f)):
            history.append(f)
            return IHTResult(w, it, True, L, history, n_refits)
        f_new, w_new, T_new, Aw_new = best
        stable = stable + 1 if np.array_equal(T_new, S) else 0
        if f_new <= f:
            w, f, S, Aw = w_new, f_new, T_new, Aw_new
            if columns is not None:
                columns.move_to(S)
        if stable >= refit_after and (refitted is None or not np.array_equal(refitted, S)):
            res = refit(P, S)
            if res.bounded:
                Aw_fit = support_product(res.w)
                f_fit = P.objective_from_residual(res.w, P.y - Aw_fit)
                if f_fit <= f:
                    w, f, Aw = res.w, f_fit, Aw_fit
            refitted = S
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
        return project(problem, w0)
    if support is None:
        support = magnitude_support(problem)
    return refit_or_centre(problem, support)


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
        IHT iterations.
    tol : float, default 1e-7
        Fixed-point tolerance, relative to ``max |w|``.
    refit_after : int, default 2
        Exact refit once the support is unchanged this many iterations.
    lipschitz : float, optional
        An upper bound on the largest eigenvalue of ``A^T A + l2 I``; computed
        by Lanczos (a few dozen passes over ``A``) if omitted.
    random_state : int or None, default 0
        Seed of the Lanczos start vector.

    ``Solution.info["step_size"]`` is ``1/L``: at convergence
    ``w = H_k(w - step_size * grad f(w))``, and none of the candidate steps
    (line search, support-change steps) lowers f.
    """
    max_iter = resolve_budget(max_iter, "max_iter", 500)
    tol = check_tol(tol)
    refit_after = int(check_int(refit_after, "refit_after", minimum=1))  # type: ignore[arg-type]
    lipschitz = check_real(lipschitz, "lipschitz", minimum=0.0, strict=True, allow_none=True)
    random_state = check_random_state(random_state)

    def body(start: Start) -> Outcome:
        # IHT's step is not invariant to column scales, so only the overall
        # scale is changed (its fixed point stays one in the user's units)
        L = None if lipschitz is None else start.scaling.lipschitz_to_scaled(lipschitz)
        w_start = initial_point(start.problem, start.w0, start.support)
        res = run_iht(start.problem, w_start, lipschitz=L, max_iter=max_iter, tol=tol,
                      refit_after=refit_after, random_state=random_state,
                      until_no_descent=True)
        with np.errstate(over="ignore", under="ignore"):  # may not be a float64 at all
            L_user = float(np.float64(res.lipschitz) * start.scaling.alpha * start.scaling.alpha)
        if res.converged:
            status = Status.CONVERGED
            message = f"fixed point of the 1/L step, no candidate step lowers f, after "\
                      f"{res.n_iter} iterations ({res.n_refits} refits)"
        else:
            status, message = Status.MAX_ITER, f"no fixed point within max_iter={max_iter}"
        return Outcome(res.w, status, message, res.n_iter, res.history,
                       {"step_size": float(np.float64(1.0) / L_user), "lipschitz": L_user})

    return run_method(problem, "iht", body, w0=w0, support=support)
