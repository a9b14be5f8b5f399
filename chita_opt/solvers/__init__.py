"""The public ``solve`` / ``solve_path`` dispatch.

Every method is listed once, in :data:`._registry.METHODS` (name, module,
capabilities, accepted options); its module is imported on first use. The
dispatcher checks option names against the function's signature so a typo is
a clear ``TypeError`` instead of being silently ignored.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .._validation import check_k, check_positive_int, describe
from ..problem import L0Problem
from ..result import Solution
from ._registry import (  # _REGISTRY: tests register stand-in methods through it
    _REGISTRY,  # noqa: F401
    METHODS,
    MethodInfo,
    SolverFn,
    available_methods,
    lookup,
    method_info,
    methods_table,
    register,
)

__all__ = ["METHODS", "MethodInfo", "available_methods", "check_options", "method_info",
           "register", "solve", "solve_path"]

_lookup = lookup  # the name other modules of the package used


def check_options(method: str, options: dict[str, Any]) -> None:
    """Raise ``TypeError`` unless ``method`` accepts every name in ``options``.

    For callers that pass options through (the pruning loop) and want the
    error before any work is done.
    """
    _check_options(method, lookup(method), options)


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
        the methods whose ``method_info(m).group_caps`` is true; others raise
        ``ValueError``.
    method : str, default "chita"
        One of :func:`available_methods` (the list below is generated from the
        registry; :func:`method_info` tells each method's capabilities and
        options):

        {methods}
    threads : int, optional
        BLAS threads during the solve (``None``: leave the process setting).
        The solvers make many small dense-linear-algebra calls; on a machine
        busy with other work, ``threads=1`` avoids OpenBLAS's thread
        synchronisation stalls (see docs/benchmarks.md).
    **options
        Method options, e.g. ``w0=``, ``support=``, ``max_iter=``, ``tol=``,
        ``random_state=``; ``method_info(method).options`` lists them and
        docs/algorithms.md says what each means. Unknown options raise ``TypeError``.

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


if solve.__doc__:  # the method list, from the registry (absent under python -OO)
    solve.__doc__ = solve.__doc__.replace(
        "{methods}", methods_table().replace("\n", "\n        ")
    )


def _check_group_caps(method: str, problem: L0Problem) -> None:
    if problem.group_caps is None:
        return
    if not method_info(method).group_caps:
        supported = [m for m in available_methods() if method_info(m).group_caps]
        raise ValueError(
            f"groups: method {method!r} does not support group caps; expected one of "
            f"{supported}, or no groups/group_k"
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
    """A cached ``ThreadpoolController``: scanning the loaded libraries on every call is dear.

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
