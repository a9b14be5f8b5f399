"""The mixed-integer second-order-cone model of the L0 problem, built in CVXPY.

::

    minimize    scale/2 s + (d/2) sum_i t_i + (c - l2 w_bar)^T w  (+ K0, kept outside)
    subject to  s >= ||(q - R w) / sqrt(scale)||^2       (least squares, one cone)
                w_i^2 <= t_i z_i                          (perspective, when d > 0)
                -M z_i <= w_i <= M z_i,  z_i in {0, 1},  sum_i z_i <= k

``||y - A w||^2 = ||q - R w||^2 + delta ||w||^2 + const`` (:class:`LeastSquaresFactor`)
and ``d = l2 + delta``. This module only builds the model; running it is the
backend's job (:mod:`._backend`) and judging the result the certificate's
(:mod:`._certificate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..problem import L0Problem
from ._group_constraints import group_cap_constraints
from ._spectral import EIG_RTOL, Spectral

__all__ = ["LeastSquaresFactor", "MipModel", "build_model"]

#: The least-squares cone is scaled to the incumbent's residual, but never to
#: less than this fraction of ||q||^2 (coefficients grow like 1/sqrt of it).
_SCALE_FLOOR = 1e-4
#: Fraction of lambda_min(A^T A) moved into the perspective term (n > p).
_SHIFT_FRACTION = 0.9


@dataclass(frozen=True)
class LeastSquaresFactor:
    """``||y - A w||^2 = ||q - R w||^2 + delta ||w||^2 + const``.

    For ``n > p`` this is an eigen-factor of ``A^T A - delta I`` (fewer rows,
    and part of the diagonal goes to the perspective term); otherwise ``A, y``.
    """

    R: np.ndarray
    q: np.ndarray
    delta: float
    const: float

    @classmethod
    def of(cls, problem: L0Problem, spec: Spectral) -> LeastSquaresFactor:
        A = np.asarray(problem.A, dtype=np.float64)
        y = problem.y
        if spec.evals is None:
            return cls(A, y, 0.0, 0.0)
        evals, V = spec.evals, spec.evecs
        assert V is not None
        delta = _SHIFT_FRACTION * spec.reliable_lam_min()
        keep = evals > EIG_RTOL * max(spec.lam_max, 1.0) * evals.size
        g = V.T @ (A.T @ y)  # eigen-coordinates of A^T y
        lam = evals[keep]
        shifted = lam - delta
        R = np.sqrt(shifted)[:, None] * V[:, keep].T
        q = g[keep] / np.sqrt(shifted)
        # ||y - A w||^2 = rho^2 + ||q0 - R0 w||^2 with the unshifted factor; the
        # shift changes the constant by -sum g^2 delta / (lam (lam - delta)).
        w_ls = V[:, keep] @ (g[keep] / lam)
        r = y - A @ w_ls
        rho2 = float(r @ r)
        const = rho2 - float(np.sum(g[keep] ** 2 * delta / (lam * shifted)))
        return cls(R, q, delta, const)

    def residual(self, w: np.ndarray) -> float:
        """``||q - R w||^2``, floored so that it can scale the cone."""
        r = self.q - self.R @ w
        return max(float(r @ r), _SCALE_FLOOR * float(self.q @ self.q), 1e-300)


@dataclass(frozen=True)
class MipModel:
    """A built CVXPY problem and what reading its solution needs."""

    prob: Any  # cvxpy.Problem
    w: Any  # cvxpy.Variable (p,)
    z: Any  # cvxpy.Variable (p,), boolean
    K0: float  # constant left out of the CVXPY objective: f = objective + K0
    scale: float  # the residual the least-squares cone is scaled to
    shift: float  # delta of the factor
    perspective: bool


def build_model(
    cp: Any, problem: L0Problem, factor: LeastSquaresFactor, incumbent: np.ndarray, M: float
) -> MipModel:
    """The MISOCP with box ``|w_i| <= M``, its cone scaled to ``incumbent``'s residual."""
    p, k, l2 = problem.p, problem.k, problem.l2
    R, q, delta = factor.R, factor.q, factor.delta
    d = l2 + delta
    w = cp.Variable(p, bounds=[-M, M])
    z = cp.Variable(p, boolean=True)
    s = cp.Variable(nonneg=True)
    # The cone is scaled so that s ~ 1 at the incumbent: CVXPY writes
    # ||x||^2 <= s as ||(2x, s - 1)|| <= s + 1, whose absolute feasibility
    # tolerance would otherwise be a large relative error when the residual
    # is small (near-perfect fits).
    scale = factor.residual(incumbent)
    root = np.sqrt(scale)
    constraints = [
        cp.sum_squares((q - R @ w) / root) <= s,
        w <= M * z,
        w >= -M * z,
        cp.sum(z) <= k,
        *group_cap_constraints(z, problem.group_caps),
    ]
    linear = problem.c - l2 * problem.w_bar
    objective = 0.5 * scale * s + linear @ w
    perspective = d > 0
    if perspective:
        t = cp.Variable(p, nonneg=True)
        # w_i^2 <= t_i z_i as a rotated cone: ||(2 w_i, t_i - z_i)|| <= t_i + z_i.
        constraints.append(cp.SOC(t + z, cp.vstack([2 * w, t - z]), axis=0))
        objective = objective + 0.5 * d * cp.sum(t)
    # Constants kept out of CVXPY so its objective equals SCIP's (no offset).
    K0 = 0.5 * factor.const + 0.5 * l2 * float(problem.w_bar @ problem.w_bar)
    prob = cp.Problem(cp.Minimize(objective), constraints)
    return MipModel(prob, w, z, K0, float(scale), float(delta), bool(perspective))
