"""The magnitude support: which k coordinates a method starts from."""

from __future__ import annotations

import numpy as np

from ..problem import L0Problem
from ._common import select_support

__all__ = ["magnitude_support", "marginal_scores"]


def marginal_scores(problem: L0Problem) -> tuple[np.ndarray, np.ndarray]:
    """Decrease of f from fitting each coordinate alone, and that coordinate's value.

    Used when there is no ridge centre to rank by (plain sparse regression):
    ``w_j = (a_j^T y - c_j) / (||a_j||^2 + l2)`` lowers f by
    ``(a_j^T y - c_j)^2 / (2 (||a_j||^2 + l2))``.
    """
    corr = (problem.A.T @ problem.y.astype(problem.dtype)).astype(np.float64) - problem.c
    curv = problem.col_sq_norms + problem.l2
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(curv > 0, corr / np.where(curv > 0, curv, 1.0), 0.0)
    return 0.5 * corr * value, value


def magnitude_support(problem: L0Problem, w0: np.ndarray | None = None) -> np.ndarray:
    """Support of magnitude pruning: top-k of ``|w0|``, else ``|w_bar|``, else marginal gain.

    Under group caps: the largest scores of each group within its cap, then
    the largest of those within ``k`` (the exact projection's support).
    """
    if w0 is not None and np.any(w0):
        return select_support(problem, np.abs(w0))
    if problem.has_w_bar:
        return select_support(problem, np.abs(problem.w_bar))
    gain, _ = marginal_scores(problem)
    return select_support(problem, np.maximum(gain, 0.0))
