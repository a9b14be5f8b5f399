"""Working sets: small sub-problems over a subset of columns, gathered once."""

from __future__ import annotations

import numpy as np

from .._kernels.linalg import gather_columns
from ..problem import L0Problem

__all__ = ["add_gain", "restrict"]


def restrict(problem: L0Problem, columns: np.ndarray, k: int | None = None) -> L0Problem:
    """The problem over ``columns`` only (a Fortran-ordered copy of those columns).

    Gathering once per working set keeps column access contiguous for
    coordinate descent and swap scoring; ``A`` itself is never copied whole
    unless ``columns`` is everything. The copy keeps ``A``'s dtype (float32
    gradients stay float32: half the memory; the kernels accumulate in float64).
    """
    columns = np.asarray(columns, dtype=np.int64)
    k = min(problem.k if k is None else k, columns.size)
    # group caps carry over (the sub-problem's k is clipped to its own caps)
    groups = None if problem.groups is None else problem.groups[columns]
    return L0Problem(
        gather_columns(problem.A, columns, dtype=problem.A.dtype),
        problem.y,
        k,
        l2=problem.l2,
        w_bar=problem.w_bar[columns],
        c=problem.c[columns],
        groups=groups,
        group_k=problem.group_k,
    )


def add_gain(problem: L0Problem, g: np.ndarray) -> np.ndarray:
    """Decrease of f from moving one zero coordinate to its 1-D optimum: g^2 / (2 H_jj)."""
    curv = problem.col_sq_norms + problem.l2
    gain = np.zeros_like(g)
    ok = curv > 0
    gain[ok] = 0.5 * g[ok] ** 2 / curv[ok]
    # A column that is zero with l2 = 0 and c_j != 0 makes f unbounded below;
    # rank it first so the solvers meet (and report) it.
    gain[~ok & (g != 0)] = np.inf
    return gain
