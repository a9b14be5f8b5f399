"""Group caps on a support: N:M patterns and the exact greedy projection.

A *group structure* on ``p`` coordinates is an integer array ``groups`` of
length ``p`` (``groups[i]`` is the group of coordinate ``i``, ids in
``[0, n_groups)``), a cap per group ``group_k`` (one int for all groups or an
array of length ``n_groups``) and an optional total cap ``k``. A support is
*feasible* when every group ``g`` holds at most ``group_k[g]`` of its
coordinates and, if ``k`` is given, the support holds at most ``k`` in all.

The feasible supports are the independent sets of a truncated partition
matroid, so the greedy rule — visit coordinates by decreasing score, keep one
while its group and the total still have room — returns a feasible support of
maximum size whose score sum is the largest among all feasible supports of that
size (and among *all* feasible supports when scores are non-negative). With
``scores = v**2`` this is exactly the Euclidean projection of ``v`` onto
``{w : support(w) feasible}``, which is what IHT needs (DESIGN.md section 9).

N:M sparsity (at most N non-zeros in every run of M consecutive inputs of a
weight row) is the special case built by :func:`nm_groups`; a Conv2d weight
``(out, in, kh, kw)`` uses its ``(out, in*kh*kw)`` view, the convention of
NVIDIA's ASP for sparse tensor cores.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._validation import describe

__all__ = [
    "check_groups",
    "group_counts",
    "is_feasible",
    "nm_groups",
    "parse_nm",
    "project_groups",
]


def parse_nm(pattern: Any, name: str = "pattern") -> tuple[int, int]:
    """``"2:4"`` or ``(2, 4)`` -> ``(2, 4)``; checks ``1 <= N <= M``."""
    if isinstance(pattern, str):
        parts = pattern.split(":")
        if len(parts) != 2 or not all(s.strip().isdigit() for s in parts):
            raise ValueError(f"{name}: expected 'N:M' such as '2:4', got {pattern!r}")
        n, m = (int(s) for s in parts)
    elif isinstance(pattern, (tuple, list)) and len(pattern) == 2 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pattern
    ):
        n, m = int(pattern[0]), int(pattern[1])
    else:
        raise TypeError(f"{name}: expected 'N:M' or a pair (N, M), got {describe(pattern)}")
    if not 1 <= n <= m:
        raise ValueError(f"{name}: expected 1 <= N <= M, got N={n}, M={m}")
    return n, m


def nm_groups(shape: Any, m: int, *, allow_partial: bool = False) -> np.ndarray:
    """Group ids for N:M sparsity of a weight of ``shape`` (C-order flattening).

    Rows are ``shape[0]`` (output units); each row is the flattened remaining
    axes (``in`` for Linear, ``in*kh*kw`` for Conv2d). Group ``r * (cols // m) + c // m``
    holds the ``m`` consecutive entries ``c`` of row ``r``. When ``cols`` is not a
    multiple of ``m`` the last group of each row is shorter; that is refused
    unless ``allow_partial`` (hardware N:M kernels need whole groups).
    """
    shape = tuple(int(s) for s in np.atleast_1d(np.asarray(shape, dtype=np.int64)))
    if len(shape) < 2 or min(shape) <= 0:
        raise ValueError(f"shape: expected (out, in, ...) with positive sizes, got {shape}")
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m <= 0:
        raise ValueError(f"m: expected a positive integer, got {describe(m)}")
    rows = shape[0]
    cols = int(np.prod(shape[1:]))
    if cols % m and not allow_partial:
        raise ValueError(
            f"shape: N:M groups of m={m} need the row length ({cols} = prod{shape[1:]}) "
            f"to be a multiple of {m}; pass allow_partial=True to allow a short last group"
        )
    per_row = -(-cols // m)
    col_group = np.arange(cols, dtype=np.int64) // m
    return (np.arange(rows, dtype=np.int64)[:, None] * per_row + col_group[None, :]).ravel()


def check_groups(
    groups: Any, group_k: Any, p: int | None = None, k: Any = None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Validate a group structure; returns ``(groups int64, caps int64, k or None)``."""
    g = np.asarray(groups)
    if g.ndim != 1 or (g.size and not np.issubdtype(g.dtype, np.integer)):
        raise TypeError(f"groups: expected a 1-D integer array, got {describe(groups)}")
    if p is not None and g.shape[0] != p:
        raise ValueError(f"groups: expected length {p}, got length {g.shape[0]}")
    g = g.astype(np.int64)
    if g.size and g.min() < 0:
        raise ValueError(f"groups: expected non-negative group ids, got minimum {int(g.min())}")
    n_groups = int(g.max()) + 1 if g.size else 0
    caps = np.asarray(group_k)
    if caps.ndim == 0:
        if not np.issubdtype(caps.dtype, np.integer):
            raise TypeError(f"group_k: expected an int or an int array, got {describe(group_k)}")
        caps = np.full(n_groups, int(caps), dtype=np.int64)
    else:
        if caps.ndim != 1 or not np.issubdtype(caps.dtype, np.integer):
            raise TypeError(f"group_k: expected an int or an int array, got {describe(group_k)}")
        if caps.shape[0] < n_groups:
            raise ValueError(
                f"group_k: expected one cap per group ({n_groups}), got {caps.shape[0]}"
            )
        caps = caps.astype(np.int64)
    if caps.size and caps.min() < 0:
        raise ValueError(f"group_k: expected non-negative caps, got minimum {int(caps.min())}")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (numbers.Integral, np.integer)) or k < 0:
            raise ValueError(f"k: expected a non-negative integer or None, got {describe(k)}")
        k = int(k)
    return g, caps, k


def project_groups(scores: Any, groups: Any, group_k: Any, k: Any = None) -> np.ndarray:
    """Boolean mask of the greedy (exact) projection onto group caps and total ``k``.

    Coordinates are visited by decreasing ``scores`` (ties: lower index first, so
    the result is deterministic) and kept while their group and the total have
    room. Pass ``scores = v**2`` (or ``|v|``) for the Euclidean projection of
    ``v``; the kept set then maximises the score sum over feasible supports.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores: expected a 1-D array, got {describe(scores)}")
    if not np.isfinite(s).all():
        raise ValueError("scores: expected finite values, got NaN or Inf")
    g, caps, k = check_groups(groups, group_k, s.shape[0], k)
    # One projection in the package: the solvers' (exact greedy, Numba).
    from .solvers._group_caps import make_group_caps

    structure = make_group_caps(g, caps, s.shape[0])
    mask = np.zeros(s.shape[0], dtype=bool)
    mask[structure.project(s, structure.total if k is None else k)] = True
    return mask


def group_counts(mask: Any, groups: Any, n_groups: int | None = None) -> np.ndarray:
    """Number of kept coordinates in each group (``mask`` boolean of length p)."""
    g = np.asarray(groups, dtype=np.int64)
    m = np.asarray(mask, dtype=bool)
    size = int(g.max()) + 1 if n_groups is None and g.size else int(n_groups or 0)
    return np.bincount(g[m], minlength=size)


def is_feasible(mask: Any, groups: Any, group_k: Any, k: Any = None) -> bool:
    """Whether a boolean support mask respects every group cap and the total ``k``."""
    m = np.asarray(mask, dtype=bool)
    g, caps, k = check_groups(groups, group_k, m.shape[0], k)
    counts = group_counts(m, g, caps.shape[0])
    if (counts > caps[: counts.shape[0]]).any():
        return False
    return k is None or int(m.sum()) <= k
