"""Synthetic problem generators: sparse regression and pruning-shaped (gradient-like) data.

* :func:`make_regression` follows the simulation design of Bertsimas, King and
  Mazumder (2016, "Best subset selection via a modern optimization lens") as
  extended by Hastie, Tibshirani and Tibshirani (2020, "Best subset, forward
  stepwise or lasso?"): Gaussian rows with a Toeplitz (``Sigma_ij = rho^|i-j|``)
  or equicorrelated (``Sigma = (1 - rho) I + rho 11^T``) covariance, one of five
  coefficient patterns, and noise scaled to a target signal-to-noise ratio
  ``SNR = w^T Sigma w / sigma^2``.
* :func:`make_gradient_like` produces what CHITA pruning sees: a few gradient
  rows over many weights, column scales spread over orders of magnitude
  (lognormal), correlated rows (low rank plus noise) and heavy-tailed weights.

Both are deterministic for a given ``random_state`` (an int, a
``numpy.random.Generator`` or None).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from ._validation import check_k, check_positive_int, describe
from .problem import L0Problem

__all__ = [
    "DESIGNS",
    "PATTERNS",
    "GradientData",
    "RegressionData",
    "coefficient_pattern",
    "make_gradient_like",
    "make_regression",
]

#: Covariance structures accepted by :func:`make_regression`.
DESIGNS = ("toeplitz", "equicorrelated", "independent")

#: Coefficient patterns (see :func:`coefficient_pattern`).
PATTERNS = (1, 2, 3, 4, 5)


class RegressionData(NamedTuple):
    """Output of :func:`make_regression` (a named tuple: ``A, y, w_true, noise_std = data``).

    Attributes
    ----------
    A : ndarray, shape (n, p)
        Design matrix (float64 or float32).
    y : ndarray, shape (n,)
        Response ``A w_true + noise`` (same dtype as ``A``).
    w_true : ndarray, shape (p,)
        The coefficient vector the data were generated from (float64).
    noise_std : float
        Standard deviation of the Gaussian noise.
    """

    A: np.ndarray
    y: np.ndarray
    w_true: np.ndarray
    noise_std: float

    def problem(self, k: int, *, l2: float = 0.0) -> L0Problem:
        """The best-subset problem ``min 1/2||y - A w||^2 + l2/2 ||w||^2  s.t. ||w||_0 <= k``."""
        return L0Problem(self.A, self.y, k, l2=l2)


class GradientData(NamedTuple):
    """Output of :func:`make_gradient_like` (a named tuple: ``G, w_bar = data``).

    Attributes
    ----------
    G : ndarray, shape (n, p)
        Gradient-like rows (float32 by default).
    w_bar : ndarray, shape (p,)
        Dense "pretrained" weights (float64).
    """

    G: np.ndarray
    w_bar: np.ndarray

    def problem(
        self,
        *,
        k: int | None = None,
        sparsity: float | None = None,
        damping: float = 1e-4,
        first_order: bool = False,
    ) -> L0Problem:
        """The CHITA pruning problem, via :meth:`L0Problem.from_gradients`."""
        return L0Problem.from_gradients(
            self.G, self.w_bar, k=k, sparsity=sparsity, damping=damping, first_order=first_order
        )

    def as_regression(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, y) = (G, G w_bar)``: the same problem in plain regression form."""
        y = self.G.astype(np.float64) @ self.w_bar
        return self.G, y


# --------------------------------------------------------------------- checks
def _rng(random_state: Any) -> np.random.Generator:
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(
        random_state, (bool, np.bool_)
    ):
        if int(random_state) < 0:
            raise ValueError(
                f"random_state: expected a non-negative integer, got {int(random_state)}"
            )
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state: expected None, a non-negative integer or a numpy Generator, "
        f"got {describe(random_state)}"
    )


