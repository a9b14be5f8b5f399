"""Pieces every solver shares: warm starts, top-k, building the Solution."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from .._validation import check_int, check_real, check_support, check_vector
from ..problem import L0Problem
from ..result import ConvergenceWarning, Solution, Status

__all__ = [
    "Stopwatch",
    "check_tol",
    "hard_threshold",
    "make_solution",
    "project",
    "renamed",
    "resolve_budget",
    "select_support",
    "start_point",
    "top_k",
]


class Stopwatch:
    """Wall-clock timer started at construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the ``k`` largest entries of ``scores`` (O(p) selection).

    Ties are broken towards the smaller index so the result is deterministic
    and does not depend on the selection algorithm's internals.
    """
    p = scores.shape[0]
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= p:
        return np.arange(p, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)
    threshold = scores[part[k - 1]]
    above = np.flatnonzero(scores > threshold)
    ties = np.flatnonzero(scores == threshold)[: k - above.size]
    return np.sort(np.concatenate([above, ties])).astype(np.int64)


def hard_threshold(v: np.ndarray, k: int) -> np.ndarray:
    """``H_k(v)``: keep the ``k`` entries of largest magnitude, zero the rest."""
    out = np.zeros_like(v)
    idx = top_k(np.abs(v), k)
    out[idx] = v[idx]
    return out


def select_support(problem: L0Problem, scores: np.ndarray) -> np.ndarray:
    """The best feasible support by ``scores >= 0``: top-k, or the greedy under group caps.

    With group caps this is the exact projection's support (see ``_group_caps``).
    """
    caps = problem.group_caps
    if caps is None:
        return top_k(scores, problem.k)
    return caps.project(scores, problem.k)


def project(problem: L0Problem, v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the feasible set: ``H_k(v)``, or its group-capped version."""
    if problem.group_caps is None:
        return hard_threshold(v, problem.k)
    out = np.zeros_like(v)
    idx = select_support(problem, np.abs(v))
    out[idx] = v[idx]
    return out


def resolve_budget(value: Any, name: str, default: int, *, minimum: int = 1) -> int:
    """An iteration/round/swap budget: ``default`` for None, else an integer >= ``minimum``."""
    if value is None:
        return default
    return int(check_int(value, name, minimum=minimum))  # type: ignore[arg-type]


def renamed(old_value: Any, new_value: Any, old: str, new: str, method: str) -> tuple[Any, str]:
    """Accept a deprecated option name (with a ``DeprecationWarning``) in place of ``new``.

    Returns the value and the name the caller used (for error messages).
    """
    if old_value is None:
        return new_value, new
    if new_value is not None:
        raise TypeError(f"{old}/{new}: expected only {new} ({old} is its deprecated name), "
                        "got both")
    warnings.warn(f"{method}: option {old!r} is deprecated, use {new!r} (same meaning)",
                  DeprecationWarning, stacklevel=4)
    return old_value, old


def check_tol(tol: Any) -> float:
    """A finite positive tolerance (Python or numpy scalar)."""
    if isinstance(tol, (int, float, np.integer, np.floating)) and not isinstance(tol, bool):
        if not np.isfinite(float(tol)) or float(tol) <= 0:
            raise ValueError(f"tol: expected a finite positive number, got {float(tol)!r}")
    return float(check_real(tol, "tol", minimum=0.0, strict=True))  # type: ignore[arg-type]


def start_point(
    problem: L0Problem, w0: Any = None, support: Any = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate warm starts. Returns ``(w0, support)``, each possibly None.

    An infeasible ``w0`` (more than ``k`` non-zeros, or over a group cap) is
    projected; a given ``support`` must be feasible (at most ``k`` indices and
    within the group caps).
    """
    if w0 is not None:
        w0 = check_vector(w0, "w0", problem.p)
        if not problem.is_feasible(w0):
            w0 = project(problem, w0)
    if support is not None:
        support = check_support(support, problem.p, "support", k=problem.k)
        _check_support_caps(problem, support)
    return w0, support


def _check_support_caps(problem: L0Problem, support: np.ndarray) -> None:
    caps = problem.group_caps
    over = None if caps is None else caps.violation(support)
    if over is not None:
        g, count, cap = over
        raise ValueError(
            f"support: expected at most group_k={cap} indices in group {g} (groups/group_k), "
            f"got {count}"
        )


def make_solution(
    problem: L0Problem,
    w: np.ndarray,
    *,
    method: str,
    status: str,
    message: str = "",
    n_iter: int = 0,
    stopwatch: Stopwatch | None = None,
    history: Any = None,
    warn: bool = True,
    **info: Any,
) -> Solution:
    """Build a :class:`Solution`, recomputing the objective exactly from ``w``."""
    w = np.asarray(w, dtype=np.float64).copy()
    objective = problem.objective(w) if np.all(np.isfinite(w)) else float("nan")
    if not np.isfinite(objective):
        # never "converged" on NaN/Inf: the point or its objective overflowed
        message = (f"numerical breakdown: {'w' if not np.all(np.isfinite(w)) else 'f(w)'} is "
                   f"not finite ({message or status}); rescale A and y")
        status = Status.ERROR
        w = np.where(np.isfinite(w), w, 0.0)
    support = np.flatnonzero(w).astype(np.int64)
    if support.size > problem.k:  # a bug, never a user error: refuse to return it
        raise AssertionError(
            f"internal error: method {method!r} produced {support.size} non-zeros > k={problem.k}"
        )
    over = None if problem.group_caps is None else problem.group_caps.violation(support)
    if over is not None:  # likewise a bug: no method may return a point over a group cap
        raise AssertionError(
            f"internal error: method {method!r} put {over[1]} non-zeros in group {over[0]} "
            f"(cap {over[2]})"
        )
    if status == "max_iter" and warn:
        warnings.warn(
            f"{method}: stopped after {n_iter} iterations without meeting its convergence test "
            "(raise max_iter or loosen tol)",
            ConvergenceWarning,
            stacklevel=4,
        )
    hist = np.asarray(history if history is not None else [], dtype=np.float64)
    return Solution(
        w=w,
        support=support,
        objective=objective,
        status=status,
        message=message,
        n_iter=int(n_iter),
        time=stopwatch.elapsed if stopwatch is not None else 0.0,
        method=method,
        history=hist,
        info=dict(info),
    )
