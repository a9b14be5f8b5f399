"""Magnitude pruning: keep the ``k`` largest ``|w_bar|`` (the pruning baseline)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._common import start_point
from ._ranking import magnitude_support, marginal_scores
from ._registry import register

__all__ = ["magnitude_support", "solve_magnitude"]


@register("magnitude")
def solve_magnitude(problem: L0Problem, *, w0: Any = None) -> Solution:
    """Keep the ``k`` largest ``|w0|`` (else ``|w_bar|``) at their values.

    With a zero ``w_bar`` and no ``w0`` this is sure-independence screening:
    the ``k`` coordinates whose one-dimensional fit lowers f most, each at its
    one-dimensional optimum. Not an optimiser: never reports ``"unbounded"``.
    """

    def body(start: Start) -> Outcome:
        P, support = start.problem, start.support
        u = np.zeros(P.p)
        if start.w0 is not None and np.any(start.w0):
            u[support], source = start.w0[support], "w0"
        elif problem.has_w_bar:
            u[support], source = start.scaling.to_scaled(problem.w_bar)[support], "w_bar"
        else:
            u[support], source = marginal_scores(P)[1][support], "marginal fit"
        u[np.abs(u) == 0] = 0.0
        return Outcome(u, Status.CONVERGED, f"kept the {support.size} largest |{source}|")

    # Ranking |w0| or |w_bar| never reads A (pruning calls this without
    # gradients); only the marginal fit needs A, and the rescaling then.
    w0_checked, _ = start_point(problem, w0)
    reads_a = not (w0_checked is not None and np.any(w0_checked)) and not problem.has_w_bar
    return run_method(problem, "magnitude", body, w0=w0_checked, optimizer=False,
                      scale=reads_a)