def _check_real(value: Any, name: str, low: float, high: float, *, closed: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    value = float(value)
    lo_ok = value >= low if closed in ("both", "left") else value > low
    hi_ok = value <= high if closed in ("both", "right") else value < high
    if np.isnan(value) or not (lo_ok and hi_ok):
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        raise ValueError(
            f"{name}: expected a number in {left}{low:g}, {high:g}{right}, got {value!r}"
        )
    return value


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected float32 or float64, got {describe(dtype)}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {dt}")
    return dt


# ----------------------------------------------------------------- regression
def coefficient_pattern(p: int, s: int, pattern: int = 1) -> np.ndarray:
    """The coefficient vectors of Bertsimas-King-Mazumder / Hastie-Tibshirani-Tibshirani.

    Parameters
    ----------
    p : int
        Length of the vector.
    s : int
        Number of "strong" coefficients, in ``[0, p]``.
    pattern : {1, 2, 3, 4, 5}
        1. ``s`` ones at (rounded) equally spaced positions ``round(linspace(1, p, s)) - 1``;
        2. ones in the first ``s`` positions;
        3. the first ``s`` values equally spaced from 10 down to 0.5;
        4. the first ``s`` values equally spaced from -10 to 10, never 0:
           ``linspace(-10, 10, s)`` for even ``s`` (``s = 6``: ``-10, -6, -2,
           2, 6, 10``, BKM's Example 4), the first ``s`` entries of
           ``linspace(-10, 10, s + 1)`` for odd ``s``;
        5. ones in the first ``s`` positions, then ``0.5^(i - s)`` for ``i > s``
           (not exactly sparse: a weak, geometrically decaying tail).

    Returns
    -------
    ndarray, shape (p,), float64
    """
    p = int(check_positive_int(p, "p"))  # type: ignore[arg-type]
    s = check_k(s, p, "k")
    if isinstance(pattern, (bool, np.bool_)) or not isinstance(pattern, (numbers.Integral,)):
        raise TypeError(f"pattern: expected one of {PATTERNS}, got {describe(pattern)}")
    if int(pattern) not in PATTERNS:
        raise ValueError(f"pattern: expected one of {PATTERNS}, got {int(pattern)}")
    w = np.zeros(p)
    if s == 0 and pattern != 5:
        return w
    if pattern == 1:
        w[np.round(np.linspace(1, p, s)).astype(np.int64) - 1] = 1.0
    elif pattern == 2:
        w[:s] = 1.0
    elif pattern == 3:
        w[:s] = np.linspace(10.0, 0.5, s)
    elif pattern == 4:
        # an odd-length grid would put a zero in the middle: s strong values are wanted
        w[:s] = np.linspace(-10.0, 10.0, s) if s % 2 == 0 else np.linspace(-10.0, 10.0, s + 1)[:s]
    else:
        w[:s] = 1.0
        w[s:] = 0.5 ** np.arange(1, p - s + 1)
    return w


def _toeplitz_rows(rng: np.random.Generator, n: int, p: int, rho: float) -> np.ndarray:
    # A stationary AR(1) process along the columns has exactly the covariance
    # rho^|i-j| with unit variances; O(np) instead of a p x p square root.
    X = rng.standard_normal((n, p))
    scale = np.sqrt(1.0 - rho * rho)
    for j in range(1, p):
        X[:, j] = rho * X[:, j - 1] + scale * X[:, j]
    return X


def _equicorrelated_rows(rng: np.random.Generator, n: int, p: int, rho: float) -> np.ndarray:
    # x = sqrt(1 - rho) e + sqrt(rho) g 1: unit variances, pairwise correlation rho.
    X = rng.standard_normal((n, p)) * np.sqrt(1.0 - rho)
    X += np.sqrt(rho) * rng.standard_normal((n, 1))
    return X


def _covariance_quadratic_form(w: np.ndarray, design: str, rho: float) -> float:
    """``w^T Sigma w`` without forming Sigma (O(p) for both structures)."""
    if design == "independent" or rho == 0.0:
        return float(w @ w)
    if design == "equicorrelated":
        return float((1.0 - rho) * (w @ w) + rho * w.sum() ** 2)
    # Toeplitz: Sigma w is the AR(1) filter applied forwards and backwards.
    p = w.size
    fwd = np.empty(p)
    bwd = np.empty(p)
    acc = 0.0
    for i in range(p):
        acc = rho * acc + w[i]
        fwd[i] = acc
    acc = 0.0
    for i in range(p - 1, -1, -1):
        acc = rho * acc + w[i]
        bwd[i] = acc
    sigma_w = fwd + bwd - w
    return float(w @ sigma_w)


def make_regression(
    n: int,
    p: int,
    k: int,
    *,
    design: str = "toeplitz",
    rho: float = 0.5,
    pattern: int = 1,
    snr: float = 5.0,
    normalize: bool = False,
    dtype: Any = np.float64,
    random_state: Any = None,
) -> RegressionData:
    """Sparse linear-regression data ``y = A w_true + noise``.

    Parameters
    ----------
    n, p : int
        Number of rows and columns.
    k : int
        Number of strong coefficients in ``w_true`` (``s`` in the papers), in ``[0, p]``.
    design : {"toeplitz", "equicorrelated", "independent"}
        Covariance of the rows: ``rho^|i-j|``, ``(1 - rho) I + rho 11^T``, or ``I``.
    rho : float
        Correlation parameter: in ``(-1, 1)`` for Toeplitz, in ``[0, 1)`` for
        equicorrelated; ignored for "independent".
    pattern : {1, 2, 3, 4, 5}
        Coefficient pattern, see :func:`coefficient_pattern`.
    snr : float
        Signal-to-noise ratio ``w_true^T Sigma w_true / noise_std^2`` (population
        version, as in the papers); ``numpy.inf`` gives noiseless data.
    normalize : bool
        Scale the columns of ``A`` to unit Euclidean norm (``w_true`` is rescaled
        so that ``A w_true`` is unchanged).
    dtype : float64 or float32
        dtype of ``A`` and ``y`` (the data are generated in float64 and cast).
    random_state : int, numpy.random.Generator or None
        Seed; the same seed always gives the same data.

    Returns
    -------
    RegressionData
        Named tuple ``(A, y, w_true, noise_std)``; ``data.problem(k)`` builds the
        matching :class:`~chita_opt.L0Problem`.
    """
    n = int(check_positive_int(n, "n"))  # type: ignore[arg-type]
    p = int(check_positive_int(p, "p"))  # type: ignore[arg-type]
    k = check_k(k, p, "k")
    if not isinstance(design, str) or design not in DESIGNS:
        raise ValueError(f"design: expected one of {DESIGNS}, got {design!r}")
    if design == "toeplitz":
        rho = _check_real(rho, "rho", -1.0, 1.0, closed="neither")
    elif design == "equicorrelated":
        rho = _check_real(rho, "rho", 0.0, 1.0, closed="left")
    else:
        rho = 0.0
    snr = _check_real(snr, "snr", 0.0, np.inf, closed="right")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize: expected a bool, got {describe(normalize)}")
    dt = _check_dtype(dtype)
    w_true = coefficient_pattern(p, k, pattern)
    rng = _rng(random_state)

    if design == "toeplitz" and rho != 0.0:
        X = _toeplitz_rows(rng, n, p, rho)
    elif design == "equicorrelated" and rho != 0.0:
        X = _equicorrelated_rows(rng, n, p, rho)
    else:
        X = rng.standard_normal((n, p))
    signal_var = _covariance_quadratic_form(w_true, design, rho)
    noise_std = float(np.sqrt(signal_var / snr)) if np.isfinite(snr) else 0.0
    y = X @ w_true + noise_std * rng.standard_normal(n)
    if normalize:
        norms = np.linalg.norm(X, axis=0)
        norms[norms == 0] = 1.0
        X /= norms
        w_true = w_true * norms
    return RegressionData(X.astype(dt, copy=False), y.astype(dt), w_true, noise_std)


# -------------------------------------------------------------- gradient-like
def make_gradient_like(
    n: int,
    p: int,
    *,
    rank: int = 8,
    scale_spread: float = 1.5,
    noise: float = 0.5,
    weight_df: float = 3.0,
    dtype: Any = np.float32,
    random_state: Any = None,
) -> GradientData:
    """Pruning-shaped data: ``n`` gradient rows over ``p`` weights, usually ``n << p``.

    Row ``i`` is ``G_i = (u_i^T V + noise * e_i) * s``: a low-rank part shared by
    all rows (per-sample gradients of a network are strongly correlated), an
    isotropic part, and per-column scales ``s_j = exp(scale_spread * xi_j) /
    median`` with ``xi_j`` standard normal, so column norms spread over orders
    of magnitude (a lognormal, heavy right tail) as they do across the layers
    of a network. The weights ``w_bar`` are Student-t with ``weight_df`` degrees
    of freedom (heavy tails, like trained weights), scaled by ``0.05``.

    Parameters
    ----------
    n, p : int
        Number of gradient rows and of weights.
    rank : int
        Rank of the shared component (clipped to ``min(n, p)``).
    scale_spread : float
        Standard deviation of ``log s_j`` (0 gives equal column scales).
    noise : float
        Relative size of the isotropic part (``>= 0``).
    weight_df : float
        Degrees of freedom of the weights' Student-t law (``> 0``; smaller is heavier).
    dtype : float32 or float64
        dtype of ``G`` (generated in float64, then cast).
    random_state : int, numpy.random.Generator or None
        Seed; the same seed always gives the same data.

    Returns
    -------
    GradientData
        Named tuple ``(G, w_bar)``; ``data.problem(sparsity=0.9)`` builds the
        CHITA problem and ``data.as_regression()`` returns ``(A, y) = (G, G w_bar)``.
    """
    n = int(check_positive_int(n, "n"))  # type: ignore[arg-type]
    p = int(check_positive_int(p, "p"))  # type: ignore[arg-type]
    rank = int(check_positive_int(rank, "rank"))  # type: ignore[arg-type]
    scale_spread = _check_real(scale_spread, "scale_spread", 0.0, np.inf, closed="left")
    noise = _check_real(noise, "noise", 0.0, np.inf, closed="left")
    weight_df = _check_real(weight_df, "weight_df", 0.0, np.inf, closed="neither")
    dt = _check_dtype(dtype)
    rng = _rng(random_state)
    r = min(rank, n, p)
    U = rng.standard_normal((n, r))
    V = rng.standard_normal((r, p)) / np.sqrt(r)
    G = U @ V
    G += noise * rng.standard_normal((n, p))
    log_s = scale_spread * rng.standard_normal(p)
    scales = np.exp(log_s - np.median(log_s))
    G *= scales
    w_bar = 0.05 * rng.standard_t(weight_df, size=p)
    return GradientData(G.astype(dt, copy=False), w_bar)
