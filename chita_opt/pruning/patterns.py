"""N:M sparsity patterns: groups of M consecutive weights along the input dimension.

``pattern="2:4"`` keeps at most 2 weights in every group of 4 consecutive
entries along a weight's input dimension (the pattern sparse tensor cores
accelerate). A Linear weight ``(out, in)`` is grouped along ``in``; a
convolution along the flattened ``in * kh * kw`` (PyTorch's convention, the
``(out, in*kh*kw)`` view). JAX kernels put the output axis last (Flax:
``(in, out)``, ``(kh, kw, in, out)``), so there the groups run along the
flattened leading axes for every output column.
"""

from __future__ import annotations

import numpy as np

from .layout import ParamLayout

__all__ = ["fill_groups", "group_rank", "input_groups", "parse_pattern", "top_per_group"]

def parse_pattern(pattern: object) -> tuple[int, int]:
    """``"N:M"`` -> ``(N, M)`` with ``1 <= N <= M`` (:func:`chita_opt.groups.parse_nm`)."""
    from ..groups import parse_nm

    return parse_nm(pattern, "pattern")


def input_groups(layout: ParamLayout, m: int, output_axis: int) -> np.ndarray:
    """Group id of every flat weight: M consecutive entries along each tensor's input dims.

    ``output_axis`` is 0 when tensors are ``(out, in, ...)`` (PyTorch) and -1
    when they are ``(..., in, out)`` (Flax / Haiku). Raises a ``ValueError``
    listing every tensor whose input size M does not divide.
    """
    bad = []
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        if len(shape) < 2:
            bad.append(f"{name} {tuple(shape)} (not a weight matrix)")
            continue
        size_in = int(np.prod(shape[1:] if output_axis == 0 else shape[:-1]))
        if size_in % m:
            bad.append(f"{name} {tuple(shape)} (input size {size_in})")
    if bad:
        raise ValueError(
            f"pattern: groups of M={m} along the input dimension need an input size divisible "
            f"by {m}; these tensors do not qualify: {', '.join(bad)}. Exclude them with the "
            "tensor selector (select=[...] or a predicate)"
        )
    from ..groups import nm_groups

    groups = np.empty(layout.p, dtype=np.int64)
    first = 0
    for shape, (a, b) in zip(layout.shapes, layout.ranges(), strict=True):
        size = b - a
        if output_axis == 0:
            local = nm_groups(shape, m)  # (out, in...): M consecutive entries of a row
        else:
            out = int(shape[-1])
            flat = np.arange(size)
            j, o = flat // out, flat % out  # (in..., out): column o, input position j
            local = o * ((size // out) // m) + j // m
        groups[a:b] = first + local
        first += size // m
    return groups


def top_per_group(scores: np.ndarray, groups: np.ndarray, cap: int, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``scores`` with at most ``cap`` per group (greedy, exact)."""
    from ..solvers._group_caps import make_group_caps

    return make_group_caps(groups, int(cap), scores.size).project(np.asarray(scores, float), k)


def group_rank(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Rank of every entry inside its group by decreasing score (0 = best; ties: smaller index)."""
    idx = np.arange(scores.size)
    by_group = np.lexsort((idx, -scores, groups))
    g_sorted = groups[by_group]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    rank = np.empty(scores.size, dtype=np.int64)
    rank[by_group] = idx - np.repeat(starts, np.diff(np.r_[starts, scores.size]))
    return rank


def fill_groups(keep: np.ndarray, scores: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """``keep`` plus, in groups with fewer than ``n`` kept, their best other entries up to ``n``."""
    ranked = group_rank(np.where(keep, np.inf, scores), groups)
    return keep | (ranked < n)
