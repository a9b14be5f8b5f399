"""Exact solution as a mixed-integer second-order-cone program (CVXPY + SCIP).

Formulation (derivations and the conditions of the certificate are in
``docs/exact_solving.md``)::

    minimize    1/2 s + (d/2) sum_i t_i - (l2 w_bar - c + d0)^T w + K0
    subject to  s >= ||q - R w||^2                       (least squares, one cone)
                w_i^2 <= t_i z_i                          (perspective, when d > 0)
                -M z_i <= w_i <= M z_i,  z_i in {0, 1},  sum_i z_i <= k

where ``d = l2 + delta`` is the diagonal moved into the perspective term
(``delta`` is a fraction of the smallest eigenvalue of ``A^T A`` when ``n > p``,
so the perspective also tightens the plain best-subset relaxation), ``R, q``
are a factor of ``A^T A - delta I`` and the matching right-hand side, and
``K0`` collects the constants so that the objective equals f exactly.

The big-M is

* derived (valid, certificate holds) when a restricted-curvature bound
  ``eta > 0`` is known: ``l2 + lambda_min(A^T A)`` or a Gershgorin bound on the
  ``k x k`` principal submatrices; or, for ``l2 = 0`` and few supports, by
  enumerating the smallest positive eigenvalue of every ``A_S^T A_S``;
* otherwise taken from a heuristic solution with a safety factor, enlarged
  while it is active, and the result is reported as not certified.

The jobs live in their own modules: :mod:`._big_m` (the bound and its
proof), :mod:`._formulation` (the CVXPY model), :mod:`._backend` (solvers,
their capabilities and status map), :mod:`._certificate` (the verdict) and
:mod:`._scaling` (ill-scaled data). This module checks the arguments and
runs the solve.

cvxpy and pyscipopt are optional (``pip install chita_opt[mip]``) and imported
only when a problem is solved.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import check_vector, describe
from ..problem import L0Problem
from ..result import Solution, Status
from ..solvers import register
from ..solvers import solve as _solve
from ..solvers._common import Stopwatch, project
from ..solvers._refit import refit
from ._backend import SOLVERS, Backend, Outcome, check_solver, import_backend, run_model
from ._big_m import BigM, derive_big_m
from ._certificate import Incumbent, Run, finish, trivial, unbounded
from ._formulation import LeastSquaresFactor, build_model
from ._scaling import rescale
from ._spectral import Spectral

__all__ = ["SOLVERS", "BigM", "derive_big_m", "solve_mip"]

logger = logging.getLogger(__name__)

#: Heuristic big-M: growth factor and number of re-solves while the bound is active.
_GROWTH = 10.0
_MAX_ROUNDS = 4
#: SCIP stops at this absolute gap, relative to the incumbent's |f|.
_ABS_GAP = 1e-7
#: A |w_i| within this relative distance of M counts as "at the bound".
_ACTIVE_RTOL = 1e-6


# ------------------------------------------------------------------ public API
def solve_mip(
    A: Any,
    y: Any = None,
    k: int | None = None,
    *,
    l2: float = 0.0,
    w_bar: Any = None,
    c: Any = None,
    time_limit: float | None = None,
    solver: str = "SCIP",
    warm_start: Any = None,
    verbose: bool = False,
) -> Solution:
    """Solve the L0-constrained problem exactly as a mixed-integer program.

    Parameters
    ----------
    A, y, k, l2, w_bar, c
        The problem data, or an :class:`~chita_opt.L0Problem` as ``A`` (as in
        :func:`chita_opt.solve`).
    time_limit : float, optional
        Wall-clock seconds for the MIP solver (all re-solves together). When it
        runs out the best solution found is returned with status "time_limit"
        and the solver's bound, with a ``ConvergenceWarning``; never an
        exception. The clock starts after cvxpy and the solver are imported.
    solver : {"SCIP", "ECOS_BB"}
        MIP solver, always passed to CVXPY explicitly. "SCIP" (through
        ``pyscipopt``) reports a dual bound; "ECOS_BB" (needs ``ecos``) does not,
        so its results are never reported as certified.
    warm_start : Solution or array_like (p,), optional
        A known good solution. CVXPY's SCIP interface does not pass initial
        values to SCIP, so it is used to tighten the big-M derivation and as
        the incumbent returned if the solver finds nothing better.
    verbose : bool
        Show the solver's log.

    Returns
    -------
    Solution
        ``status`` is "optimal" (certified: ``lower_bound`` and ``gap`` are
        valid for the original problem), "time_limit" (best feasible point and
        bound), "converged" (the MIP was solved but the big-M could not be
        proven valid: ``info["certified"]`` is False), "unbounded" or "error".
        ``info`` holds ``big_m``, ``big_m_source``, ``certified``,
        ``perspective``, ``shift``, ``solver_status``, ``nodes``, ``rounds``,
        ``tolerance_slack`` (how far SCIP's bound may sit below the optimum
        through its feasibility tolerance; a gap within it still certifies).

        Ill-scaled data is solved in unit scale and mapped back
        (``info["rescaled"]``; see ``docs/exact_solving.md``).

    Raises
    ------
    ImportError
        When cvxpy or the chosen solver is not installed.
    ValueError
        When the data's scales do not fit in float64 even after rescaling.
    """
    return _solve(
        A,
        y,
        k,
        l2=l2,
        w_bar=w_bar,
        c=c,
        method="mip",
        time_limit=time_limit,
        solver=solver,
        warm_start=warm_start,
        verbose=verbose,
    )


@register("mip")
def solve_mip_problem(
    problem: L0Problem,
    *,
    time_limit: float | None = None,
    solver: str = "SCIP",
    warm_start: Any = None,
    verbose: bool = False,
) -> Solution:
    """Registered solver behind :func:`solve_mip` (``solve(..., method="mip")``)."""
    total = Stopwatch()
    time_limit = _check_time_limit(time_limit)
    backend = check_solver(solver)
    if not isinstance(verbose, (bool, np.bool_)):
        raise TypeError(f"verbose: expected a bool, got {describe(verbose)}")
    w_warm = _check_warm_start(warm_start, problem)
    # Imported before the time-limit clock starts: the first import of cvxpy and
    # pyscipopt takes seconds that are no part of the solve (Solution.time keeps them).
    cp = import_backend(backend)
    budget = Stopwatch()
    scaling = rescale(problem)
    if scaling is None:
        return _solve_scaled(cp, problem, backend, time_limit, w_warm, verbose, budget, total)
    warm = None if w_warm is None else scaling.to_scaled(w_warm)
    inner = _solve_scaled(cp, scaling.problem, backend, time_limit, warm, verbose, budget, total)
    return scaling.unscale(problem, inner, total)


def _solve_scaled(
    cp: Any,
    problem: L0Problem,
    backend: Backend,
    time_limit: float | None,
    w_warm: np.ndarray | None,
    verbose: bool,
    budget: Stopwatch,
    total: Stopwatch,
) -> Solution:
    """The MIP on (well-scaled) data: incumbents, big-M, solves while M is active, verdict."""
    incumbents = _incumbents(problem, w_warm)
    for inc in incumbents:
        if not inc.bounded:
            return unbounded(problem, inc.w, inc.support, total)
    if problem.k == 0 or problem.k == problem.p:
        return trivial(problem, total)
    w_inc = min((inc.w for inc in incumbents), key=problem.objective)
    upper = problem.objective(w_inc)

    spec = Spectral.of(problem)
    factor = LeastSquaresFactor.of(problem, spec)
    big_m = derive_big_m(problem, upper=upper, spectral=spec, heuristic=w_inc)
    if big_m.unbounded_support is not None:
        fit = refit(problem, big_m.unbounded_support)
        return unbounded(problem, fit.w, big_m.unbounded_support, total)

    def solve_once(incumbent: np.ndarray, M: float, remaining: float | None) -> Outcome:
        model = build_model(cp, problem, factor, incumbent, M)
        return run_model(
            backend, model, time_limit=remaining, verbose=verbose,
            absgap=_absgap(problem, incumbent),
        )

    M = big_m.value
    rounds = 0
    outcome: Outcome | None = None
    while True:
        rounds += 1
        remaining = None if time_limit is None else max(time_limit - budget.elapsed, 0.01)
        outcome = solve_once(w_inc, M, remaining)
        if outcome.w is None or outcome.status is not Status.OPTIMAL or big_m.valid:
            break
        fit = refit(problem, outcome.support)
        if not fit.bounded:
            return unbounded(problem, fit.w, outcome.support, total)
        active = np.max(np.abs(outcome.w)) >= (1 - _ACTIVE_RTOL) * M or np.max(
            np.abs(fit.w)
        ) > M * (1 + _ACTIVE_RTOL)
        if not active or rounds >= _MAX_ROUNDS:
            break
        if time_limit is not None and budget.elapsed >= time_limit:
            break
        logger.info("mip: big-M %.3g is active; re-solving with %.3g", M, M * _GROWTH)
        M *= _GROWTH
    assert outcome is not None
    outcome = _rescaled_resolve(
        problem, factor, outcome, solve_once, time_limit, budget, incumbents, M
    )
    return finish(problem, outcome, Run(big_m, M, rounds, backend), incumbents, total)


def _absgap(problem: L0Problem, incumbent: np.ndarray) -> float:
    # Stop at an absolute gap of 1e-7 of the objective's scale, far below the
    # 1e-4 that is certified: with SCIP's default (0) it can keep branching on
    # the continuous cone variables (tens of thousands of nodes on p <= 10
    # problems) to close a gap at its tolerance level.
    f_inc = problem.objective(incumbent)
    f_zero = problem.objective(np.zeros(problem.p))
    return _ABS_GAP * max(abs(f_inc), 1e-6 * abs(f_zero), 1e-300)


def _rescaled_resolve(
    problem: L0Problem,
    factor: LeastSquaresFactor,
    outcome: Outcome,
    solve_once: Any,
    time_limit: float | None,
    budget: Stopwatch,
    incumbents: list[Incumbent],
    M: float,
) -> Outcome:
    """Solve once more when the cone was scaled to a much worse incumbent.

    The least-squares cone is scaled to the incumbent's residual. When the
    optimum fits far better (a near-perfect fit found from a poor heuristic),
    SCIP's absolute tolerance is again large relative to the optimum's
    residual; a second solve scaled to the optimum restores the accuracy of
    the bound. Both bounds are valid, so the larger is kept.
    """
    if outcome.status is not Status.OPTIMAL or outcome.w is None or outcome.lower_bound is None:
        return outcome
    fit = refit(problem, outcome.support)
    if not fit.bounded or factor.residual(fit.w) >= 0.01 * outcome.scale:
        return outcome
    remaining = None
    if time_limit is not None:
        remaining = time_limit - budget.elapsed
        if remaining <= 0:
            return outcome
    incumbents.append(Incumbent(fit.w, True, outcome.support))
    again = solve_once(fit.w, M, remaining)
    if again.status is not Status.OPTIMAL or again.lower_bound is None:
        return outcome
    logger.info("mip: re-solved with the cone scaled to the optimum's residual")
    return replace(again, lower_bound=max(again.lower_bound, outcome.lower_bound))


# -------------------------------------------------------------------- checks
def _check_time_limit(time_limit: Any) -> float | None:
    if time_limit is None:
        return None
    if isinstance(time_limit, (bool, np.bool_)) or not isinstance(
        time_limit, (numbers.Real, np.number)
    ):
        raise TypeError(
            f"time_limit: expected a positive number of seconds or None, got {describe(time_limit)}"
        )
    value = float(time_limit)
    if not (value > 0) or math.isnan(value):
        raise ValueError(f"time_limit: expected a positive number of seconds, got {value!r}")
    return None if math.isinf(value) else value


def _check_warm_start(warm_start: Any, problem: L0Problem) -> np.ndarray | None:
    if warm_start is None:
        return None
    if isinstance(warm_start, Solution):
        warm_start = np.asarray(warm_start.w)
    w = check_vector(warm_start, "warm_start", problem.p)
    if not problem.is_feasible(w):  # an infeasible warm start would give a wrong bound
        w = project(problem, w)
    return w


# ---------------------------------------------------------------- incumbents
def _incumbents(problem: L0Problem, w_warm: np.ndarray | None) -> list[Incumbent]:
    """Zero, the backsolve heuristic and the warm start (as given and refit on its support)."""
    from ..solvers.backsolve import solve_backsolve

    out = [Incumbent(np.zeros(problem.p), True, np.empty(0, dtype=np.int64))]
    if problem.k == 0:
        return out
    heur = solve_backsolve(problem)
    out.append(Incumbent(np.asarray(heur.w), heur.status != "unbounded", np.asarray(heur.support)))
    if w_warm is not None:
        support = np.flatnonzero(w_warm).astype(np.int64)
        fit = refit(problem, support)
        out.append(Incumbent(w_warm, True, support))
        out.append(Incumbent(fit.w, fit.bounded, support))
    return out
