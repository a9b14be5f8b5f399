"""Sparsity schedules for multi-stage (CHITA++) and gradual pruning.

A schedule is the list of sparsity levels ``s_0 <= s_1 <= ... <= s_{T-1}``
reached after each of ``T`` stages, going from a base level ``b`` to the
target ``s``. With ``t = 0 .. T-1`` (the formulas of the CHITA paper's
multi-stage code):

* ``exp``:    ``s_t = b + (s - b) * (1 - 2^-t) / (1 - 2^-(T-1))`` -- halves the
  remaining distance each stage, so the last stages make small, careful steps;
* ``poly``:   ``s_t = s + (b - s) * (1 - t / (T-1))^3`` -- the cubic schedule of
  gradual magnitude pruning (Zhu & Gupta);
* ``linear``: ``s_t = b + t (s - b) / (T-1)``;
* ``const``:  ``s_t = s`` at every stage (re-solve at the target with fresh gradients).

A single stage is always just ``[s]``. Every schedule starts at ``b`` (except
``const``) and ends exactly at ``s``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_positive_int, check_sparsity, describe

__all__ = ["DEFAULT_BASE_LEVEL", "SCHEDULES", "sparsity_schedule", "stage_ks"]

#: Names accepted by :func:`sparsity_schedule`.
SCHEDULES = ("exp", "poly", "linear", "const")

#: Sparsity of the first stage when the caller does not choose one (as in the paper's code).
DEFAULT_BASE_LEVEL = 0.1


def sparsity_schedule(
    sparsity: float,
    stages: int,
    schedule: str | Sequence[float] = "exp",
    *,
    base_level: float | None = None,
) -> np.ndarray:
    """Sparsity level to reach after each stage.

    Parameters
    ----------
    sparsity : float
        Target sparsity in ``[0, 1)``, reached at the last stage.
    stages : int
        Number of stages ``T >= 1``.
    schedule : {"exp", "poly", "linear", "const"} or sequence of float
        Schedule name, or the explicit levels (length ``stages``,
        non-decreasing, in ``[0, 1)``, ending at ``sparsity``).
    base_level : float, optional
        Level of the first stage, in ``[0, sparsity]``. Default:
        ``min(0.1, sparsity)``.

    Returns
    -------
    ndarray of float64, shape (stages,)

    Examples
    --------
    >>> sparsity_schedule(0.9, 4, "linear", base_level=0.3).round(3).tolist()
    [0.3, 0.5, 0.7, 0.9]
    """
    sparsity = check_sparsity(sparsity, "sparsity")
    stages = int(check_positive_int(stages, "stages"))  # type: ignore[arg-type]
    if not isinstance(schedule, str):
        return _explicit(schedule, sparsity, stages)
    if schedule not in SCHEDULES:
        raise ValueError(
            f"schedule: expected one of {list(SCHEDULES)} or a sequence of levels, got {schedule!r}"
        )
    if base_level is None:
        base = min(DEFAULT_BASE_LEVEL, sparsity)
    else:
        base = check_sparsity(base_level, "base_level")
        if base > sparsity:
            raise ValueError(
                f"base_level: expected a level in [0, sparsity={sparsity!r}], got {base!r}"
            )
    if stages == 1:
        return np.array([sparsity])
    t = np.arange(stages, dtype=np.float64)
    last = stages - 1
    if schedule == "exp":
        levels = base + (sparsity - base) * (1.0 - 2.0**-t) / (1.0 - 2.0**-last)
    elif schedule == "poly":
        levels = sparsity + (base - sparsity) * (1.0 - t / last) ** 3
    elif schedule == "linear":
        levels = base + t * (sparsity - base) / last
    else:  # const
        levels = np.full(stages, sparsity)
    levels[-1] = sparsity  # exact, whatever the rounding above
    return np.maximum.accumulate(levels)


def _explicit(levels: Any, sparsity: float, stages: int) -> np.ndarray:
    if isinstance(levels, (bytes, numbers.Number)) or levels is None:
        raise TypeError(
            f"schedule: expected one of {list(SCHEDULES)} or a sequence of levels, "
            f"got {describe(levels)}"
        )
    arr = np.asarray(levels, dtype=np.float64).ravel()
    if arr.size != stages:
        raise ValueError(f"schedule: expected {stages} levels (one per stage), got {arr.size}")
    for level in arr:
        check_sparsity(level, "schedule")
    if np.any(np.diff(arr) < 0):
        raise ValueError(f"schedule: expected non-decreasing levels, got {arr.tolist()}")
    if not np.isclose(arr[-1], sparsity, rtol=0, atol=1e-12):
        raise ValueError(
            f"schedule: expected the last level to equal sparsity={sparsity!r}, got {arr[-1]!r}"
        )
    arr[-1] = sparsity
    return arr


def stage_ks(p: int, levels: Sequence[float]) -> list[int]:
    """Weights kept after each stage: ``k_t = p - round(s_t * p)`` (non-increasing)."""
    from ..problem import k_from_sparsity

    return [k_from_sparsity(p, float(s)) for s in levels]
