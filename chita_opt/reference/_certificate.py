"""Judging a MIP outcome: the returned point, the bound, the gap and whether it is certified.

"optimal" is a promise: it is given only when the solver proved the MIP
optimal, the big-M is valid, the backend reports a dual bound, and the exact
refit of the returned point agrees with that bound. Everything else is
"converged", "time_limit" or "error", with the reason in the message.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..problem import L0Problem
from ..result import ConvergenceWarning, Solution, Status
from ..solvers._common import Stopwatch, make_solution, select_support
from ..solvers._refit import refit
from ._backend import Backend, Outcome
from ._big_m import BigM

__all__ = ["Incumbent", "finish", "trivial", "unbounded"]

#: Largest relative gap (after the exact refit) reported as certified optimal.
_CERTIFY_GAP = 1e-4


@dataclass(frozen=True)
class Incumbent:
    """A feasible point known before (or besides) the MIP, and its support.

    ``bounded`` is False when f is unbounded below on ``support`` (then ``w``
    is only the minimum-norm stationary point there).
    """

    w: np.ndarray
    bounded: bool
    support: np.ndarray


@dataclass(frozen=True)
class Run:
    """How the MIP was run: the big-M, its final value, the rounds and the backend."""

    big_m: BigM
    M: float
    rounds: int
    backend: Backend


def finish(
    problem: L0Problem,
    outcome: Outcome,
    run: Run,
    incumbents: list[Incumbent],
    clock: Stopwatch,
) -> Solution:
    """The :class:`Solution` of a MIP run (a time limit warns with ``ConvergenceWarning``)."""
    big_m, M, backend = run.big_m, run.M, run.backend
    name = backend.name
    w_best = best_point(problem, outcome, incumbents)
    f_best = problem.objective(w_best)
    bound_valid = (
        big_m.valid and backend.reports_dual_bound and outcome.lower_bound is not None
        and np.isfinite(f_best)
    )
    lower = gap = None
    if bound_valid:
        assert outcome.lower_bound is not None
        lower, gap = bound_and_gap(problem, outcome.lower_bound, f_best)
    # Certified: the solver proved the MIP optimal, M is valid, and the exact
    # refit of the returned point agrees with the bound -- to 1e-4 relative, or
    # to within what the solver's feasibility tolerance lets the bound slip (an
    # objective near zero, from a linear term cancelling the quadratic part,
    # cannot be bounded more tightly than that). The test catches the
    # solver's tolerances (w_i leaking through z_i ~ 1e-6 when M is large).
    slack = tolerance_slack(problem, outcome, backend)
    certified = (
        outcome.status is Status.OPTIMAL
        and bound_valid
        and gap is not None
        and lower is not None
        and (gap <= _CERTIFY_GAP or f_best - lower <= slack)
    )
    info = {
        "certified": bool(certified),
        "big_m": float(M),
        "big_m_source": big_m.source,
        "eta": float(big_m.eta),
        "perspective": bool(outcome.perspective),
        "shift": float(outcome.shift),
        "solver": name,
        "solver_status": outcome.solver_status,
        "nodes": outcome.nodes,
        "solver_time": outcome.solver_time,
        "rounds": run.rounds,
        "tolerance_slack": float(slack),
    }
    if outcome.lower_bound is not None and not bound_valid:
        info["box_lower_bound"] = float(min(outcome.lower_bound, f_best))
    status, message = _verdict(outcome, certified, bound_valid, gap, run)
    if status is Status.TIME_LIMIT:
        warnings.warn(
            f"mip: {message}; the best point found is returned (gap "
            f"{'unknown' if gap is None else f'{gap:.2e}'})",
            ConvergenceWarning,
            stacklevel=5,
        )
    sol = make_solution(
        problem, w_best, method="mip", status=status, message=message,
        n_iter=outcome.nodes, stopwatch=clock, **info,
    )
    if bound_valid:
        sol = replace(sol, lower_bound=lower, gap=gap)
    return sol


def _verdict(
    outcome: Outcome, certified: bool, bound_valid: bool, gap: float | None, run: Run
) -> tuple[Status, str]:
    name, M, source = run.backend.name, run.M, run.big_m.source
    if certified:
        return Status.OPTIMAL, f"certified optimal by {name} (big-M from {source})"
    if outcome.status is Status.OPTIMAL and bound_valid:
        return Status.CONVERGED, (
            f"{name} reported the MIP solved, but the exact refit of its solution is "
            f"{gap:.2e} (relative) above its bound: a numerical tolerance issue (M = {M:.3g}); "
            "lower_bound and gap are valid, optimality is not certified"
        )
    if outcome.status is Status.OPTIMAL:
        if not run.backend.reports_dual_bound:
            return Status.CONVERGED, f"{name} reports no dual bound: optimality is not certified"
        return Status.CONVERGED, (
            f"{name} solved the MIP with |w_i| <= M = {M:.3g}, but M comes from a heuristic "
            "solution (l2 = 0 and no restricted-curvature bound), so optimality is not "
            "certified for the unbounded problem"
        )
    if outcome.status is Status.TIME_LIMIT:
        return Status.TIME_LIMIT, f"time limit reached; {outcome.message}"
    return Status.ERROR, f"{outcome.message}; returning the best heuristic solution"


def best_point(problem: L0Problem, outcome: Outcome, incumbents: list[Incumbent]) -> np.ndarray:
    """Best of the heuristic incumbents and the exact refits of the solver's supports.

    The solver's ``w`` carries its tolerances, so its support is refit
    exactly: the support read from ``z``, and the ``k`` largest ``|w_i|`` that
    the group caps allow (they differ when some ``w_i`` leaked through a
    ``z_i`` at the integrality tolerance). Keeping the incumbents means a time limit or a solver
    failure never loses the starting point.
    """
    candidates = [inc.w for inc in incumbents if inc.bounded]
    caps = problem.group_caps
    if outcome.w is not None:
        # the largest |w_i| the budget allows: with group caps the capped
        # projection, since a leaked w_i can sit in a group that is already full
        supports = [outcome.support, select_support(problem, np.abs(outcome.w))]
        for support in supports:
            if support.size <= problem.k and (caps is None or caps.violation(support) is None):
                fit = refit(problem, support)
                if fit.bounded:
                    candidates.append(fit.w)
    return min(candidates, key=problem.objective)


def tolerance_slack(problem: L0Problem, outcome: Outcome, backend: Backend) -> float:
    """How far the dual bound may sit below the true optimum through the feasibility tolerance.

    Each cone may be violated by ``feastol`` (absolute): the residual cone's
    ``s`` enters the objective as ``scale * s / 2``, and each perspective
    cone's ``t_i`` as ``d * t_i / 2``. Twice that sum, so that a bound at the
    solver's tolerance level is not mistaken for a real gap.
    """
    d = problem.l2 + outcome.shift if outcome.perspective else 0.0
    return 2.0 * backend.feastol * 0.5 * (outcome.scale + d * problem.p)


def bound_and_gap(problem: L0Problem, solver_bound: float, f_best: float) -> tuple[float, float]:
    """The lower bound to report and the relative gap of ``f_best`` to it."""
    # The unconstrained minimum of f is also a valid bound; it is exact when
    # the sparse optimum fits perfectly (k >= n), where the solver's bound
    # only reaches f* up to its feasibility tolerance.
    relaxed = refit(problem, np.arange(problem.p, dtype=np.int64))
    lower = solver_bound
    if relaxed.bounded:
        lower = max(lower, problem.objective(relaxed.w))
    lower = float(min(lower, f_best))
    return lower, relative_gap(problem, lower, f_best)


def relative_gap(problem: L0Problem, lower: float, f_best: float) -> float:
    # Relative to |f|, floored at 1e-6 f(0) so that a (near-)perfect fit,
    # f ~ 0, is judged on the scale of the data (as in chita_opt.validate).
    f_zero = problem.objective(np.zeros(problem.p))
    gap = (f_best - lower) / max(abs(f_best), 1e-6 * abs(f_zero), 1e-300)
    return float(max(gap, 0.0))


def trivial(problem: L0Problem, clock: Stopwatch) -> Solution:
    # k = 0: w = 0 is the only feasible point; k = p: the problem is convex.
    if problem.k == 0:
        w, msg = np.zeros(problem.p), "k = 0: w = 0 is the only feasible point"
    else:
        w = refit(problem, np.arange(problem.p, dtype=np.int64)).w
        msg = "k = p: the problem is convex; solved exactly on all coordinates"
    sol = make_solution(
        problem, w, method="mip", status="optimal", message=msg, stopwatch=clock,
        certified=True, big_m=float("nan"), big_m_source="none", solver_status="not called",
    )
    return replace(sol, lower_bound=sol.objective, gap=0.0)


def unbounded(problem: L0Problem, w: np.ndarray, support: np.ndarray, clock: Stopwatch) -> Solution:
    return make_solution(
        problem, w, method="mip", status="unbounded", stopwatch=clock, certified=True,
        message=(
            f"f is unbounded below: on support {np.asarray(support).tolist()} the linear term "
            "has a component in the null space of A_S (l2 = 0)"
        ),
    )
