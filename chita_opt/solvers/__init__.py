"""Method registry and the public ``solve`` / ``solve_path`` dispatch.

Each method lives in its own module and registers a function
``fn(problem: L0Problem, *, <keyword options>) -> Solution``. The dispatcher
checks option names against the function's signature so a typo is a clear
``TypeError`` instead of being silently ignored.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_k, check_positive_int, describe
from ..problem import L0Problem
from ..result import Solution

__all__ = ["available_methods", "register", "solve", "solve_path"]

SolverFn = Callable[..., Solution]

_REGISTRY: dict[str, SolverFn] = {}

# Methods whose modules are imported on first use (kept lazy so that, e.g.,
# the MIP reference does not import cvxpy until asked for).
_LAZY_MODULES: dict[str, str] = {
    "magnitude": "chita_opt.solvers.magnitude",
    "backsolve": "chita_opt.solvers.backsolve",
    "iht": "chita_opt.solvers.iht",
    "active_set": "chita_opt.solvers.active_set",
    "swap": "chita_opt.solvers.swap",
    "chita": "chita_opt.solvers.chita",
    "mip": "chita_opt.reference.mip",
    "brute_force": "chita_opt.reference.brute_force",
}


def register(name: str) -> Callable[[SolverFn], SolverFn]:
    """Decorator registering a solver function under ``name``."""

    def deco(fn: SolverFn) -> SolverFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def available_methods() -> list[str]:
    """Names accepted by ``solve(..., method=...)``."""
    return sorted(set(_REGISTRY) | set(_LAZY_MODULES))


@dataclass(frozen=True)
class MethodInfo:
    """What the pruning loop needs to know about a method (provisional)."""

    name: str
    needs_design: bool
    warm_start: bool
    options: frozenset[str]


def method_info(name: str) -> MethodInfo:
    """Capabilities of a method, read from its solver function."""
    import inspect

    fn = _lookup(name)
    opts = frozenset(
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )
    return MethodInfo(name, name != "magnitude", "w0" in opts, opts)


def _lookup(method: Any) -> SolverFn:
    if not isinstance(method, str):
        raise TypeError(
            f"method: expected one of {available_methods()}, got {describe(method)}"
        )
    if method not in _REGISTRY and method in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[method])
    if method not in _REGISTRY:
        raise ValueError(f"method: expected one of {available_methods()}, got {method!r}")
    return _REGISTRY[method]


def _check_options(method: str, fn: SolverFn, options: dict[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = sorted(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"method {method!r} does not accept option(s) {unknown}; accepted options: {accepted}"
        )


def solve(
    A: Any,
    y: Any = None,
    k: int | None = None,
    *,
    l2: float = 0.0,
    w_bar: Any = None,
    c: Any = None,
    groups: Any = None,
    group_k: Any = None,
    method: str = "chita",
    threads: int | None = None,
    **options: Any,
) -> Solution:
    """Solve ``min 1/2||y - A w||^2 + l2/2 ||w - w_bar||^2 + c^T w  s.t. ||w||_0 <= k``.

    Parameters
    ----------
    A : array_like (n, p) or L0Problem
        Design matrix, or an already validated :class:`~chita_opt.L0Problem`
        (then ``y``, ``k``, ``l2``, ``w_bar`` and ``c`` must not be given).
    y : array_like (n,)
        Response.
    k : int, optional
        Maximum number of non-zeros (required without ``groups``; with them
        the default is the sum of the caps).
    l2, w_bar, c
        Ridge strength, ridge centre and linear term (see :class:`L0Problem`).
    groups, group_k
        Group caps: ``groups[j]`` is coordinate j's group id, ``group_k`` the
        most non-zeros per group (an int, or one per group id), e.g.
        ``groups=np.arange(p) // 4, group_k=2`` for 2:4 sparsity. Supported by
        the methods in ``chita_opt.solvers._group_caps.GROUP_CAP_METHODS``;
        others raise ``ValueError``.
    method : str, default "chita"
        One of :func:`available_methods`: ``"magnitude"``, ``"backsolve"``,
        ``"iht"``, ``"active_set"``, ``"swap"``, ``"chita"``, ``"mip"``,
        ``"brute_force"``.
    threads : int, optional
        BLAS threads during the solve (``None``: leave the process setting).
        The solvers make many small dense-linear-algebra calls; on a machine
        busy with other work, ``threads=1`` avoids OpenBLAS's thread
        synchronisation stalls (measured: 0.46 s instead of 8 s for one solve
        on a loaded 2-core machine; see docs/benchmarks.md).
    **options
        Method options, e.g. ``w0=``, ``support=``, ``max_iter=``, ``tol=``,
        ``random_state=``. Unknown options raise ``TypeError``.

    Returns
    -------
    Solution
    """
    if isinstance(A, L0Problem):
        problem = A
        given = {
            "y": y is not None,
            "k": k is not None,
            "l2": l2 != 0.0,
            "w_bar": w_bar is not None,
            "c": c is not None,
            "groups": groups is not None,
            "group_k": group_k is not None,
        }
        extra = [name for name, was_given in given.items() if was_given]
        if extra:
            raise TypeError(
                f"{', '.join(extra)}: expected nothing besides an L0Problem (it already holds "
                f"the data), got values for {extra}; use problem.replace(...) to change them"
            )
    else:
        if y is None:
            raise TypeError("y: expected an array of length n, got None")
        if k is None and groups is None:
            raise TypeError("k: expected an integer in [0, p], got None")
        problem = L0Problem(A, y, k, l2=l2, w_bar=w_bar, c=c, groups=groups, group_k=group_k)
    fn = _lookup(method)
    _check_options(method, fn, options)
    _check_group_caps(method, problem)
    with blas_threads(threads):
        return fn(problem, **options)


def _check_group_caps(method: str, problem: L0Problem) -> None:
    if problem.group_caps is None:
        return
    from ._group_caps import GROUP_CAP_METHODS

    if method not in GROUP_CAP_METHODS:
        raise ValueError(
            f"groups: method {method!r} does not support group caps; expected one of "
            f"{sorted(GROUP_CAP_METHODS)}, or no groups/group_k"
        )


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS threads inside the block (no-op for ``None``)."""
    if threads is None:
        yield
        return
    check_positive_int(threads, "threads")
    with _controller().limit(limits=int(threads), user_api="blas"):
        yield


