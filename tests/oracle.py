"""Test helpers: a brute-force oracle and a hypothesis strategy of small, hard instances.

The oracle is written independently of the package's refit: it solves each
support's normal equations with ``numpy.linalg.lstsq`` on an augmented
least-squares system, so a bug in ``chita_opt.solvers._refit`` cannot hide
behind it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st


@dataclass
class Instance:
    A: np.ndarray
    y: np.ndarray
    k: int
    l2: float
    w_bar: np.ndarray | None
    c: np.ndarray | None

    def kwargs(self) -> dict:
        return {"l2": self.l2, "w_bar": self.w_bar, "c": self.c}


def objective(inst: Instance, w: np.ndarray) -> float:
    """f(w) from scratch, float64."""
    A = np.asarray(inst.A, dtype=np.float64)
    r = inst.y - A @ w
    wb = np.zeros_like(w) if inst.w_bar is None else inst.w_bar
    c = np.zeros_like(w) if inst.c is None else inst.c
    return float(0.5 * r @ r + 0.5 * inst.l2 * (w - wb) @ (w - wb) + c @ w)


def _support_min(inst: Instance, S: tuple[int, ...]) -> tuple[float, np.ndarray]:
    A = np.asarray(inst.A, dtype=np.float64)
    p = A.shape[1]
    wb = np.zeros(p) if inst.w_bar is None else inst.w_bar
    c = np.zeros(p) if inst.c is None else inst.c
    idx = list(S)
    if inst.l2 > 0:
        # l2/2 ||w - wb||^2 + c^T w = l2/2 ||w - (wb - c/l2)||^2 + const: an augmented
        # least-squares problem, solved by SVD (accurate for badly scaled columns).
        centre = wb[idx] - c[idx] / inst.l2
        M = np.vstack([A[:, idx], np.sqrt(inst.l2) * np.eye(len(idx))])
        rhs = np.concatenate([inst.y, np.sqrt(inst.l2) * centre])
    else:
        if np.any(c[idx]):
            raise ValueError("the oracle handles c != 0 only with l2 > 0")
        M, rhs = A[:, idx], inst.y
    sol, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    w = np.zeros(p)
    w[idx] = sol
    return objective(inst, w), w


def brute_force(inst: Instance) -> tuple[float, np.ndarray]:
    """Global optimum by enumerating every support of size min(k, p)."""
    p = inst.A.shape[1]
    best, best_w = np.inf, np.zeros(p)
    if inst.k == 0:
        return objective(inst, best_w), best_w
    for S in itertools.combinations(range(p), inst.k):
        f, w = _support_min(inst, S)
        if f < best:
            best, best_w = f, w
    return best, best_w


def make_instance(seed: int, max_p: int = 12) -> Instance:
    """A small instance of a varied kind: correlated (Toeplitz up to rho = 0.99,
    equicorrelated), heavy-tailed column scales, duplicated / all-zero / badly
    scaled columns, n < p, l2 = 0 and > 0, w_bar != 0, c != 0 (only with l2 > 0,
    so that f is bounded below)."""
    rng = np.random.default_rng(seed)
    p = int(rng.integers(3, max_p + 1))
    n = int(rng.integers(2, 2 * p + 1))
    k = int(rng.integers(1, p))
    kind = rng.choice(["iid", "toeplitz", "equicorr", "gradient"])
    rho = float(rng.choice([0.3, 0.7, 0.9, 0.99]))
    Z = rng.standard_normal((n, p))
    if kind == "toeplitz":
        A = Z.copy()
        for j in range(1, p):
            A[:, j] = rho * A[:, j - 1] + np.sqrt(1 - rho**2) * Z[:, j]
    elif kind == "equicorr":
        A = np.sqrt(1 - rho) * Z + np.sqrt(rho) * rng.standard_normal((n, 1))
    elif kind == "gradient":
        A = Z * np.exp(rng.standard_normal(p) * 1.5)
    else:
        A = Z
    if rng.random() < 0.4:
        A[:, rng.integers(p)] = A[:, rng.integers(p)]  # duplicated column
    if rng.random() < 0.2:
        A[:, rng.integers(p)] = 0.0  # all-zero column
    if rng.random() < 0.25:
        A = A * (10.0 ** rng.uniform(-3, 3, size=p))  # badly scaled columns
    l2 = float(rng.choice([0.0, 0.0, 1e-3, 0.1, 1.0, 10.0]))
    w_bar = rng.standard_normal(p) * 2 if rng.random() < 0.5 else None
    wt = np.zeros(p)
    wt[rng.choice(p, size=k, replace=False)] = rng.standard_normal(k) * 3
    y = A @ wt + rng.standard_normal(n) * float(rng.choice([0.01, 0.5, 2.0]))
    c = rng.standard_normal(p) if (l2 > 0 and rng.random() < 0.3) else None
    return Instance(A=A, y=y, k=k, l2=l2, w_bar=w_bar, c=c)


def instances(max_p: int = 12) -> st.SearchStrategy[Instance]:
    """Hypothesis strategy over :func:`make_instance` seeds."""
    return st.integers(0, 2**32 - 1).map(lambda seed: make_instance(seed, max_p))
