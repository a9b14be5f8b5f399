"""Active-set IHT: IHT on a working set of about 1.5 k coordinates.

Each round gathers the working-set columns once (a Fortran-ordered float64
copy of ``|W|`` columns, never all of ``A``), runs IHT with CHITA's step
scheme on that small problem -- refitting exactly once the support has stayed
the same for :data:`INNER_REFIT_AFTER` iterations, and going on past a fixed
point of its safe step while a longer step still lowers f -- and polishes with
cyclic coordinate descent on the support (residual maintained, O(n) per
coordinate; it finishes the values where IHT stopped at its cap), then
takes one full gradient (one pass over ``A``) to see which outside
coordinates a full-dimensional IHT step would bring into the support. Those
join the working set and the next round starts; when none would, the
working-set solution is a fixed point of the full step and the method stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels.cd import cd_support_sweeps
from .._validation import check_int, check_random_state, check_real
from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._common import check_tol, renamed, resolve_budget, select_support, top_k
from ._registry import register
from ._workset import add_gain, restrict
from .iht import initial_point, lipschitz_constant, run_iht

__all__ = ["INNER_REFIT_AFTER", "ActiveSetResult", "run_active_set", "solve_active_set"]

#: The working-set IHT refits exactly on its support once the support has stayed
#: the same for this many iterations (plain IHT: after 2), then goes on from the
#: refit. Until 2026-12-08 it never refitted: a support that settled at once left
#: IHT taking gradient steps on it up to its 200-iteration cap -- slow along the
#: directions only the ridge curves when k > n -- before the coordinate descent
#: polish did the same job; and it stopped at the first fixed point of its safe
#: step while its longer steps still lowered f. Refits with ``until_no_descent``
#: (the ``active_set`` method) and refits alone (``chita``'s first stage) are
#: measured in docs/algorithms.md, "Refits on the working set".
INNER_REFIT_AFTER = 10


@dataclass
class ActiveSetResult:
    w: np.ndarray
    n_rounds: int
    n_inner: int
    converged: bool
    history: list[float]
    step_size: float


def _cd_polish(sub: L0Problem, w: np.ndarray, sweeps: int, tol: float) -> np.ndarray:
    support = np.flatnonzero(w).astype(np.int64)
    if support.size == 0:
        return w
    w = w.copy()
    r = sub.residual(w)  # not sub.A @ w: that would copy a float32 A_W to float64
    cd_support_sweeps(sub.A, support, w, r, sub.l2, np.asarray(sub.w_bar), np.asarray(sub.c),
                      np.asarray(sub.col_sq_norms), sweeps, tol)
    return w


def run_active_set(
    problem: L0Problem,
    w: np.ndarray,
    *,
    ws_factor: float = 1.5,
    max_rounds: int = 30,
    inner_max_iter: int = 200,
    cd_sweeps: int = 50,
    tol: float = 1e-7,
    random_state: int | None = 0,
    refit_after: int | None = None,
    until_no_descent: bool = True,
) -> ActiveSetResult:
    """Active-set IHT from ``w`` (k-sparse); see the module docstring.

    ``refit_after`` (default :data:`INNER_REFIT_AFTER`): the working-set IHT refits
    exactly on its support once the support has stayed the same for this many
    iterations. ``until_no_descent``: at a fixed point of its safe step it goes on
    while one of its longer steps still lowers f (``run_iht(until_no_descent=True)``,
    as the ``iht`` method does); ``chita`` turns this off, as the swap search that
    follows does that exploring (docs/algorithms.md).
    """
    if refit_after is None:
        refit_after = INNER_REFIT_AFTER
    P = problem
    k = P.k
    size = min(P.p, max(int(np.ceil(ws_factor * k)), k + 1))
    w = np.asarray(w, dtype=np.float64).copy()
    r = P.residual(w)
    f = P.objective_from_residual(w, r)
    g = P.gradient_from_residual(w, r)
    support = np.flatnonzero(w)
    gain = add_gain(P, g)
    gain[support] = np.inf
    W = np.sort(top_k(gain, size))
    history = [f]
    n_inner = 0
    step = 1.0
    converged = False
    rounds = 0
    for _ in range(max_rounds):
        rounds += 1
        if W.size == P.p:
            # the working set is everything (k close to p): plain IHT with exact
            # refits on the problem itself, never a copy of all of A
            L_W = lipschitz_constant(P, random_state)
            step = 1.0 / L_W if L_W > 0 else 1.0
            res = run_iht(P, w, lipschitz=L_W, max_iter=inner_max_iter, tol=tol,
                          until_no_descent=until_no_descent)
            n_inner += res.n_iter
            w_sub = res.w
        else:
            sub = restrict(P, W)
            L_W = lipschitz_constant(sub, random_state)
            step = 1.0 / L_W if L_W > 0 else 1.0
            res = run_iht(sub, w[W], lipschitz=L_W, max_iter=inner_max_iter, tol=tol,
                          refit_after=refit_after, until_no_descent=until_no_descent)
            n_inner += res.n_iter
            w_sub = _cd_polish(sub, res.w, cd_sweeps, tol)
            if sub.objective(w_sub) > sub.objective(res.w):
                w_sub = res.w
        w_new = np.zeros(P.p)
        w_new[W] = w_sub
        r_new = P.residual(w_new)
        f_new = P.objective_from_residual(w_new, r_new)
        if f_new <= f:
            w, r, f = w_new, r_new, f_new
        history.append(f)
        g = P.gradient_from_residual(w, r)
        # coordinates a full-dimensional step would bring in
        v = w - step * g
        proposed = select_support(P, np.abs(v))  # top-k, or the projection under caps
        entering = np.setdiff1d(proposed, W, assume_unique=True)
        if entering.size == 0:
            converged = True
            break
        # new working set: current support, the entering coordinates, then the
        # best remaining ones by one-coordinate gain, up to ``size`` (or more
        # if that many enter at once)
        support = np.flatnonzero(w)
        keep = np.union1d(support, entering)
        gain = add_gain(P, g)
        gain[keep] = -np.inf
        fill = max(size - keep.size, 0)
        W = np.union1d(keep, top_k(gain, fill)) if fill else keep
    return ActiveSetResult(w, rounds, n_inner, converged, history, step)


@register("active_set")
def solve_active_set(
    problem: L0Problem,
    *,
    w0: Any = None,
    support: Any = None,
    max_rounds: int | None = None,
    tol: float = 1e-7,
    ws_factor: float = 1.5,
    inner_max_iter: int = 200,
    cd_sweeps: int = 50,
    random_state: int | None = 0,
    max_iter: int | None = None,
) -> Solution:
    """IHT on a working set of about ``ws_factor * k`` coordinates, with CD on the support.

    Parameters
    ----------
    w0, support : warm start (a point, or a support to refit on)
    max_rounds : int, default 30
        Working-set rounds; each costs about two passes over ``A`` plus work on
        ``n x |W|``. (``max_iter`` is its deprecated name.)
    tol : float, default 1e-7
        Relative tolerance of the inner IHT and of coordinate descent.
    ws_factor : float, default 1.5
        Working-set size as a multiple of ``k`` (>= 1).
    inner_max_iter : int, default 200
        IHT iterations per round.
    cd_sweeps : int, default 50
        Coordinate-descent sweeps over the support per round.
    random_state : int or None, default 0
        Seed of the Lanczos start vector.

    With ``l2 = 0`` the columns are normalised first (on a copy of ``A``), so
    the result does not depend on the columns' scales.
    """
    value, name = renamed(max_iter, max_rounds, "max_iter", "max_rounds", "active_set")
    max_rounds = resolve_budget(value, name, 30)
    tol = check_tol(tol)
    ws_factor = float(check_real(ws_factor, "ws_factor", minimum=1.0))  # type: ignore[arg-type]
    inner_max_iter = int(check_int(inner_max_iter, "inner_max_iter", minimum=1))  # type: ignore[arg-type]
    cd_sweeps = int(check_int(cd_sweeps, "cd_sweeps", minimum=1))  # type: ignore[arg-type]
    random_state = check_random_state(random_state)

    def body(start: Start) -> Outcome:
        w_start = initial_point(start.problem, start.w0, start.support)
        res = run_active_set(start.problem, w_start, ws_factor=ws_factor, max_rounds=max_rounds,
                             inner_max_iter=inner_max_iter, cd_sweeps=cd_sweeps, tol=tol,
                             random_state=random_state)
        if res.converged:
            status = Status.CONVERGED
            message = f"no coordinate outside the working set would enter after "\
                      f"{res.n_rounds} rounds"
        else:
            status = Status.MAX_ITER
            message = f"working set still growing after max_rounds={max_rounds} rounds"
        info: dict[str, Any] = {"inner_iterations": res.n_inner}
        if start.scaling.uniform:  # a step in the user's units exists only then
            info["step_size"] = res.step_size / start.scaling.alpha / start.scaling.alpha
        return Outcome(res.w, status, message, res.n_rounds, res.history, info)

    return run_method(problem, "active_set", body, w0=w0, support=support, scale_columns=True)
