"""Per-group selection for group caps (N:M and the like)."""

from __future__ import annotations

import numpy as np
from numba import njit

# Groups up to this size are ranked by counting (O(m^2), no allocation);
# larger ones by a stable sort of the group's scores.
_SMALL_GROUP = 32


@njit(cache=True, nogil=True)
def group_top_mask(scores, order, starts, cap, out):  # pragma: no cover - jitted
    """Mark, in every group, the ``cap[g]`` coordinates of largest score.

    order  : (p,) coordinates sorted by group, increasing index inside a group
    starts : (G + 1,) group g is ``order[starts[g]:starts[g + 1]]``
    cap    : (G,) caps, already clipped to the group sizes
    out    : (p,) bool, written in full

    Ties go to the smaller index, the rule of ``top_k``, so that the greedy
    projection built on this mask is deterministic.
    """
    n_groups = starts.size - 1
    for g in range(n_groups):
        a = starts[g]
        b = starts[g + 1]
        m = b - a
        c = cap[g]
        if c >= m:
            for t in range(a, b):
                out[order[t]] = True
            continue
        for t in range(a, b):
            out[order[t]] = False
        if c <= 0:
            continue
        if m <= _SMALL_GROUP:
            for t in range(a, b):
                i = order[t]
                si = scores[i]
                beaten = 0
                for u in range(a, b):
                    j = order[u]
                    sj = scores[j]
                    if sj > si or (sj == si and j < i):
                        beaten += 1
                out[i] = beaten < c
        else:
            seg = np.empty(m)
            for t in range(m):
                seg[t] = -scores[order[a + t]]
            # stable, and order is increasing inside the group: ties -> smaller index
            idx = np.argsort(seg, kind="mergesort")
            for t in range(c):
                out[order[a + idx[t]]] = True
