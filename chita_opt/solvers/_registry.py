"""The one list of methods, with what callers need to know without importing them.

Adding a solver is one module that decorates its function with
``@register("name")`` plus one :class:`MethodInfo` line in ``METHODS``. Modules
are imported on first use, so asking what a method accepts never imports
cvxpy (the MIP) or compiles Numba kernels.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._validation import describe
from ..result import Solution

__all__ = ["METHODS", "MethodInfo", "available_methods", "lookup", "method_info", "register"]

SolverFn = Callable[..., Solution]

# Functions registered by imported modules (tests may add stand-ins here).
_REGISTRY: dict[str, SolverFn] = {}


@dataclass(frozen=True)
class MethodInfo:
    """What a method is and accepts, known without importing its module.

    Attributes
    ----------
    name, module, summary
        The ``method=`` name, the module that registers it, a one-line description.
    needs_design : bool
        Whether the method reads ``A`` (for pruning: the gradients). ``magnitude``
        ranks by ``|w_bar|`` and does not, so a pruning loop can skip computing
        gradients for it.
    exact : bool
        Whether the method certifies global optimality (status ``"optimal"``).
    warm_start : bool
        Whether it accepts ``w0=`` / ``support=``.
    options : frozenset of str
        Every keyword option accepted (deprecated aliases included).
    deprecated : tuple of (old, new) pairs
        Old option names still accepted with a ``DeprecationWarning``.
    group_caps : bool
        Whether it honours per-group cardinality caps (``groups`` / ``group_k``).
    """

    name: str
    module: str
    summary: str
    needs_design: bool = True
    exact: bool = False
    warm_start: bool = False
    options: frozenset[str] = frozenset()
    deprecated: tuple[tuple[str, str], ...] = ()
    group_caps: bool = False

    @property
    def needs_gradients(self) -> bool:
        """Alias of ``needs_design`` in pruning terms (``A`` is the gradient matrix)."""
        return self.needs_design

    def accepts(self, option: str) -> bool:
        """Whether ``solve(..., method=self.name, **{option: ...})`` is valid."""
        return option in self.options


def _opts(*names: str) -> frozenset[str]:
    return frozenset(names)


_WARM = ("w0", "support")
_ITERATIVE = (*_WARM, "tol", "random_state")

METHODS: tuple[MethodInfo, ...] = (
    MethodInfo(
        "magnitude", "chita_opt.solvers.magnitude",
        "keep the k largest |w_bar| (or |w0|) at their values", needs_design=False,
        warm_start=True, options=_opts("w0"),
        group_caps=True,
    ),
    MethodInfo(
        "backsolve", "chita_opt.solvers.backsolve",
        "exact refit on the magnitude support (or a given one)", warm_start=True,
        options=_opts(*_WARM),
        group_caps=True,
    ),
    MethodInfo(
        "iht", "chita_opt.solvers.iht",
        "iterative hard thresholding with CHITA's step-size search", warm_start=True,
        options=_opts(*_ITERATIVE, "max_iter", "refit_after", "lipschitz"),
        group_caps=True,
    ),
    MethodInfo(
        "active_set", "chita_opt.solvers.active_set",
        "IHT on a working set of about 1.5 k columns, coordinate descent on the support",
        warm_start=True,
        options=_opts(*_ITERATIVE, "max_rounds", "max_iter", "ws_factor", "inner_max_iter",
                      "cd_sweeps"),
        deprecated=(("max_iter", "max_rounds"),),
        group_caps=True,
    ),
    MethodInfo(
        "swap", "chita_opt.solvers.swap",
        "swap local search: best single swaps, scored exactly, until none lowers f",
        warm_start=True,
        options=_opts(*_WARM, "tol", "max_swaps", "swap_candidates", "max_iter", "candidates"),
        deprecated=(("max_iter", "max_swaps"), ("candidates", "swap_candidates")),
        group_caps=True,
    ),
    MethodInfo(
        "chita", "chita_opt.solvers.chita",
        "active set, swap search and restarts, ending on an exact refit (the default)",
        warm_start=True,
        options=_opts(*_ITERATIVE, "max_rounds", "max_iter", "restarts", "ws_factor",
                      "swap_candidates", "max_swaps", "ils_iters"),
        deprecated=(("max_iter", "max_rounds"),),
        group_caps=True,
    ),
    MethodInfo(
        "brute_force", "chita_opt.reference.brute_force",
        "enumerate every support (tiny p); certifies optimality", exact=True,
        options=_opts("max_supports"),
        group_caps=True,
    ),
    MethodInfo(
        "mip", "chita_opt.reference.mip",
        "mixed-integer QP through CVXPY/SCIP; certifies optimality with a gap", exact=True,
        options=_opts("time_limit", "solver", "warm_start", "verbose"),
        group_caps=True,
    ),
)

_INFO: dict[str, MethodInfo] = {m.name: m for m in METHODS}


def register(name: str) -> Callable[[SolverFn], SolverFn]:
    """Decorator registering a solver function under ``name`` (listed in ``METHODS``)."""

    def deco(fn: SolverFn) -> SolverFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def available_methods() -> list[str]:
    """Names accepted by ``solve(..., method=...)``, sorted."""
    return sorted(set(_REGISTRY) | set(_INFO))


def method_info(name: Any) -> MethodInfo:
    """The :class:`MethodInfo` of a method, without importing its module."""
    if not isinstance(name, str):
        raise TypeError(f"method: expected one of {available_methods()}, got {describe(name)}")
    if name in _INFO:
        return _INFO[name]
    if name in _REGISTRY:  # registered at run time without a METHODS entry (tests, plugins)
        return _info_from_signature(name, _REGISTRY[name])
    raise ValueError(f"method: expected one of {available_methods()}, got {name!r}")


def _info_from_signature(name: str, fn: SolverFn) -> MethodInfo:
    """What can be read off a solver function: its options; the flags take their defaults."""
    import inspect

    options = frozenset(
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )
    return MethodInfo(name, fn.__module__, "registered at run time", options=options,
                      warm_start="w0" in options)


def lookup(method: Any) -> SolverFn:
    """The solver function of ``method``, importing its module on first use."""
    if isinstance(method, str) and method in _REGISTRY:
        return _REGISTRY[method]
    info = method_info(method)
    importlib.import_module(info.module)
    return _REGISTRY[info.name]


def methods_table() -> str:
    """One line per method (``name: summary``), for docstrings and ``--help`` texts."""
    return "\n".join(f"``{m.name}``: {m.summary}" for m in METHODS)
