"""Argument checks of the stage loop (``multistage_prune``), one function per argument."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._validation import check_positive_int, check_vector, describe
from .layout import ParamLayout, uniform_blocks


def check_w0(w0: Any) -> np.ndarray:
    arr = np.asarray(w0) if not isinstance(w0, np.ndarray) else w0
    if arr.ndim != 1:
        raise ValueError(f"w0: expected a 1-D array of weights, got {describe(arr)}")
    if arr.size == 0:
        raise ValueError("w0: expected at least one weight, got an empty array")
    return check_vector(arr, "w0", arr.size)


def check_mask(mask: Any, p: int) -> np.ndarray:
    if mask is None:
        return np.ones(p, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask: expected a boolean array of length {p}, got {describe(arr)}")
    if arr.shape != (p,):
        raise ValueError(f"mask: expected a boolean array of length {p}, got {describe(arr)}")
    return arr.copy()


def resolve_blocks(
    block_size: Any, blocks: Any, layout: ParamLayout | None, p: int
) -> list[tuple[int, int]] | None:
    if block_size is not None and blocks is not None:
        raise TypeError("block_size/blocks: expected at most one of them, got both")
    if block_size is not None:
        size = int(check_positive_int(block_size, "block_size"))  # type: ignore[arg-type]
        if layout is not None:
            return layout.blocks(size)
        return uniform_blocks(0, p, size)
    if blocks is None:
        return None
    out = []
    try:
        for a, b in blocks:
            out.append((int(a), int(b)))
    except (TypeError, ValueError):
        raise TypeError(
            f"blocks: expected a sequence of (start, stop) pairs, got {describe(blocks)}"
        ) from None
    out.sort()
    pos = 0
    for a, b in out:
        if a != pos or b <= a:
            raise ValueError(
                f"blocks: expected non-empty, disjoint blocks covering [0, {p}), got a gap or "
                f"overlap at ({a}, {b})"
            )
        pos = b
    if pos != p:
        raise ValueError(f"blocks: expected blocks covering [0, {p}), got coverage up to {pos}")
    return out


def check_groups(groups: Any, cap: Any, p: int) -> tuple[np.ndarray | None, int | None]:
    if groups is None:
        if cap is not None:
            raise TypeError("group_cap: expected nothing without groups, got a value")
        return None, None
    arr = np.asarray(groups)
    if arr.shape != (p,) or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
        raise ValueError(
            f"groups: expected {p} non-negative integer group ids, got {describe(groups)}"
        )
    return arr.astype(np.int64), int(check_positive_int(cap, "group_cap"))  # type: ignore[arg-type]


def check_ranking(ranking: Any, p: int) -> np.ndarray | None:
    if isinstance(ranking, str):
        if ranking != "magnitude":
            raise ValueError(
                f"block_ranking: expected 'magnitude' or an array of {p} scores, got {ranking!r}"
            )
        return None
    return check_vector(ranking, "block_ranking", p)




def as_sequence(value: Any, name: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or isinstance(value, numbers.Number):
        raise TypeError(f"{name}: expected a sequence of numbers, got {describe(value)}")
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{name}: expected a sequence of numbers, got {describe(value)}") from None


def align_blocks(blocks: list[tuple[int, int]], groups: np.ndarray) -> list[tuple[int, int]]:
    """Blocks moved to group boundaries, so that every block holds whole groups.

    Needs every group to be one contiguous run of coordinates (N:M groups of a
    PyTorch ``(out, in)`` weight are); strided groups (a JAX ``(in, out)``
    kernel) cannot be cut into blocks that keep them whole.
    """
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    if starts.size != np.unique(groups).size:
        raise ValueError(
            "block_size/blocks: these N:M groups are not contiguous in the weight vector "
            "(e.g. JAX (in, out) kernels), so blocks cannot hold whole groups; leave "
            "block_size unset with this pattern"
        )
    edges = np.r_[starts, groups.size]
    out = []
    for a, b in blocks:
        lo = int(edges[np.abs(edges - a).argmin()])
        hi = int(edges[np.abs(edges - b).argmin()])
        if out and lo < out[-1][1]:
            lo = out[-1][1]
        if hi > lo:
            out.append((lo, hi))
    if not out or out[0][0] != 0 or out[-1][1] != groups.size:
        raise ValueError("block_size: the blocks could not be aligned to the N:M groups")
    return out
