"""Rescaling ill-scaled data before an exact solve, and mapping the answer back.

The exact references decide ranks, singularity and unboundedness with
thresholds that are relative to O(1) quantities (and SCIP works to absolute
tolerances), so data far from unit scale can be certified wrongly: columns
scaled by 1e-200 made every support look singular ("optimal" at w = 0), and
columns spread over 1e-8..1e8 made f look unbounded below. The references
therefore solve an equivalent problem with unit-scale data.

With ``w = t * v`` (elementwise) and ``f(w) = rho^2 g(v)``, ``g`` has data ::

    A' = A t / rho,  y' = y / rho,  l2' = l2 t^2 / rho^2,
    w_bar' = w_bar / t,  c' = c t / rho^2

which is again an :class:`~chita_opt.L0Problem` when ``l2 = 0`` (any ``t``:
each column is scaled to unit norm) or when ``t`` is one number (``l2 > 0``:
the ridge must stay isotropic). ``rho`` is the scale of f. Supports, and so
the L0 constraint, are unchanged, and the minimisers correspond exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..problem import L0Problem
from ..result import Solution, Status
from ..solvers._common import Stopwatch, make_solution
from ..solvers._scaling import safe_norm

__all__ = ["Scaling", "objective", "rescale"]

#: Data is rescaled when a column norm (or the scale of f) leaves this range,
#: or (l2 = 0) when the column norms spread over more than _MAX_SPREAD: the
#: references' thresholds are reliable inside it (well-scaled data is solved
#: as given, bit for bit as before).
_LOW, _HIGH = 1e-3, 1e3
_MAX_SPREAD = 1e2


@dataclass(frozen=True)
class Scaling:
    """The rescaled problem ``g`` and the map back (``w = t v``, ``f = rho^2 g``)."""

    problem: L0Problem
    t: np.ndarray  # (p,)
    rho: float
    reason: str

    def to_scaled(self, w: np.ndarray) -> np.ndarray:
        return np.asarray(w, dtype=np.float64) / self.t

    def unscale(self, original: L0Problem, sol: Solution, clock: Stopwatch) -> Solution:
        """``sol`` (of the rescaled problem) in the user's units: ``w``, objective and bound.

        The objective is recomputed from the original data. A point that does
        not map back to finite values is an error, never "optimal".
        """
        with np.errstate(over="ignore", invalid="ignore"):
            w = self.t * np.asarray(sol.w, dtype=np.float64)
            f = objective(original, w) if np.all(np.isfinite(w)) else math.nan
        status, message = sol.status, f"{sol.message} (solved on rescaled data: {self.reason})"
        if not math.isfinite(f) and status is not Status.UNBOUNDED:
            status = Status.ERROR
            message = (
                f"the solution of the rescaled problem ({self.reason}) does not map back to "
                f"a finite objective in the original units (got f = {f}); returning w = 0"
            )
            w = np.zeros(original.p)
        info = dict(sol.info)
        info["rescaled"] = self.reason  # big_m, eta, shift refer to v = w / t and g
        for key in ("tolerance_slack", "box_lower_bound"):  # objective values: to f's units
            if key in info:
                info[key] = float(info[key]) * self.rho**2
        if status is Status.ERROR and "certified" in info:
            info["certified"] = False
        with np.errstate(over="ignore", invalid="ignore"):
            out = make_solution(
                original, w, method=sol.method, status=status, message=message,
                n_iter=sol.n_iter, stopwatch=clock, warn=False, **info,
            )
        out = replace(out, objective=objective(original, out.w))
        if sol.lower_bound is None or status is Status.ERROR:
            return out
        if sol.gap == 0.0:  # enumeration: the bound is the objective itself
            return replace(out, lower_bound=out.objective, gap=0.0)
        with np.errstate(over="ignore"):
            lower = min(self.rho**2 * sol.lower_bound, out.objective)
        f0 = original.objective(np.zeros(original.p))
        gap = (out.objective - lower) / max(abs(out.objective), 1e-6 * abs(f0), 1e-300)
        return replace(out, lower_bound=float(lower), gap=float(max(gap, 0.0)))


def objective(problem: L0Problem, w: np.ndarray) -> float:
    """``f(w)`` in the user's units; overflow gives inf, not a warning
    (``L0Problem.objective`` already leaves out the terms whose coefficient is zero)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return problem.objective(w)


def rescale(problem: L0Problem) -> Scaling | None:
    """The unit-scale equivalent of ``problem``, or None when it is already well scaled.

    Raises
    ------
    ValueError
        When even the rescaled data is not finite (the scales span more than
        float64 can hold).
    """
    A = np.asarray(problem.A, dtype=np.float64)
    l2 = problem.l2
    norms = safe_norm(A, axis=0)
    nonzero = norms[norms > 0]
    if nonzero.size == 0:
        return None  # A = 0: f does not depend on the support's fit; nothing to scale
    if l2 == 0.0:
        d = np.where(norms > 0, norms, 1.0)  # each column to unit norm
        spread = float(nonzero.max() / nonzero.min())
    else:
        # One factor keeps the ridge isotropic; sqrt(l2) counts as a column
        # norm so that l2' <= 1 (a ridge far above A^T A is still O(1)).
        d = np.full(problem.p, max(float(nonzero.max()), math.sqrt(l2)))
        spread = 1.0
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        rho = max(
            float(safe_norm(problem.y)),
            float(np.max(np.abs(problem.c) / d)) if problem.has_c else 0.0,
            math.sqrt(l2) * float(safe_norm(problem.w_bar)) if l2 else 0.0,
        )
    rho = rho if rho > 0 else 1.0
    scales = np.concatenate([nonzero if l2 == 0.0 else d[:1], [rho]])
    if np.all((scales >= _LOW) & (scales <= _HIGH)) and spread <= _MAX_SPREAD:
        return None
    reason = (
        f"column norms {nonzero.min():.3g}..{nonzero.max():.3g}, scale of f {rho:.3g}^2"
    )
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        t = rho / d
        A2 = A / d
        y2 = problem.y / rho
        l2_2 = l2 / (d[0] * d[0]) if l2 else 0.0
        w_bar2 = problem.w_bar * (d / rho) if l2 else None
        c2 = problem.c / (d * rho) if problem.has_c else None
    parts = [t, A2, y2, [l2_2]] + [v for v in (w_bar2, c2) if v is not None]
    with np.errstate(over="ignore", under="ignore"):
        f_scale_ok = 0.0 < rho * rho < math.inf  # else f itself is not a float64
    finite = all(np.all(np.isfinite(np.asarray(v))) for v in parts)
    if not finite or not f_scale_ok or (l2 > 0 and l2_2 == 0.0):
        raise ValueError(
            f"A, y: expected data whose scales float64 can hold after rescaling, got {reason} "
            f"(l2 = {l2:g}); rescale the columns of A (and y) yourself"
        )
    # Column scales do not change which supports are feasible: the caps carry over.
    scaled = L0Problem(A2, y2, problem.k, l2=l2_2, w_bar=w_bar2, c=c2,
                       groups=problem.groups, group_k=problem.group_k)
    return Scaling(scaled, t, float(rho), reason)
