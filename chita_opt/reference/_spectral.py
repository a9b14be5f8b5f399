"""Eigen-information of ``A^T A`` shared by the MIP's big-M and its formulation.

Computed once per solve: the big-M needs ``lambda_min`` (a curvature bound)
and the formulation needs the eigen-factor of ``A^T A`` when ``n > p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import L0Problem

__all__ = ["EIG_RTOL", "Spectral"]

#: Relative eigenvalue threshold (rank decisions), the same as the refit's.
EIG_RTOL = 1e-12


@dataclass(frozen=True)
class Spectral:
    """``lambda_min``/``lambda_max`` of ``A^T A`` and, when ``n > p``, its eigendecomposition."""

    lam_min: float  # smallest eigenvalue of A^T A (0 when n < p)
    lam_max: float
    evals: np.ndarray | None  # eigen-decomposition of A^T A when n > p
    evecs: np.ndarray | None

    @classmethod
    def of(cls, problem: L0Problem) -> Spectral:
        A = np.asarray(problem.A, dtype=np.float64)
        n, p = A.shape
        if n > p:
            evals, evecs = np.linalg.eigh(A.T @ A)
            evals = np.maximum(evals, 0.0)
            return cls(float(evals[0]), float(evals[-1]), evals, evecs)
        sig = np.linalg.svd(A, compute_uv=False)
        lam_max = float(sig[0] ** 2)
        lam_min = float(sig[-1] ** 2) if n == p else 0.0
        return cls(lam_min, lam_max, None, None)

    def reliable_lam_min(self) -> float:
        """``lambda_min(A^T A)``, or 0 when it is at rounding level."""
        tol = EIG_RTOL * max(self.lam_max, 1.0) * 10
        return self.lam_min if self.lam_min > tol else 0.0
