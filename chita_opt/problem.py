"""The validated L0-constrained least-squares problem.

    minimize   f(w) = 1/2 ||y - A w||^2 + (l2/2) ||w - w_bar||^2 + c^T w
    subject to ||w||_0 <= k   (and, optionally, at most N_g non-zeros in each group g)
"""

from __future__ import annotations

from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kernels.linalg import support_matvec
from ._validation import (
    check_design,
    check_int,
    check_k,
    check_nonnegative,
    check_sparsity,
    check_vector,
    describe,
)

if TYPE_CHECKING:
    from .solvers._group_caps import GroupCaps

__all__ = ["L0Problem", "k_from_sparsity"]


def k_from_sparsity(p: int, sparsity: float) -> int:
    """Number of kept weights for a sparsity level: ``k = p - round(sparsity * p)``."""
    p = int(check_int(p, "p", minimum=0))  # type: ignore[arg-type]
    sparsity = check_sparsity(sparsity)
    return int(p - round(sparsity * p))


class L0Problem:
    """An immutable, validated instance of the L0-constrained least-squares problem.

    Parameters
    ----------
    A : array_like, shape (n, p)
        Design matrix. float32 and float64 are kept as given (other dtypes are
        converted to float64); C- or Fortran-ordered arrays are used without a copy.
    y : array_like, shape (n,)
        Response.
    k : int, optional
        Maximum number of non-zeros, in ``[0, p]``. Required without
        ``groups``; with them it defaults to the sum of the caps, and a larger
        ``k`` is clipped to that sum (the largest feasible support).
    l2 : float, default 0
        Ridge strength (``>= 0``).
    w_bar : array_like, shape (p,), optional
        Ridge centre (default zeros).
    c : array_like, shape (p,), optional
        Linear term (default zeros).
    groups : array_like of int, shape (p,), optional
        Each coordinate's group id (any non-negative integers), e.g.
        ``np.arange(p) // 4`` for N:4 sparsity of consecutive coordinates.
    group_k : int, sequence or mapping, required with ``groups``
        Most non-zeros per group: one int for every group, a sequence indexed
        by group id, or a mapping ``{group id: cap}``. Caps above a group's
        size are clipped to it. Stored as given (read-only) in ``group_k``;
        the validated structure is ``group_caps``.

    Notes
    -----
    ``A`` is stored by reference and made read-only for the lifetime of the
    problem view; the caller's array is never written to.
    """

    def __init__(
        self,
        A: Any,
        y: Any,
        k: int | None = None,
        *,
        l2: float = 0.0,
        w_bar: Any = None,
        c: Any = None,
        groups: Any = None,
        group_k: Any = None,
    ) -> None:
        A = check_design(A, "A")
        n, p = A.shape
        A = A.view()
        A.setflags(write=False)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "y", _readonly(check_vector(y, "y", n)))
        caps = _group_caps(groups, group_k, p)
        if k is None and caps is None:
            raise TypeError(f"k: expected an integer in [0, {p}], got None")
        k = caps.total if k is None else check_k(k, p, "k")
        if caps is not None:
            k = min(k, caps.total)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "group_caps", caps)
        object.__setattr__(self, "groups", None if caps is None else _readonly(
            np.array(groups, dtype=np.int64)))
        object.__setattr__(self, "group_k", None if caps is None else _frozen(group_k))
        object.__setattr__(self, "l2", check_nonnegative(l2, "l2"))
        object.__setattr__(
            self, "w_bar", _readonly(check_vector(w_bar, "w_bar", p, default_zero=True))
        )
        object.__setattr__(self, "c", _readonly(check_vector(c, "c", p, default_zero=True)))
        self._check_objective_scale()

    def _check_objective_scale(self) -> None:
        # f(0) = ||y||^2 / 2 + l2 ||w_bar||^2 / 2 must be a float64: beyond
        # that no objective value (and no "converged") can be reported.
        with np.errstate(over="ignore"):
            f0 = 0.5 * self.y_sq_norm + 0.5 * self.l2 * self.w_bar_sq_norm
        if not (np.isfinite(f0) and np.isfinite(self.w_bar_sq_norm)):
            raise ValueError(
                "y/w_bar: expected data whose objective at w = 0, ||y||^2/2 + l2 ||w_bar||^2/2, "
                "and ||w_bar||^2 are finite in float64, got max |y| = "
                f"{float(np.max(np.abs(self.y))):.3g} and "
                f"max |w_bar| = {float(np.max(np.abs(self.w_bar), initial=0.0)):.3g} (overflow); "
                "divide y (and A) by a common scale"
            )

    @classmethod
    def _from_checked(
        cls, A: np.ndarray, y: np.ndarray, k: int, l2: float, w_bar: np.ndarray, c: np.ndarray,
        col_sq_norms: np.ndarray | None = None, caps_of: L0Problem | None = None,
        a_cache: dict[str, Any] | None = None,
    ) -> L0Problem:
        """Internal: a problem from parts already validated (no pass over ``A``).

        For rescaled copies of a validated problem; ``col_sq_norms`` seeds the
        cache, and the group caps of ``caps_of`` carry over (scaling the data
        does not change which supports are feasible). ``a_cache``: the
        ``_a_cache`` of a problem over this very ``A``, to share.
        """
        self = object.__new__(cls)
        A = A.view()
        A.setflags(write=False)
        for name, value in (("A", A), ("y", y), ("w_bar", w_bar), ("c", c)):
            if name != "A":
                value = _readonly(np.array(value, dtype=np.float64))
            object.__setattr__(self, name, value)
        object.__setattr__(self, "k", int(k))
        object.__setattr__(self, "l2", float(l2))
        for name in ("group_caps", "groups", "group_k"):
            object.__setattr__(self, name, None if caps_of is None else getattr(caps_of, name))
        if col_sq_norms is not None:
            self.__dict__["col_sq_norms"] = _readonly(np.array(col_sq_norms, dtype=np.float64))
        if a_cache is not None:
            self.__dict__["_a_cache"] = a_cache
        return self

    def __getstate__(self) -> dict[str, Any]:
        # the shared cache is working memory (up to an n x n matrix), not the problem
        return {key: value for key, value in self.__dict__.items() if key != "_a_cache"}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"L0Problem is immutable; cannot set {name!r} (use with_k/replace)")

    # ------------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        """Number of rows of ``A``."""
        return int(self.A.shape[0])

    @property
    def p(self) -> int:
        """Number of columns of ``A`` (coordinates of ``w``)."""
        return int(self.A.shape[1])

    @property
    def dtype(self) -> np.dtype:
        """Floating dtype of ``A`` (passes over ``A`` are done in this dtype)."""
        return self.A.dtype

    @cached_property
    def has_w_bar(self) -> bool:
        """Whether the ridge centre is non-zero."""
        return bool(np.any(self.w_bar))

    @cached_property
    def has_c(self) -> bool:
        """Whether the linear term is non-zero."""
        return bool(np.any(self.c))

    @cached_property
    def col_sq_norms(self) -> np.ndarray:
        """``||a_j||^2`` for every column, float64."""
        A = self.A
        out = np.einsum("ij,ij->j", A, A, dtype=np.float64)
        return _readonly(out)

    @cached_property
    def _a_cache(self) -> dict[str, Any]:
        """Internal: results that depend on ``A`` alone, shared by the problems over it.

        :meth:`with_l2`, :meth:`with_k` and the solvers' rescaling of ``y``
        (when ``A`` is kept) hand the same dict on, so a solve at another
        damping reuses what one at the first damping formed (the Gram of the
        starting support: ``chita_opt.solvers._refit``). Not part of the
        problem's value: never read it for anything else.
        """
        return {}

    @cached_property
    def w_bar_sq_norm(self) -> float:
        """``||w_bar||^2``."""
        return float(self.w_bar @ self.w_bar)

    @cached_property
    def y_sq_norm(self) -> float:
        """``||y||^2``."""
        return float(self.y @ self.y)

    # ------------------------------------------------------------- functions
    def residual(self, w: np.ndarray) -> np.ndarray:
        """``y - A w`` in float64, touching only the columns on the support of ``w``."""
        w = self._check_w(w)
        support = np.flatnonzero(w)
        return self.y - support_matvec(self.A, support, w[support])

    def objective(self, w: Any) -> float:
        """``f(w)`` evaluated in float64."""
        w = self._check_w(w)
        r = self.residual(w)
        return self.objective_from_residual(w, r)

    def objective_from_residual(self, w: np.ndarray, r: np.ndarray) -> float:
        """``f(w)`` given a residual ``r = y - A w`` that the caller maintains."""
        # terms that vanish are skipped, not multiplied by zero: with w near
        # 1e160 (A near 1e-160) ||w||^2 overflows and 0 * inf would be NaN
        f = 0.5 * float(r @ r)
        if self.l2:
            d = w - self.w_bar
            f += 0.5 * self.l2 * float(d @ d)
        if self.has_c:
            f += float(self.c @ w)
        return f

    def objective_on_support(
        self, support: np.ndarray, values: np.ndarray, r: np.ndarray
    ) -> float:
        """``f`` of the point equal to ``values`` on ``support`` and zero elsewhere.

        O(n + |support|): the ridge over the zero coordinates is
        ``||w_bar||^2 - ||w_bar_S||^2``, so no length-p vector is touched.
        """
        f = 0.5 * float(r @ r)
        if self.l2:
            wb = self.w_bar[support]
            d = values - wb
            f += 0.5 * self.l2 * (float(d @ d) + self.w_bar_sq_norm - float(wb @ wb))
        if self.has_c:
            f += float(self.c[support] @ values)
        return f

    def gradient(self, w: Any) -> np.ndarray:
        """``grad f(w) = -A^T (y - A w) + l2 (w - w_bar) + c`` in float64."""
        w = self._check_w(w)
        return self.gradient_from_residual(w, self.residual(w))

    def gradient_from_residual(self, w: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Gradient given the residual; one pass over ``A`` in its own dtype."""
        atr = self.A.T @ r.astype(self.dtype, copy=False)
        g = -atr.astype(np.float64, copy=False)
        if self.l2:
            g = g + self.l2 * (w - self.w_bar)
        if self.has_c:
            g = g + self.c
        return g

    def is_feasible(self, w: Any) -> bool:
        """Whether ``w`` has at most ``k`` non-zeros (and respects every group cap)."""
        support = np.flatnonzero(self._check_w(w))
        if self.group_caps is not None:
            return self.group_caps.is_feasible(support, self.k)
        return support.size <= self.k

    # ---------------------------------------------------------- derivatives
    def with_k(self, k: int) -> L0Problem:
        """The same data with a different cardinality bound: no pass over ``A``.

        Like :meth:`with_l2`, the validated arrays, the cached column norms and
        any group caps carry over (``k`` is clipped to the largest support the
        caps allow), so :func:`~chita_opt.solve_path` checks ``A`` once for all
        its ``k``.
        """
        k = check_k(k, self.p, "k")
        if self.group_caps is not None:
            k = min(k, self.group_caps.total)
        return self._same_data(k, self.l2)

    def with_l2(self, l2: float) -> L0Problem:
        """The same data with another ridge weight ``l2``: no pass over ``A``.

        The validated arrays and the cached column norms carry over (so does
        any group cap), which is what makes solving one gradient matrix at
        several dampings cheap (``l2 = n * damping`` for
        :meth:`from_gradients`).
        """
        new = self._same_data(self.k, check_nonnegative(l2, "l2"))
        new._check_objective_scale()
        return new

    def _same_data(self, k: int, l2: float) -> L0Problem:
        """``k`` and ``l2`` (already checked) on this problem's validated data."""
        return L0Problem._from_checked(self.A, self.y, k, l2, self.w_bar, self.c,
                                       self.__dict__.get("col_sq_norms"), caps_of=self,
                                       a_cache=self._a_cache)

    def replace(self, **changes: Any) -> L0Problem:
        """A new problem with some of ``A, y, k, l2, w_bar, c, groups, group_k`` replaced.

        Group caps are kept unless replaced; ``groups=None`` drops them.
        """
        allowed = {"A", "y", "k", "l2", "w_bar", "c", "groups", "group_k"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(
                f"replace: unknown fields {sorted(unknown)}; expected {sorted(allowed)}"
            )
        fields = {
            "A": self.A,
            "y": self.y,
            "k": self.k,
            "l2": self.l2,
            "w_bar": self.w_bar,
            "c": self.c,
            "groups": self.groups,
            "group_k": self.group_k,
        }
        if "groups" in changes and changes["groups"] is None and "group_k" not in changes:
            changes = {**changes, "group_k": None}
        fields.update(changes)
        A, y, k = fields.pop("A"), fields.pop("y"), fields.pop("k")
        return L0Problem(A, y, k, **fields)

    @classmethod
    def from_gradients(
        cls,
        G: Any,
        w_bar: Any,
        *,
        k: int | None = None,
        sparsity: float | None = None,
        damping: float = 1e-4,
        first_order: bool = False,
        first_order_scale: float = 1.0,
    ) -> L0Problem:
        """The CHITA pruning problem built from ``n`` gradient rows.

        The local quadratic model of the loss around the dense weights
        ``w_bar``, with empirical Fisher ``G^T G / n`` plus ``damping * I``,
        multiplied by ``n``, is

            1/2 ||G (w - w_bar)||^2 + (n damping / 2) ||w - w_bar||^2 + g_sum^T w

        i.e. this problem with ``A = G``, ``y = G w_bar``, ``l2 = n * damping``
        and, when ``first_order`` is true, ``c = first_order_scale * G^T 1`` (the
        sum of the gradient rows, ``n`` times the mean gradient).

        Parameters
        ----------
        G : array_like, shape (n, p)
            Gradient rows (per-sample or per-mini-batch), float32 or float64.
        w_bar : array_like, shape (p,)
            Current (dense) weights.
        k, sparsity : exactly one of them
            ``k`` weights kept, or the fraction pruned: ``k = p - round(sparsity * p)``.
        damping : float
            Ridge added to the empirical Fisher (``lambda`` in the paper).
        first_order : bool
            Include the linear (mean-gradient) term.
        first_order_scale : float
            Multiplier of the linear term (1 matches the Taylor model).
        """
        G = check_design(G, "G")
        n, p = G.shape
        w_bar = check_vector(w_bar, "w_bar", p)
        if (k is None) == (sparsity is None):
            raise TypeError(
                "k/sparsity: expected exactly one of k or sparsity, got "
                f"k={k!r}, sparsity={sparsity!r}"
            )
        if k is None:
            k = k_from_sparsity(p, sparsity)  # type: ignore[arg-type]
        damping = check_nonnegative(damping, "damping")
        if not isinstance(first_order, (bool, np.bool_)):
            raise TypeError(f"first_order: expected a bool, got {describe(first_order)}")
        y = support_matvec(G, np.arange(p, dtype=np.int64), w_bar)
        c = None
        if first_order:
            scale = check_nonnegative(first_order_scale, "first_order_scale")
            c = scale * G.sum(axis=0, dtype=np.float64)
        return cls(G, y, k, l2=n * damping, w_bar=w_bar, c=c)

    # ---------------------------------------------------------------- helpers
    def _check_w(self, w: Any) -> np.ndarray:
        if isinstance(w, np.ndarray) and w.dtype == np.float64 and w.shape == (self.p,):
            return w
        return check_vector(w, "w", self.p)

    def __repr__(self) -> str:
        return (
            f"L0Problem(n={self.n}, p={self.p}, k={self.k}, l2={self.l2:g}, "
            f"dtype={self.dtype}, w_bar={'set' if self.has_w_bar else 'zero'}, "
            f"c={'set' if self.has_c else 'zero'}"
            + ("" if self.group_caps is None else
               f", groups={self.group_caps.n_groups} with caps summing to {self.group_caps.total}")
            + ")"
        )


def _group_caps(groups: Any, group_k: Any, p: int) -> GroupCaps | None:
    if groups is None:
        if group_k is not None:
            raise TypeError(f"group_k: expected None without groups, got {describe(group_k)}")
        return None
    # imported here: the group-caps module lives with the solvers, which import this one
    from .solvers._group_caps import make_group_caps

    return make_group_caps(groups, group_k, p)


def _frozen(group_k: Any) -> Any:
    """``group_k`` as given, but immutable (an array read-only, a mapping a proxy of a copy)."""
    if isinstance(group_k, (int, np.integer)):
        return int(group_k)
    if hasattr(group_k, "keys"):
        return MappingProxyType({int(g): int(v) for g, v in group_k.items()})
    return _readonly(np.array(group_k, dtype=np.int64))


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr
