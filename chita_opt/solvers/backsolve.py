"""Backsolve: exact ridge refit on the magnitude support (or a given one)."""

from __future__ import annotations

from typing import Any

from ..problem import L0Problem
from ..result import Solution
from . import register
from ._common import Stopwatch, make_solution, start_point
from ._refit import refit
from .magnitude import magnitude_support

__all__ = ["solve_backsolve"]


@register("backsolve")
def solve_backsolve(problem: L0Problem, *, support: Any = None, w0: Any = None) -> Solution:
    """Minimise f exactly on a fixed support.

    The support is ``support`` if given, else the magnitude support of ``w0``
    (or of ``w_bar``; see :func:`~chita_opt.solvers.magnitude.magnitude_support`).
    Uses Cholesky when ``|S| <= n`` and the Woodbury identity when ``|S| > n``
    (an n x n system: O(n^2 |S| + n^3)).
    """
    clock = Stopwatch()
    w0, support = start_point(problem, w0, support)
    if support is None:
        support = magnitude_support(problem, w0)
    result = refit(problem, support)
    status, message = "converged", f"exact refit on a support of size {support.size}"
    if not result.bounded:
        status = "unbounded"
        message = "f is unbounded below on this support (l2 = 0 and c has a null-space component)"
    return make_solution(
        problem, result.w, method="backsolve", status=status, message=message, stopwatch=clock
    )
