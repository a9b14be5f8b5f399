"""The layer-wise pruning problem: one weight matrix, one Gram matrix, a budget.

For a layer with weight ``W_bar`` (d_out x d_in) and calibration inputs ``X``
(N x d_in), every output row r solves

    minimize  1/2 (w_r - w̄_r)^T (H + damping I) (w_r - w̄_r),   H = X^T X,

which is the reconstruction error ``1/2 ||X (w_r - w̄_r)||^2`` plus a ridge
pulling towards the dense row. All rows share ``H``; they are coupled only
through the budget:

* ``Budget.per_row(k)``  — at most ``k`` non-zeros in every row;
* ``Budget.layer(k)``    — at most ``k`` non-zeros in the whole matrix (rows
  may keep different numbers of weights);
* ``Budget.nm(n, m)``    — at most ``n`` non-zeros in every run of ``m``
  consecutive inputs of a row (2:4, 4:8, ...).

Each budget is a (truncated) partition matroid, so the Euclidean projection is
the greedy "largest scores first" rule of :mod:`chita_opt.groups`; here it is
computed with ``argpartition`` along the structure, which gives the same sets
without a full sort.

Gradient block (optional, ``gradients=``): with per-sample gradients of the
layer's weight ``g_i`` (n x d_out x d_in; for a layer with output gradients
``delta_{i,t}`` and inputs ``x_{i,t}`` at the tokens t of sample i,
``g_i = sum_t delta_{i,t} x_{i,t}^T``), row r also carries the empirical Fisher
of its own weights, ``F_r = sum_i g_{i,r} g_{i,r}^T``: its objective becomes

    1/2 (w_r - w̄_r)^T (H + gamma F_r + damping I) (w_r - w̄_r)
  = 1/2 ||A_r (w_r - w̄_r)||^2 + damping/2 ||w_r - w̄_r||^2,  A_r = [X; sqrt(gamma) G_r],

the activation block and row r's gradient block ``G_r`` (n x d_in, rows
``g_{i,r}``) stacked in one A. The Fisher block of the whole layer couples rows
(d_out d_in squared entries); keeping only its diagonal row blocks keeps the
rows independent given their supports, so every budget and solver still
applies, with one Hessian per row (``Hd_rows``, d_out x d_in x d_in floats).
``gamma = gradient_weight * d_out * tr(H) / sum_r tr(F_r)``: at the default
weight 1 the gradient blocks carry, summed over rows, the same trace as the
activation block (the scale of the loss and of the activations cancels).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_nonnegative, describe
from ..groups import parse_nm

__all__ = ["Budget", "LayerProblem", "budget_from_sparsity"]

_KINDS = ("row", "layer", "nm")


@dataclass(frozen=True)
class Budget:
    """A support budget for a ``d_out x d_in`` weight (see the module docstring)."""

    kind: str
    k: int | None = None
    n: int | None = None
    m: int | None = None

    @classmethod
    def per_row(cls, k: int) -> Budget:
        return cls("row", k=_nonneg_int(k, "k"))

    @classmethod
    def layer(cls, k: int) -> Budget:
        return cls("layer", k=_nonneg_int(k, "k"))

    @classmethod
    def nm(cls, n: int | str, m: int | None = None) -> Budget:
        if m is None:
            n, m = parse_nm(n)
        else:
            n, m = parse_nm((n, m))
        return cls("nm", n=n, m=m)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"budget.kind: expected one of {_KINDS}, got {self.kind!r}")

    def check(self, shape: tuple[int, int]) -> None:
        """Raise if the budget does not fit a weight of ``shape``."""
        d_out, d_in = shape
        if self.kind == "row" and not 0 <= self.k <= d_in:
            raise ValueError(f"budget: expected per-row k in [0, {d_in}], got {self.k}")
        if self.kind == "layer" and not 0 <= self.k <= d_out * d_in:
            raise ValueError(f"budget: expected layer k in [0, {d_out * d_in}], got {self.k}")
        if self.kind == "nm" and d_in % self.m:
            raise ValueError(
                f"budget: N:M pattern {self.n}:{self.m} needs d_in divisible by {self.m}, "
                f"got d_in={d_in}"
            )

    def total(self, shape: tuple[int, int]) -> int:
        """The largest number of non-zeros the budget allows."""
        d_out, d_in = shape
        if self.kind == "row":
            return d_out * self.k
        if self.kind == "layer":
            return self.k
        return d_out * (d_in // self.m) * self.n

    def project(self, scores: np.ndarray) -> np.ndarray:
        """Mask keeping the largest ``scores`` the budget allows (exact; ties arbitrary)."""
        d_out, d_in = scores.shape
        mask = np.zeros(scores.shape, dtype=bool)
        if self.kind == "row":
            if self.k >= d_in:
                mask[:] = True
            elif self.k > 0:
                idx = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
                np.put_along_axis(mask, idx, True, axis=1)
        elif self.kind == "layer":
            flat = mask.reshape(-1)
            if self.k >= flat.size:
                flat[:] = True
            elif self.k > 0:
                flat[np.argpartition(-scores.reshape(-1), self.k - 1)[: self.k]] = True
        else:
            blocks = scores.reshape(d_out, d_in // self.m, self.m)
            bmask = mask.reshape(blocks.shape)
            idx = np.argpartition(-blocks, self.n - 1, axis=2)[:, :, : self.n]
            np.put_along_axis(bmask, idx, True, axis=2)
        return mask

    def is_feasible(self, mask: np.ndarray) -> bool:
        d_out = mask.shape[0]
        if self.kind == "row":
            return bool((mask.sum(axis=1) <= self.k).all())
        if self.kind == "layer":
            return int(mask.sum()) <= self.k
        return bool((mask.reshape(d_out, -1, self.m).sum(axis=2) <= self.n).all())

    def __str__(self) -> str:
        if self.kind == "nm":
            return f"{self.n}:{self.m}"
        return f"{self.kind} k={self.k}"


def _nonneg_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected a non-negative integer, got {describe(value)}")
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {int(value)}")
    return int(value)


def budget_from_sparsity(
    shape: tuple[int, int], sparsity: float | None = None, pattern: Any = None,
    scope: str = "layer",
) -> Budget:
    """The budget for a sparsity level (``scope`` "layer" or "row") or an N:M ``pattern``."""
    if (sparsity is None) == (pattern is None):
        raise ValueError(
            "sparsity/pattern: expected exactly one of sparsity (e.g. 0.5) or pattern "
            f"(e.g. '2:4'), got sparsity={sparsity!r}, pattern={pattern!r}"
        )
    if pattern is not None:
        return Budget.nm(pattern)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (numbers.Real, np.number)) or not (
        0.0 <= float(sparsity) < 1.0
    ):
        raise ValueError(f"sparsity: expected a number in [0, 1), got {describe(sparsity)}")
    d_out, d_in = shape
    if scope == "row":
        return Budget.per_row(round((1.0 - float(sparsity)) * d_in))
    if scope == "layer":
        return Budget.layer(round((1.0 - float(sparsity)) * d_out * d_in))
    raise ValueError(f"scope: expected 'layer' or 'row', got {scope!r}")


@dataclass
class LayerProblem:
    """``H`` (d_in x d_in, PSD), ``W_bar`` (d_out x d_in), ``damping`` and a :class:`Budget`.

    ``gradients`` (n x d_out x d_in, optional) adds each row's gradient block
    with relative weight ``gradient_weight`` (module docstring); then
    ``Hd_rows`` holds the per-row Hessians and ``gamma`` the absolute weight.
    """

    H: np.ndarray
    W_bar: np.ndarray
    budget: Budget
    damping: float = 0.0
    gradients: np.ndarray | None = field(default=None, repr=False)
    gradient_weight: float = 1.0
    Hd: np.ndarray = field(init=False, repr=False)
    Hd_rows: np.ndarray | None = field(init=False, repr=False, default=None)
    gamma: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        H = np.asarray(self.H, dtype=np.float64)
        W = np.asarray(self.W_bar, dtype=np.float64)
        if W.ndim != 2 or W.size == 0:
            raise ValueError(f"W_bar: expected a non-empty 2-D array (d_out x d_in), got "
                             f"{describe(self.W_bar)}")
        d_in = W.shape[1]
        if H.shape != (d_in, d_in):
            raise ValueError(f"H: expected shape ({d_in}, {d_in}) to match W_bar's d_in, got "
                             f"{describe(self.H)}")
        if not (np.isfinite(H).all() and np.isfinite(W).all()):
            raise ValueError("H, W_bar: expected finite values, got NaN or Inf")
        if not isinstance(self.budget, Budget):
            raise TypeError(f"budget: expected a Budget, got {describe(self.budget)}")
        self.budget.check(W.shape)
        self.damping = check_nonnegative(self.damping, "damping")
        self.H = 0.5 * (H + H.T)  # a Gram matrix summed in float32 is only nearly symmetric
        self.W_bar = W
        self.Hd = self.H + self.damping * np.eye(d_in)
        self.gradient_weight = check_nonnegative(self.gradient_weight, "gradient_weight")
        if self.gradients is not None:
            self._add_gradient_block()

    def _add_gradient_block(self) -> None:
        d_out, d_in = self.W_bar.shape
        g = self.gradients
        if isinstance(g, (list, tuple)):
            g = np.asarray(g)
        if not isinstance(g, np.ndarray) or g.ndim != 3 or g.shape[1:] != (d_out, d_in) \
                or g.shape[0] == 0 or not np.issubdtype(g.dtype, np.floating):
            raise ValueError(f"gradients: expected a float array of shape (n, {d_out}, {d_in}) "
                             f"(per-sample gradients of W_bar), got {describe(g)}")
        if not np.isfinite(g).all():
            raise ValueError("gradients: expected finite values, got NaN or Inf")
        G = np.ascontiguousarray(np.asarray(g, dtype=np.float64).transpose(1, 0, 2))
        F = np.matmul(G.transpose(0, 2, 1), G)  # (d_out, d_in, d_in): F_r = G_r^T G_r
        total = float(np.einsum("rii->", F))
        trace_h = float(np.trace(self.H))
        # all-zero gradients (or a zero H) add nothing: gamma 0, not a division by zero
        self.gamma = (self.gradient_weight * d_out * trace_h / total
                      if total > 0 and trace_h > 0 else 0.0)
        F *= self.gamma
        F += self.Hd[None]
        self.gradients = g
        self.Hd_rows = F

    @property
    def shape(self) -> tuple[int, int]:
        return self.W_bar.shape

    def gradient(self, W: np.ndarray) -> np.ndarray:
        """Per-row gradient of the objective, ``(w_r - w̄_r)^T Hd_r`` (d_out x d_in)."""
        D = np.asarray(W, dtype=np.float64) - self.W_bar
        if self.Hd_rows is None:
            return D @ self.Hd
        return np.matmul(D[:, None, :], self.Hd_rows)[:, 0, :]

    def row_objectives(self, W: np.ndarray) -> np.ndarray:
        """Per-row ``1/2 (w - w̄)^T Hd_r (w - w̄)`` (``Hd_r = H + gamma F_r + damping I``)."""
        D = np.asarray(W, dtype=np.float64) - self.W_bar
        return 0.5 * np.einsum("ij,ij->i", self.gradient(W), D)

    def row_errors(self, W: np.ndarray) -> np.ndarray:
        """Per-row reconstruction error ``1/2 ||X (w - w̄)||^2`` (no damping)."""
        D = np.asarray(W, dtype=np.float64) - self.W_bar
        return 0.5 * np.einsum("ij,ij->i", D @ self.H, D)

    def objective(self, W: np.ndarray) -> float:
        return float(self.row_objectives(W).sum())
