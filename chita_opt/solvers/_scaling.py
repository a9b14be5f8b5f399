"""Rescaling a problem so that the methods work on numbers near 1, and mapping back.

With ``s`` a positive scale per column and ``beta > 0``, the substitution
``w = beta * u / s`` turns f into ``beta^2 f_s(u)`` where f_s is the same kind of
problem with

    A_s = A diag(1/s),  y_s = y / beta,  c_s = c / (beta s),
    l2_s = l2 / alpha^2,  w_bar_s = alpha w_bar / beta      (s = alpha for every column)

so supports are identical and objectives differ by the factor ``beta^2``. A
per-column ``s`` keeps the problem in this form only when ``l2 = 0`` (a ridge
would become a weighted ridge), so it is used only then.

Why: ``A^T A`` underflows to zero for entries near 1e-160 and overflows near
1e155, and the methods' tolerances are relative to ``|f|`` or to ``||y||``;
with ``beta^2 = 2 f(0)`` the scaled objective starts at 1/2 whatever the
user's units. Scales are powers of two, so the rescaling itself is exact.

``beta`` costs nothing (vectors only). ``A`` is copied only when its scale is
outside [1e-100, 1e100] (float32: [1e-12, 1e12]) or when a method asks for normalised columns (which
makes it invariant to column scaling), since a copy of a gradient matrix can
be gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..problem import L0Problem

__all__ = ["Scaling", "safe_col_norms", "safe_norm"]

# Column norms inside this band need no overall rescaling of A: products
# like A (A^T v), formed in A's dtype by Lanczos and the gradients, stay
# normal numbers of that dtype.
_SAFE_BAND = {np.dtype(np.float64): (1e-100, 1e100), np.dtype(np.float32): (1e-12, 1e12)}
# Keep l2 / alpha^2 representable when A is tiny against the ridge.
_MAX_L2_SCALED = 2.0**900


def safe_norm(v: np.ndarray, axis: int | None = None) -> Any:
    """``||v||_2`` (along ``axis``) without overflow or underflow of the squares."""
    m = np.max(np.abs(v), axis=axis, initial=0.0)
    safe = np.where(m > 0, m, 1.0)
    scaled = v / (safe if axis is None else np.expand_dims(safe, axis))
    out = m * np.sqrt(np.sum(scaled * scaled, axis=axis))
    return float(out) if axis is None else out


# Columns per chunk when re-measuring the rare columns whose squared norms
# over/underflow: bounds the temporary copy of A's rows x chunk.
_ODD_CHUNK = 512


def safe_col_norms(problem: L0Problem) -> np.ndarray:
    """Column norms of ``A``, exact also where the cached squared norms over/underflow."""
    sq = np.asarray(problem.col_sq_norms)
    out = np.sqrt(sq)
    # rare columns (but all-zero ones, e.g. dead pixels, can be thousands): rescale
    # each by its largest entry first, a chunk of columns at a time
    odd = np.flatnonzero(~np.isfinite(sq) | (sq < 1e-250))
    for start in range(0, odd.size, _ODD_CHUNK):
        cols = odd[start:start + _ODD_CHUNK]
        out[cols] = safe_norm(np.asarray(problem.A[:, cols], dtype=np.float64), axis=0)
    return out


def _pow2(x: float) -> float:
    """The power of two nearest ``x`` (> 0) in log scale: scaling by it is exact."""
    return float(2.0 ** round(np.log2(x)))


@dataclass(frozen=True)
class Scaling:
    """A problem ``scaled`` equivalent to ``original`` under ``w = beta u / s``."""

    original: L0Problem
    scaled: L0Problem
    s: np.ndarray  # per-column scale (all equal to alpha unless columns were normalised)
    alpha: float
    beta: float

    @classmethod
    def none(cls, problem: L0Problem) -> Scaling:
        """No rescaling (and no pass over ``A``)."""
        return cls(problem, problem, np.ones(problem.p), 1.0, 1.0)

    @classmethod
    def of(cls, problem: L0Problem, *, columns: bool = False) -> Scaling:
        """Scale ``problem``; ``columns=True`` normalises each column when ``l2 = 0``."""
        P = problem
        f0 = safe_norm(np.array([safe_norm(P.y), np.sqrt(P.l2) * safe_norm(P.w_bar)]))
        beta = _pow2(f0) if f0 > 0 else 1.0
        norms = safe_col_norms(P)
        top = float(norms.max())
        alpha = 1.0
        low, high = _SAFE_BAND[np.dtype(P.dtype)]
        if top > 0 and not (low <= top <= high):
            alpha = _pow2(top)
        if P.l2 > 0 and P.l2 / alpha / alpha > _MAX_L2_SCALED:
            alpha = _pow2(np.sqrt(P.l2 / _MAX_L2_SCALED))
        s = np.full(P.p, alpha)
        if columns and P.l2 == 0.0:
            s = np.where(norms > 0, norms, alpha)
        if np.all(s == 1.0):
            A = P.A
        else:
            A = _divide_columns(P.A, s)
        with np.errstate(over="ignore", under="ignore"):
            c = P.c / (beta * s)
            w_bar = P.w_bar * (alpha / beta) if P.l2 > 0 else np.zeros(P.p)
            l2 = P.l2 / alpha / alpha
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(w_bar))):
            raise ValueError(
                "c/w_bar: expected values whose ratio to the scale of A and y is representable "
                "in float64, got entries that overflow after rescaling; rescale the data"
            )
        if A is P.A and beta == 1.0:
            scaled = P
        else:  # the data were validated with P; a power-of-two scale keeps them finite
            col_sq = P.col_sq_norms if A is P.A else None  # same A: same norms
            scaled = L0Problem._from_checked(A, P.y / beta, P.k, l2, w_bar, c, col_sq,
                                             caps_of=P, a_cache=P._a_cache if A is P.A else None)
        return cls(P, scaled, s, alpha, beta)

    @property
    def uniform(self) -> bool:
        """Whether every column has the same scale (no per-column normalisation)."""
        return bool(np.all(self.s == self.alpha))

    @property
    def identity(self) -> bool:
        return self.scaled is self.original

    def to_user(self, u: np.ndarray) -> np.ndarray:
        """``w = beta u / s`` (zeros stay zeros)."""
        if self.identity:
            return np.asarray(u, dtype=np.float64)
        with np.errstate(over="ignore"):
            return np.asarray(u, dtype=np.float64) * (self.beta / self.s)

    def to_scaled(self, w: np.ndarray | None) -> np.ndarray | None:
        """``u = s w / beta``."""
        if w is None or self.identity:
            return w
        with np.errstate(over="ignore", under="ignore"):
            return np.asarray(w, dtype=np.float64) * (self.s / self.beta)

    def objective_to_user(self, values: list[float] | np.ndarray) -> np.ndarray:
        """Objective values of the scaled problem in the user's units (``beta^2 f_s``)."""
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=np.float64) * self.beta * self.beta

    def lipschitz_to_scaled(self, lipschitz: float) -> float:
        """A curvature bound of f in the user's units, for the scaled problem (``L / alpha^2``).

        Only meaningful without per-column scales.
        """
        return lipschitz / self.alpha / self.alpha


def _divide_columns(A: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``A diag(1/s)`` in A's dtype and memory order (one copy, no float64 temporary)."""
    inv = 1.0 / s
    order = "F" if A.flags.f_contiguous and not A.flags.c_contiguous else "C"
    out = np.empty(A.shape, dtype=A.dtype, order=order)
    with np.errstate(over="ignore", under="ignore"):
        np.multiply(A, inv.astype(A.dtype), out=out, casting="unsafe")
    if not np.all(np.isfinite(inv.astype(A.dtype))):
        out = np.multiply(A, inv[None, :], dtype=np.float64)  # float32 cannot hold 1/s
    return out
