"""The template every method runs in: what each solver used to repeat.

``run_method`` validates the warm start, answers ``k = 0`` (one feasible
point: ``"optimal"``) and, for optimisers, ``k = p`` (one convex problem:
the exact refit is the global minimiser), reports ``"unbounded"`` when f is
unbounded below on a feasible support, rescales the data (see
``_scaling``), calls the method's body on the scaled problem, maps the point
back and builds the :class:`Solution` with the objective recomputed in the
user's units. A method's module holds only its algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..problem import L0Problem
from ..result import Solution, Status
from ._common import Stopwatch, make_solution, select_support, start_point
from ._ranking import magnitude_support
from ._refit import refit
from ._scaling import Scaling
from ._unbounded import Unbounded, find_unbounded, unbounded_on

__all__ = ["Outcome", "Start", "run_method"]


@dataclass(frozen=True)
class Start:
    """What a method's body gets: the scaled problem and the start, in its coordinates."""

    problem: L0Problem
    w0: np.ndarray | None
    support: np.ndarray  # warm-start support, or the magnitude support of the user's data
    scaling: Scaling


@dataclass
class Outcome:
    """What a method's body returns (``w`` in the scaled problem's coordinates)."""

    w: np.ndarray
    status: Status
    message: str
    n_iter: int = 0
    history: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


Body = Callable[[Start], Outcome]


def _start_support(user: L0Problem, scaled: L0Problem, w0, support) -> np.ndarray:
    # Ranked in the user's units: |w0| or |w_bar| (pure comparisons, no
    # arithmetic to overflow), else the one-coordinate gains, which are
    # invariant to the rescaling and are computed where they do not underflow.
    if support is not None:
        return support
    if w0 is not None and np.any(w0):
        return select_support(user, np.abs(w0))
    if user.has_w_bar:
        return select_support(user, np.abs(user.w_bar))
    return magnitude_support(scaled)


def run_method(
    problem: L0Problem,
    method: str,
    body: Body,
    *,
    w0: Any = None,
    support: Any = None,
    optimizer: bool = True,
    scale: bool = True,
    scale_columns: bool = False,
) -> Solution:
    """Run ``body`` inside the shared template (see the module docstring).

    ``optimizer=False`` (magnitude) skips the unboundedness check and the
    ``k = p`` shortcut: such a method does not minimise f. ``scale=False``
    skips the rescaling, which reads all of ``A``.
    """
    clock = Stopwatch()
    w0, support = start_point(problem, w0, support)
    if problem.k == 0:
        return make_solution(problem, np.zeros(problem.p), method=method, status=Status.OPTIMAL,
                             message="k = 0: w = 0 is the only feasible point", stopwatch=clock)
    scaling = Scaling.of(problem, columns=scale_columns) if scale else Scaling.none(problem)
    P = scaling.scaled
    try:
        if optimizer:
            early = _unbounded_or_full(problem, scaling, method, clock)
            if early is not None:
                return early
        start = Start(P, scaling.to_scaled(w0), _start_support(problem, P, w0, support), scaling)
        out = body(start)
    except np.linalg.LinAlgError as exc:
        # a factorisation broke down (data beyond float64's reach, e.g. column
        # norms 1e300 apart): a status, not a raw LAPACK error
        return make_solution(problem, np.zeros(problem.p), method=method, status=Status.ERROR,
                             message=f"numerical breakdown in a factorisation ({exc}); the "
                                     "columns of A span too many orders of magnitude for "
                                     "float64 -- rescale them", stopwatch=clock)
    if optimizer and out.status is not Status.UNBOUNDED and P.l2 == 0.0 and P.has_c:
        # the a-priori search is exhaustive only in some cases (see _unbounded);
        # the support the method ends on is checked exactly (an SVD of its columns)
        hit = unbounded_on(P, np.flatnonzero(out.w))
        if hit is not None:
            return _unbounded_solution(problem, scaling, method, clock, hit,
                                       "the support the method ended on")
    history = None if out.history is None else scaling.objective_to_user(out.history)
    return make_solution(problem, scaling.to_user(out.w), method=method, status=out.status,
                         message=out.message, n_iter=out.n_iter, stopwatch=clock,
                         history=history, **out.info)


def _unbounded_or_full(
    problem: L0Problem, scaling: Scaling, method: str, clock: Stopwatch
) -> Solution | None:
    P = scaling.scaled
    hit = find_unbounded(P)
    if hit is not None:
        return _unbounded_solution(problem, scaling, method, clock, hit, "a feasible support")
    if problem.k < problem.p:
        return None
    fit = refit(P, np.arange(P.p, dtype=np.int64))
    if not fit.bounded:
        return make_solution(problem, scaling.to_user(fit.w), method=method,
                             status=Status.UNBOUNDED, stopwatch=clock,
                             message="f is unbounded below on the full support (k = p)")
    return make_solution(problem, scaling.to_user(fit.w), method=method, status=Status.OPTIMAL,
                         message="k = p: the exact refit on every coordinate is the global "
                                 "minimiser", stopwatch=clock)


def _unbounded_solution(
    problem: L0Problem, scaling: Scaling, method: str, clock: Stopwatch, hit: Unbounded,
    where: str,
) -> Solution:
    fit = refit(scaling.scaled, hit.support)
    return make_solution(
        problem, scaling.to_user(fit.w), method=method, status=Status.UNBOUNDED,
        message=f"f is unbounded below on {where}, {hit.support.tolist()}: {hit.reason}",
        stopwatch=clock, unbounded_support=hit.support,
        unbounded_direction=scaling.to_user(hit.direction),
    )
