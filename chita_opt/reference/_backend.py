"""The MIP backends: what each can do, how to import and run it, and its status map.

A :class:`Backend` carries capability flags instead of ``solver == "SCIP"``
branches elsewhere: whether the solver reports a dual bound (without one no
result is ever certified), and whether it takes SCIP parameters. Running a
model yields an :class:`Outcome` whose ``status`` is a
:class:`~chita_opt.result.Status` mapped from the solver's native status.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._validation import describe
from ..result import Status
from ._formulation import MipModel

__all__ = ["BACKENDS", "Backend", "Outcome", "check_solver", "import_backend", "run_model"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "install the optional extra: pip install chita_opt[mip]"

#: SCIP settings. Profiling (SCIP statistics on Toeplitz instances, p = 30..60)
#: showed most of the time in components that never paid off here: the
#: aggregation (c-MIR) separator found no cuts, and the mpec / rens / alns
#: heuristics spent seconds in sub-solves while the LP relaxation found the
#: optimum. Turning them off only changes speed, never the certificate.
#: Restarts are off: after a restart SCIP's presolve can rewrite the cones so
#: that its SOC handler no longer recognises them, and it then branches on the
#: continuous variables (90 000+ nodes on a p = 6, k = 1 instance that takes
#: one node without the restart).
#: The feasibility tolerance is 1e-7 instead of 1e-6: the least-squares cone
#: is computed as a difference (q - R w) of larger numbers, so its absolute
#: tolerance is a relative error of the bound on near-perfect fits (1.4e-4 in
#: one property-test instance with 1e-6). 1e-8 is more accurate still but
#: makes SoPlex warn when SCIP re-solves an unstable LP 1000x tighter.
SCIP_PARAMS: dict[str, Any] = {
    "numerics/feastol": 1e-7,
    "presolving/maxrestarts": 0,
    "separating/aggregation/freq": -1,
    "heuristics/mpec/freq": -1,
    "heuristics/rens/freq": -1,
    "heuristics/alns/freq": -1,
}

#: SCIP's native statuses -> the package's vocabulary. "gaplimit" is the
#: absolute gap requested by :func:`run_model` (far below what is certified):
#: solved, for every purpose here. Anything not listed is an error.
NATIVE_STATUS: dict[str, Status] = {
    "optimal": Status.OPTIMAL,
    "gaplimit": Status.OPTIMAL,
    "timelimit": Status.TIME_LIMIT,
    "nodelimit": Status.TIME_LIMIT,
    "totalnodelimit": Status.TIME_LIMIT,
    "stallnodelimit": Status.TIME_LIMIT,
}


@dataclass(frozen=True)
class Backend:
    """A MIP solver reachable through CVXPY, and what it can do."""

    name: str  # CVXPY's solver name
    module: str | None  # Python module the solver needs besides cvxpy
    install_hint: str
    reports_dual_bound: bool  # without a dual bound nothing can be certified
    takes_scip_params: bool
    feastol: float = 1e-6  # its absolute feasibility tolerance on the cones
    params: dict[str, Any] = field(default_factory=dict)

    def solve_kwargs(
        self, *, verbose: bool, time_limit: float | None, absgap: float
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"solver": self.name, "verbose": bool(verbose)}
        if self.takes_scip_params:
            params = dict(self.params)
            params["limits/absgap"] = absgap
            if time_limit is not None:
                params["limits/time"] = float(time_limit)
            kwargs["scip_params"] = params
        return kwargs


BACKENDS: dict[str, Backend] = {
    "SCIP": Backend(
        "SCIP", "pyscipopt", _INSTALL_HINT, reports_dual_bound=True, takes_scip_params=True,
        feastol=float(SCIP_PARAMS["numerics/feastol"]), params=SCIP_PARAMS,
    ),
    "ECOS_BB": Backend(
        "ECOS_BB", None, "pip install ecos", reports_dual_bound=False, takes_scip_params=False,
    ),
}
#: Solvers this package knows how to drive (always passed to CVXPY explicitly).
SOLVERS = tuple(BACKENDS)


@dataclass(frozen=True)
class Outcome:
    """What one MIP solve produced (``w`` is None when the solver returned no point)."""

    status: Status  # OPTIMAL, TIME_LIMIT or ERROR
    w: np.ndarray | None
    support: np.ndarray
    lower_bound: float | None  # the solver's dual bound, in f's units
    solver_status: str
    nodes: int
    message: str
    shift: float
    perspective: bool
    scale: float = 1.0
    solver_time: float = float("nan")


def check_solver(solver: Any) -> Backend:
    if not isinstance(solver, str):
        raise TypeError(f"solver: expected one of {SOLVERS}, got {describe(solver)}")
    name = solver.upper()
    if name not in BACKENDS:
        raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
    return BACKENDS[name]


def import_backend(backend: Backend) -> Any:
    """Import cvxpy (and the solver's module); returns the cvxpy module."""
    try:
        import cvxpy as cp
    except ImportError as exc:
        raise ImportError(
            f"solve_mip needs cvxpy, which is not installed; {_INSTALL_HINT}"
        ) from exc
    if backend.module is not None:
        try:
            __import__(backend.module)
        except ImportError as exc:
            raise ImportError(
                f"solver {backend.name!r} needs {backend.module}, which is not installed; "
                f"{backend.install_hint}"
            ) from exc
    if backend.name not in cp.installed_solvers():
        raise ImportError(
            f"solver {backend.name!r} is not available to cvxpy (installed: "
            f"{cp.installed_solvers()}); {backend.install_hint}"
        )
    return cp


def _no_point(status: Status, native: str, message: str, model: MipModel, **kw: Any) -> Outcome:
    return Outcome(
        status=status, w=None, support=np.empty(0, np.int64), lower_bound=kw.pop("lower", None),
        solver_status=native, nodes=kw.pop("nodes", 0), message=message, shift=model.shift,
        perspective=model.perspective, scale=model.scale,
    )


def run_model(
    backend: Backend, model: MipModel, *, time_limit: float | None, verbose: bool, absgap: float
) -> Outcome:
    """Solve ``model``; a solver failure is reported in the outcome, never raised."""
    kwargs = backend.solve_kwargs(verbose=verbose, time_limit=time_limit, absgap=absgap)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # "Solution may be inaccurate" accompanies every time-limited SCIP
            # run; the status is mapped below, so the warning adds nothing.
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            model.prob.solve(**kwargs)
    except Exception as exc:  # cvxpy.error.SolverError and friends: report, lose nothing
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            # CVXPY raises when SCIP stops on its time limit before finding
            # any solution of its own; that is a time limit, not a failure.
            return _no_point(
                Status.TIME_LIMIT, "timelimit",
                f"{backend.name} found no solution within the time limit", model,
            )
        logger.warning("mip: the solver failed: %s", exc)
        return _no_point(Status.ERROR, "exception", f"{backend.name} failed: {exc}", model)
    return _read_outcome(backend, model)


def _read_outcome(backend: Backend, model: MipModel) -> Outcome:
    prob = model.prob
    stats = getattr(prob, "solver_stats", None)
    extra = getattr(stats, "extra_stats", None) or {}
    scip = extra.get("model") if isinstance(extra, dict) else None
    native = str(scip.getStatus()) if scip is not None else str(prob.status)
    nodes = int(scip.getNNodes()) if scip is not None else 0
    lower = None
    if scip is not None:
        db = float(scip.getDualbound())
        if np.isfinite(db):
            lower = db + model.K0
    if model.w.value is None or model.z.value is None:
        status = Status.TIME_LIMIT if native in ("timelimit", "nodelimit") else Status.ERROR
        return _no_point(
            status, native, f"{backend.name} returned no solution (status {native!r})", model,
            lower=lower, nodes=nodes,
        )
    w_val = np.asarray(model.w.value, dtype=np.float64).ravel()
    z_val = np.asarray(model.z.value, dtype=np.float64).ravel()
    support = np.flatnonzero(z_val > 0.5).astype(np.int64)
    if scip is None:  # CVXPY's own status (ECOS_BB)
        status = Status.OPTIMAL if prob.status == "optimal" else Status.ERROR
    else:
        status = NATIVE_STATUS.get(native, Status.ERROR)
    out = _no_point(status, native, f"{backend.name} status {native!r}", model,
                    lower=lower, nodes=nodes)
    return replace(
        out, w=w_val, support=support,
        solver_time=float(scip.getSolvingTime()) if scip is not None else float("nan"),
    )
