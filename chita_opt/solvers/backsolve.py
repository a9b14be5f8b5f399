"""Backsolve: exact ridge refit on the magnitude support (or a given one)."""

from __future__ import annotations

from typing import Any

from ..problem import L0Problem
from ..result import Solution, Status
from ._base import Outcome, Start, run_method
from ._refit import refit
from ._registry import register

__all__ = ["solve_backsolve"]


@register("backsolve")
def solve_backsolve(problem: L0Problem, *, support: Any = None, w0: Any = None) -> Solution:
    """Minimise f exactly on a fixed support.

    The support is ``support`` if given, else the magnitude support of ``w0``
    (or of ``w_bar``; see :func:`~chita_opt.solvers.magnitude.magnitude_support`).
    Uses Cholesky when ``|S| <= n`` and the Woodbury identity when ``|S| > n``
    (an n x n system: O(n^2 |S| + n^3)).
    """

    def body(start: Start) -> Outcome:
        result = refit(start.problem, start.support)
        if not result.bounded:
            return Outcome(result.w, Status.UNBOUNDED,
                           f"f is unbounded below on the support {start.support.tolist()} "
                           "(l2 = 0 and c has a component in the null space of A_S)")
        return Outcome(result.w, Status.CONVERGED,
                       f"exact refit on a support of size {start.support.size}")

    return run_method(problem, "backsolve", body, w0=w0, support=support)