_CONTROLLER: list[Any] = []  # [controller, len(sys.modules) when it scanned]


def _controller() -> Any:
    """A cached ``ThreadpoolController``: scanning the loaded libraries costs ~1 ms a call.

    Rescanned whenever modules were imported since the last scan, since an
    import (torch, say) may load another BLAS.
    """
    import sys

    from threadpoolctl import ThreadpoolController

    n_modules = len(sys.modules)
    if not _CONTROLLER or _CONTROLLER[1] != n_modules:
        _CONTROLLER[:] = [ThreadpoolController(), len(sys.modules)]
    return _CONTROLLER[0]


def solve_path(
    A: Any,
    y: Any = None,
    ks: Iterable[int] | None = None,
    *,
    l2: float = 0.0,
    w_bar: Any = None,
    c: Any = None,
    groups: Any = None,
    group_k: Any = None,
    method: str = "chita",
    threads: int | None = None,
    **options: Any,
) -> list[Solution]:
    """Solve for several values of ``k``, warm-starting each from its neighbour.

    The ``ks`` are solved in increasing order; each solve starts from the
    previous solution (whose support has fewer than ``k`` entries, so it is a
    feasible start). The returned list follows the order of ``ks`` as given.
    """
    if isinstance(A, L0Problem):
        base = A
        if ks is None:  # solve_path(problem, ks)
            ks, y = y, None
        if y is not None:
            raise TypeError("y: expected nothing besides an L0Problem, got a value")
        if groups is not None or group_k is not None:
            raise TypeError("groups/group_k: expected nothing besides an L0Problem (it holds "
                            "the caps), got values; use problem.replace(groups=..., group_k=...)")
    else:
        if y is None:
            raise TypeError("y: expected an array of length n, got None")
        base = L0Problem(A, y, 0, l2=l2, w_bar=w_bar, c=c, groups=groups, group_k=group_k)
    if ks is None:
        raise TypeError("ks: expected a sequence of integers, got None")
    if isinstance(ks, (int, np.integer)):
        raise TypeError(f"ks: expected a sequence of integers, got {describe(ks)}")
    ks_list: Sequence[int] = [check_k(k, base.p, "ks") for k in ks]
    if not ks_list:
        raise ValueError("ks: expected at least one value, got an empty sequence")
    fn = _lookup(method)
    _check_options(method, fn, options)
    _check_group_caps(method, base)
    accepts_w0 = "w0" in inspect.signature(fn).parameters
    if "w0" in options or "support" in options:
        raise TypeError("w0/support: solve_path chains warm starts itself; do not pass them")
    results: dict[int, Solution] = {}
    previous: Solution | None = None
    with blas_threads(threads):
        for k in sorted(set(ks_list)):
            extra = dict(options)
            if previous is not None and accepts_w0:
                extra["w0"] = np.asarray(previous.w)
            sol = fn(base.with_k(k), **extra)
            results[k] = sol
            previous = sol
    return [results[k] for k in ks_list]
