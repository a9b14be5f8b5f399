"""Input checks shared by every public entry point.

Every check raises ``TypeError`` or ``ValueError`` whose message names the
argument, says what was expected and what was received, so users never meet a
crash inside a Numba kernel or a silently wrong answer.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_design",
    "check_int",
    "check_k",
    "check_nonnegative",
    "check_positive_int",
    "check_random_state",
    "check_real",
    "check_sparsity",
    "check_support",
    "check_vector",
    "describe",
]

_FLOAT_DTYPES = (np.float32, np.float64)


def describe(value: Any) -> str:
    """Short human description of a received value for error messages."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _as_float_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name}: expected a numeric array, got {describe(value)}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise TypeError(f"{name}: expected a numeric array, got {describe(value)}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name}: expected a numeric array, got {describe(value)}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: expected a real-valued array, got {describe(value)}")
    return arr


_FINITE_CHUNK = 1 << 20  # elements checked at a time


def _all_finite(arr: np.ndarray) -> bool:
    # By chunks of a flat view: a whole-array isfinite would allocate a
    # boolean copy a quarter the size of a float32 gradient matrix.
    flat = arr.reshape(-1, order="A")  # a view for C- or F-contiguous arrays
    return all(
        bool(np.isfinite(flat[i : i + _FINITE_CHUNK]).all())
        for i in range(0, flat.size, _FINITE_CHUNK)
    )


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not _all_finite(arr):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_nan} NaN and {n_inf} Inf entries"
        )


def check_design(A: Any, name: str = "A") -> np.ndarray:
    """Validate a design matrix; keep float32/float64 (and C/F order) untouched."""
    arr = _as_float_array(A, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n x p), got {arr.ndim}-D {describe(arr)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty matrix, got shape {arr.shape}")
    if arr.dtype not in _FLOAT_DTYPES:
        arr = arr.astype(np.float64)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    _check_finite(arr, name)
    return arr


def check_vector(
    value: Any, name: str, length: int, *, dtype: Any = np.float64, default_zero: bool = False
) -> np.ndarray:
    """Validate a 1-D float vector of a given length (``None`` -> zeros if allowed)."""
    if value is None:
        if default_zero:
            return np.zeros(length, dtype=dtype)
        raise TypeError(f"{name}: expected an array of length {length}, got None")
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and np.ndim(value) == 0:
        raise ValueError(f"{name}: expected a 1-D array of length {length}, got scalar {value!r}")
    arr = _as_float_array(value, name)
    if arr.ndim == 2 and 1 in arr.shape:
        raise ValueError(
            f"{name}: expected a 1-D array of length {length}, got 2-D {describe(arr)}; "
            "flatten it with .ravel()"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of length {length}, got {describe(arr)}")
    if arr.shape[0] != length:
        raise ValueError(f"{name}: expected length {length}, got length {arr.shape[0]}")
    arr = np.array(arr, dtype=dtype, copy=True)
    _check_finite(arr, name)
    return arr


def check_k(k: Any, p: int, name: str = "k") -> int:
    """Validate the cardinality bound: an integer in [0, p]."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (numbers.Integral, np.integer)):
        if isinstance(k, (float, np.floating)) and float(k).is_integer():
            raise TypeError(
                f"{name}: expected an integer in [0, {p}], got float {k!r}; pass int({k!r})"
            )
        raise TypeError(f"{name}: expected an integer in [0, {p}], got {describe(k)}")
    k = int(k)
    if k < 0 or k > p:
        raise ValueError(f"{name}: expected an integer in [0, {p}], got {k}")
    return k


def check_nonnegative(value: Any, name: str) -> float:
    """Validate a finite non-negative real scalar."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a non-negative real number, got {describe(value)}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite non-negative number, got {value!r}")
    return value


def check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """Validate a strictly positive integer (``None`` allowed when asked)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected a positive integer, got {describe(value)}")
    if int(value) <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {int(value)}")
    return int(value)


def check_sparsity(value: Any, name: str = "sparsity") -> float:
    """Validate a sparsity level in [0, 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name}: expected a number in [0, 1), got {describe(value)}")
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return value


def check_support(support: Any, p: int, name: str = "support", k: int | None = None) -> np.ndarray:
    """Validate a set of column indices (or a boolean mask of length p).

    Returns the sorted unique indices as int64.
    """
    arr = np.asarray(support)
    if arr.dtype == np.bool_:
        if arr.shape != (p,):
            raise ValueError(f"{name}: expected a boolean mask of length {p}, got {describe(arr)}")
        idx = np.flatnonzero(arr)
    else:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name}: expected integer indices, got {describe(arr)}")
        if arr.ndim > 1:
            raise ValueError(f"{name}: expected a 1-D array of indices, got {describe(arr)}")
        idx = arr.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= p):
            raise ValueError(
                f"{name}: expected indices in [0, {p - 1}], got range "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        uniq = np.unique(idx)
        if uniq.size != idx.size:
            repeats = idx.size - uniq.size
            raise ValueError(f"{name}: expected distinct indices, got {repeats} repeats")
        idx = uniq
    if k is not None and idx.size > k:
        raise ValueError(f"{name}: expected at most k={k} indices, got {idx.size}")
    return np.sort(idx).astype(np.int64)


def _is_real_scalar(value: Any) -> bool:
    # numpy integer/float scalars count (np.int64(1) is not a Python int)
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (numbers.Real, np.integer, np.floating)
    )


def check_int(
    value: Any, name: str, *, minimum: int = 0, allow_none: bool = False
) -> int | None:
    """Validate an integer ``>= minimum`` (Python or numpy integer; floats are refused)."""
    if value is None and allow_none:
        return None
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}"
    )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected {what}, got {describe(value)}")
    if int(value) < minimum:
        raise ValueError(f"{name}: expected {what}, got {int(value)}")
    return int(value)


def check_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    strict: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Validate a finite real scalar (Python or numpy), ``> minimum`` if ``strict`` else ``>=``."""
    if value is None and allow_none:
        return None
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    if not _is_real_scalar(value):
        raise TypeError(f"{name}: expected a finite real number{bound}, got {describe(value)}")
    out = float(value)
    too_small = minimum is not None and (out <= minimum if strict else out < minimum)
    if not np.isfinite(out) or too_small:
        raise ValueError(f"{name}: expected a finite real number{bound}, got {out!r}")
    return out


def check_random_state(value: Any, name: str = "random_state") -> int | None:
    """Validate a seed: None or a non-negative integer (what ``numpy.random.default_rng`` takes).

    Generators are refused on purpose: a solve must be reproducible from its arguments.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(
            f"{name}: expected None or a non-negative integer seed, got {describe(value)}"
        )
    if int(value) < 0:
        raise ValueError(f"{name}: expected None or a non-negative integer seed, got {int(value)}")
    return int(value)
