"""Group caps: at most ``N_g`` non-zeros in each group of coordinates, plus a total ``k``.

With coordinates partitioned into groups (N:M sparsity: groups of M
consecutive inputs, cap N), the feasible supports are the independent sets of
a truncated partition matroid (DESIGN.md section 9). Two facts follow and are
all the solvers need:

* **Exact projection by greedy.** The Euclidean projection of ``v`` onto the
  feasible vectors keeps a feasible support S maximising ``sum_{i in S} v_i^2``;
  for a matroid and non-negative weights the greedy rule -- take coordinates
  by decreasing ``|v_i|`` while their group and the total still have room --
  is optimal. Greedy equals "the top ``cap_g`` of every group, then the top
  ``k`` of those" (an element is taken by greedy iff fewer than ``cap_g``
  larger ones share its group and the total has room), which is how
  :meth:`GroupCaps.project` computes it in O(p M) plus one top-k.
* **Swaps that keep feasibility.** A swap keeps ``|S|`` fixed, so only the
  entering coordinate's group can overflow: swapping ``i`` out and ``j`` in is
  feasible iff ``j``'s group has room or ``i`` is in ``j``'s group.

Caps larger than a group are clipped to the group's size, and the total
``k`` of a problem is clipped to the sum of the clipped caps (the largest
feasible support), so every feasible support extends to one of exactly ``k``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._kernels.group_caps import group_top_mask
from .._validation import describe
from ._common import top_k
from ._registry import METHODS

__all__ = [
    "GROUP_CAP_METHODS",
    "GroupCaps",
    "allowed_slots",
    "make_group_caps",
    "mask_infeasible_pairs",
    "perturb_support",
    "random_feasible_start",
]

#: Methods of ``chita_opt.solve`` that honour ``groups`` / ``group_k``: read
#: off the registry's ``group_caps`` flags (the one place they are recorded).
GROUP_CAP_METHODS = frozenset(m.name for m in METHODS if m.group_caps)


@dataclass(frozen=True, eq=False)
class GroupCaps:
    """Validated group structure. Build it with :func:`make_group_caps`.

    Attributes
    ----------
    labels : (p,) int64, each coordinate's group as an index into ``ids``
    ids : (G,) int64, the distinct group ids as given, increasing
    cap : (G,) int64, the caps clipped to the group sizes
    sizes : (G,) int64, coordinates per group
    order, starts : coordinates sorted by group (increasing index inside a
        group) and the group boundaries in ``order``
    """

    labels: np.ndarray
    ids: np.ndarray
    cap: np.ndarray
    sizes: np.ndarray
    order: np.ndarray
    starts: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.ids.size)

    @property
    def total(self) -> int:
        """Largest feasible support size: the sum of the (clipped) caps."""
        return int(self.cap.sum())

    def counts(self, support: np.ndarray) -> np.ndarray:
        """Non-zeros per group of a support, shape (G,)."""
        return np.bincount(self.labels[support], minlength=self.n_groups)

    def violation(self, support: np.ndarray) -> tuple[int, int, int] | None:
        """``(group id, count, cap)`` of the first group over its cap, else None."""
        over = np.flatnonzero(self.counts(support) > self.cap)
        if over.size == 0:
            return None
        g = int(over[0])
        return int(self.ids[g]), int(self.counts(support)[g]), int(self.cap[g])

    def is_feasible(self, support: np.ndarray, k: int) -> bool:
        return support.size <= k and self.violation(support) is None

    def project(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Sorted indices of the greedy (exact) feasible support for ``scores >= 0``.

        Ties go to the smaller index. ``k`` is the total; the result has
        ``min(k, total)`` entries.
        """
        mask = np.empty(self.labels.size, dtype=np.bool_)
        group_top_mask(np.asarray(scores, dtype=np.float64), self.order, self.starts,
                       self.cap, mask)
        cand = np.flatnonzero(mask)
        if cand.size <= k:
            return cand.astype(np.int64)
        # cand is increasing, so top_k's smaller-position tie rule is the index rule
        return cand[top_k(scores[cand], k)]

    def fill(self, support: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """Grow a feasible ``support`` to ``k`` entries greedily by ``scores`` (kept whole)."""
        finite = np.where(np.isposinf(scores), np.finfo(np.float64).max, scores)
        finite = np.where(np.isnan(finite) | np.isneginf(finite), 0.0, finite)
        finite = finite - min(float(finite.min(initial=0.0)), 0.0)  # non-negative
        finite[support] = np.inf  # taken first: the support is feasible, so all fit
        return self.project(finite, k)


def _check_int_array(value: Any, name: str, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected {what} of integer dtype, got {describe(value)}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected {what} (1-D), got {describe(arr)}")
    return arr.astype(np.int64)


def make_group_caps(groups: Any, group_k: Any, p: int) -> GroupCaps:
    """Validate ``groups`` / ``group_k`` for ``p`` coordinates.

    ``groups`` is an integer array of length ``p`` (any non-negative ids);
    ``group_k`` one non-negative int for every group, or one per group id: a
    sequence indexed by id (length ``> max(groups)``) or a mapping
    ``{id: cap}`` covering every id present.
    """
    if groups is None:
        raise TypeError(f"groups: expected an integer array of length {p}, got None")
    labels_in = _check_int_array(groups, "groups", f"an array of length {p}")
    if labels_in.shape[0] != p:
        raise ValueError(
            f"groups: expected length {p} (one group id per coordinate), "
            f"got length {labels_in.shape[0]}"
        )
    if labels_in.min() < 0:
        raise ValueError(
            f"groups: expected non-negative group ids, got minimum {int(labels_in.min())}"
        )
    ids, labels = np.unique(labels_in, return_inverse=True)
    labels = labels.astype(np.int64).reshape(-1)
    given = _caps_for(group_k, ids)
    sizes = np.bincount(labels, minlength=ids.size).astype(np.int64)
    cap = np.minimum(given, sizes)
    order = np.argsort(labels, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    for arr in (labels, ids, cap, sizes, order, starts):
        arr.setflags(write=False)
    return GroupCaps(labels, ids, cap, sizes, order, starts)


def _caps_for(group_k: Any, ids: np.ndarray) -> np.ndarray:
    """Per-group caps (aligned with ``ids``) from the accepted forms of ``group_k``."""
    expected = (
        "a non-negative int, a sequence indexed by group id "
        f"(length > {int(ids[-1])}), or a mapping {{group id: cap}}"
    )
    if group_k is None:
        raise TypeError(f"group_k: expected {expected} when groups is given, got None")
    if isinstance(group_k, (bool, np.bool_)):
        raise TypeError(f"group_k: expected {expected}, got {describe(group_k)}")
    if isinstance(group_k, (numbers.Integral, np.integer)):
        caps = np.full(ids.size, int(group_k), dtype=np.int64)
    elif isinstance(group_k, Mapping):
        missing = [int(g) for g in ids if int(g) not in group_k]
        if missing:
            raise ValueError(
                f"group_k: expected a cap for every group id present, got none for ids "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}"
            )
        values = [group_k[int(g)] for g in ids]
        caps = _check_int_array(values, "group_k", "caps")
    else:
        if isinstance(group_k, (float, np.floating, str, bytes)):
            raise TypeError(f"group_k: expected {expected}, got {describe(group_k)}")
        arr = _check_int_array(group_k, "group_k", "one cap per group id")
        if arr.shape[0] <= int(ids[-1]):
            raise ValueError(
                f"group_k: expected one cap per group id, i.e. length > {int(ids[-1])} "
                f"(the largest id in groups), got length {arr.shape[0]}"
            )
        caps = arr[ids]
    if caps.min() < 0:
        g = int(ids[int(np.argmin(caps))])
        raise ValueError(
            f"group_k: expected non-negative caps, got {int(caps.min())} for group id {g}"
        )
    return caps


# ----------------------------------------------------------------- swap moves
def mask_infeasible_pairs(
    caps: GroupCaps, counts: np.ndarray, slot_coords: np.ndarray, cand: np.ndarray,
    delta: np.ndarray,
) -> None:
    """Set ``delta[s, j] = inf`` for swaps (out ``slot_coords[s]``, in ``cand[j]``) that
    would overflow a cap: ``cand[j]``'s group is full and ``slot_coords[s]`` is not in it."""
    lab_j = caps.labels[cand]
    full = counts[lab_j] >= caps.cap[lab_j]
    if not np.any(full):
        return
    cols = np.flatnonzero(full)
    lab_s = caps.labels[slot_coords]
    bad = lab_s[:, None] != lab_j[cols][None, :]
    sub = delta[:, cols]
    sub[bad] = np.inf
    delta[:, cols] = sub


def allowed_slots(caps: GroupCaps, support: np.ndarray, j: int) -> np.ndarray | None:
    """Slots of ``support`` that ``j`` may replace: None for all (its group has room)."""
    g = caps.labels[j]
    in_group = caps.labels[support] == g
    if np.count_nonzero(in_group) < caps.cap[g]:
        return None
    return np.flatnonzero(in_group)


def perturb_support(
    caps: GroupCaps, support: np.ndarray, pool: np.ndarray, rng: np.random.Generator, s: int
) -> np.ndarray:
    """``s`` random swaps (in from ``pool``) that keep every cap; the sorted new support."""
    support = np.array(support, dtype=np.int64)
    pool = np.setdiff1d(pool, support)
    counts = caps.counts(support)
    for _ in range(s):
        if pool.size == 0 or support.size == 0:
            break
        j = int(pool[rng.integers(pool.size)])
        g = caps.labels[j]
        if counts[g] < caps.cap[g]:
            choices = np.arange(support.size)
        else:
            choices = np.flatnonzero(caps.labels[support] == g)
            if choices.size == 0:  # cap 0: j can never enter
                pool = pool[pool != j]
                continue
        slot = int(choices[rng.integers(choices.size)])
        i = int(support[slot])
        counts[caps.labels[i]] -= 1
        counts[g] += 1
        support[slot] = j
        pool = np.concatenate([pool[pool != j], [i]])
    return np.sort(support)


def random_feasible_start(problem: Any, rng: np.random.Generator) -> np.ndarray:
    """The exact refit on a uniformly scored random feasible support of size ``k``.

    A fresh start for iterated local search: under caps the basins of the
    swap search are narrower, and perturbing the best point by a few swaps
    alone can stay in the wrong one.
    """
    from ._refit import refit_or_centre  # the refit imports the problem, which imports this

    return refit_or_centre(problem, problem.group_caps.project(rng.random(problem.p), problem.k))
