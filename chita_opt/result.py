"""The result object every solver returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

__all__ = ["STATUSES", "ConvergenceWarning", "Solution", "Status"]


class Status(StrEnum):
    """The one status vocabulary of solvers, blocks and pruning stages.

    Members are strings (``Status.CONVERGED == "converged"``), so results
    compare with plain strings too. Listed from the most to the least severe;
    :meth:`worst` picks the most severe of several (a stage solved in blocks
    reports its worst block).
    """

    #: the solve failed (a numerical breakdown, a backend error); ``w`` is not to be trusted
    ERROR = "error"
    #: the objective is unbounded below on a feasible support (``message`` says why)
    UNBOUNDED = "unbounded"
    #: no feasible point exists
    INFEASIBLE = "infeasible"
    #: time budget exhausted; the best point (and bound, for exact solvers) is returned
    TIME_LIMIT = "time_limit"
    #: iteration budget exhausted before the convergence test held (a ``ConvergenceWarning``)
    MAX_ITER = "max_iter"
    #: a pruning stage with nothing to prune (the start mask was already at its budget)
    SKIPPED = "skipped"
    #: a heuristic stopped at its own stationarity / local-optimality test
    CONVERGED = "converged"
    #: optimality certified: brute force, a MIP with gap ~ 0, or a problem with one
    #: feasible point (``k = 0``)
    OPTIMAL = "optimal"

    def __repr__(self) -> str:
        # Messages and reports quote statuses as the plain strings users compare with.
        return repr(self.value)

    @property
    def severity(self) -> int:
        """0 for the most severe (``error``), larger for better outcomes."""
        return _ORDER.index(self)

    @property
    def is_failure(self) -> bool:
        """True for statuses whose ``w`` must not be used (error, unbounded, infeasible)."""
        return self in (Status.ERROR, Status.UNBOUNDED, Status.INFEASIBLE)

    @property
    def success(self) -> bool:
        """True when the method's own stopping test held or optimality was certified."""
        return self in (Status.CONVERGED, Status.OPTIMAL)

    @classmethod
    def worst(cls, statuses: Iterable[str]) -> Status:
        """The most severe of several statuses (``converged`` for none)."""
        members = [cls(s) for s in statuses]
        return min(members, key=lambda s: s.severity) if members else cls.CONVERGED


_ORDER = tuple(Status)

#: The status names, most severe first (``tuple(Status)`` as plain strings).
STATUSES = tuple(s.value for s in Status)


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
    status : Status
        One of :class:`Status` (a ``str`` enum: compares equal to its name).
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
    status: Status
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
        object.__setattr__(self, "status", Status(self.status))
        self.w.setflags(write=False)
        self.support.setflags(write=False)

    @property
    def success(self) -> bool:
        """True when the method's own stopping test held (or optimality was certified)."""
        return self.status.success

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
