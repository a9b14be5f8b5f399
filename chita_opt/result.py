"""The result object every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STATUSES", "ConvergenceWarning", "Solution"]

#: The status vocabulary shared by heuristic and exact solvers.
#: ``converged``  heuristic stopped at its own stationarity / local-optimality test;
#: ``optimal``    optimality certified (exact solvers only: brute force, MIP with gap ~ 0);
#: ``max_iter``   iteration budget exhausted (a ``ConvergenceWarning`` is emitted);
#: ``time_limit`` time budget exhausted, best solution and bound returned;
#: ``infeasible``, ``unbounded``, ``error`` as named.
STATUSES = ("converged", "optimal", "max_iter", "time_limit", "infeasible", "unbounded", "error")


class ConvergenceWarning(UserWarning):
    """A solver stopped on its iteration or time budget before its convergence test held."""


@dataclass(frozen=True)
class Solution:
    """Result of an L0-constrained least-squares solve.

    Attributes
    ----------
    w : ndarray, shape (p,)
        The solution, float64, with at most ``k`` non-zeros.
    support : ndarray of int64
        Sorted indices of the non-zero entries of ``w``.
    objective : float
        ``f(w) = 1/2 ||y - A w||^2 + (l2/2) ||w - w_bar||^2 + c^T w`` exactly.
    status : str
        One of :data:`STATUSES`.
    message : str
        Human-readable explanation of ``status``.
    n_iter : int
        Iterations of the method's main loop.
    time : float
        Wall-clock seconds spent in the solve.
    method : str
        Name of the method that produced the solution.
    history : ndarray
        Objective value after each iteration (may be empty for direct methods).
    lower_bound, gap : float or None
        Certified lower bound and relative gap (exact solvers only).
    info : dict
        Method-specific extras, e.g. ``step_size`` for IHT.
    """

    w: np.ndarray
    support: np.ndarray
    objective: float
    status: str
    message: str = ""
    n_iter: int = 0
    time: float = 0.0
    method: str = ""
    history: np.ndarray = field(default_factory=lambda: np.empty(0))
    lower_bound: float | None = None
    gap: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {self.status!r}")
        self.w.setflags(write=False)
        self.support.setflags(write=False)

    @property
    def success(self) -> bool:
        """True when the method's own stopping test held (or optimality was certified)."""
        return self.status in ("converged", "optimal")

    @property
    def k(self) -> int:
        """Number of non-zeros in ``w``."""
        return int(self.support.size)

    def __repr__(self) -> str:
        extra = ""
        if self.lower_bound is not None:
            extra = f", lower_bound={self.lower_bound:.6g}, gap={self.gap:.3g}"
        return (
            f"Solution(method={self.method!r}, status={self.status!r}, "
            f"objective={self.objective:.10g}, nnz={self.k}, n_iter={self.n_iter}, "
            f"time={self.time:.3g}s{extra})"
        )
