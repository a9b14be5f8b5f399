"""Exact solution as a mixed-integer second-order-cone program (CVXPY + SCIP).

Formulation (derivations and the conditions of the certificate are in
``docs/exact_solving.md``)::

    minimize    1/2 s + (d/2) sum_i t_i - (l2 w_bar - c + d0)^T w + K0
    subject to  s >= ||q - R w||^2                       (least squares, one cone)
                w_i^2 <= t_i z_i                          (perspective, when d > 0)
                -M z_i <= w_i <= M z_i,  z_i in {0, 1},  sum_i z_i <= k

where ``d = l2 + delta`` is the diagonal moved into the perspective term
(``delta`` is a fraction of the smallest eigenvalue of ``A^T A`` when ``n > p``,
so the perspective also tightens the plain best-subset relaxation), ``R, q``
are a factor of ``A^T A - delta I`` and the matching right-hand side, and
``K0`` collects the constants so that the objective equals f exactly.

The big-M is

* derived (valid, certificate holds) when a restricted-curvature bound
  ``eta > 0`` is known: ``l2 + lambda_min(A^T A)`` or a Gershgorin bound on the
  ``k x k`` principal submatrices; or, for ``l2 = 0`` and few supports, by
  enumerating the smallest positive eigenvalue of every ``A_S^T A_S``;
* otherwise taken from a heuristic solution with a safety factor, enlarged
  while it is active, and the result is reported as not certified.

cvxpy and pyscipopt are optional (``pip install chita_opt[mip]``) and imported
only when a problem is solved.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._validation import check_vector, describe
from ..problem import L0Problem
from ..result import Solution
from ..solvers import register
from ..solvers import solve as _solve
from ..solvers._common import Stopwatch, hard_threshold, make_solution
from ..solvers._refit import refit

__all__ = ["BigM", "derive_big_m", "solve_mip"]

logger = logging.getLogger(__name__)

#: Solvers this module knows how to drive (always passed to CVXPY explicitly).
SOLVERS = ("SCIP", "ECOS_BB")
#: Enumerate per-support curvature for the big-M only below this many supports.
_ENUMERATE_LIMIT = 200_000
#: Heuristic big-M: this many times the largest |w| of the heuristic solution.
_SAFETY = 4.0
#: Heuristic big-M: growth factor and number of re-solves while the bound is active.
_GROWTH = 10.0
_MAX_ROUNDS = 4
#: A |w_i| within this relative distance of M counts as "at the bound".
_ACTIVE_RTOL = 1e-6
#: Fraction of lambda_min(A^T A) moved into the perspective term (n > p).
_SHIFT_FRACTION = 0.9
#: Relative eigenvalue threshold (rank decisions), the same as the refit's.
_EIG_RTOL = 1e-12

#: SCIP settings. Profiling (SCIP statistics on Toeplitz instances, p = 30..60)
#: showed most of the time in components that never paid off here: the
#: aggregation (c-MIR) separator found no cuts, and the mpec / rens / alns
#: heuristics spent seconds in sub-solves while the LP relaxation found the
#: optimum. Turning them off only changes speed, never the certificate.
#: The feasibility tolerance is tightened from 1e-6 to 1e-7: with 1e-6 the
#: least-squares cone may be violated by ~1e-8 of f(0), which showed up as a
#: relative gap of 1.1e-4 on a near-perfect fit (7.9e-6 with 1e-7). 1e-8 is
#: tighter still but makes SoPlex warn when SCIP re-solves an unstable LP with
#: a 1000x tighter tolerance (below SoPlex's 1e-10 floor).
_SCIP_PARAMS: dict[str, Any] = {
    "numerics/feastol": 1e-7,
    "separating/aggregation/freq": -1,
    "heuristics/mpec/freq": -1,
    "heuristics/rens/freq": -1,
    "heuristics/alns/freq": -1,
}

_INSTALL_HINT = "install the optional extra: pip install chita_opt[mip]"


# ------------------------------------------------------------------ public API
def solve_mip(
    A: Any,
    y: Any = None,
    k: int | None = None,
    *,
    l2: float = 0.0,
    w_bar: Any = None,
    c: Any = None,
    time_limit: float | None = None,
    solver: str = "SCIP",
    warm_start: Any = None,
    verbose: bool = False,
) -> Solution:
    """Solve the L0-constrained problem exactly as a mixed-integer program.

    Parameters
    ----------
    A, y, k, l2, w_bar, c
        The problem data, or an :class:`~chita_opt.L0Problem` as ``A`` (as in
        :func:`chita_opt.solve`).
    time_limit : float, optional
        Wall-clock seconds for the MIP solver (all re-solves together). When it
        runs out the best solution found is returned with status "time_limit"
        and the solver's bound; never an exception.
    solver : {"SCIP", "ECOS_BB"}
        MIP solver, always passed to CVXPY explicitly. "SCIP" (through
        ``pyscipopt``) reports a dual bound; "ECOS_BB" (needs ``ecos``) does not,
        so its results are never reported as certified.
    warm_start : Solution or array_like (p,), optional
        A known good solution. CVXPY's SCIP interface does not pass initial
        values to SCIP, so it is used to tighten the big-M derivation and as
        the incumbent returned if the solver finds nothing better.
    verbose : bool
        Show the solver's log.

    Returns
    -------
    Solution
        ``status`` is "optimal" (certified: ``lower_bound`` and ``gap`` are
        valid for the original problem), "time_limit" (best feasible point and
        bound), "converged" (the MIP was solved but the big-M could not be
        proven valid: ``info["certified"]`` is False), "unbounded" or "error".
        ``info`` holds ``big_m``, ``big_m_source``, ``certified``,
        ``perspective``, ``shift``, ``solver_status``, ``nodes``, ``rounds``.

    Raises
    ------
    ImportError
        When cvxpy or the chosen solver is not installed.
    """
    return _solve(
        A, y, k, l2=l2, w_bar=w_bar, c=c, method="mip", time_limit=time_limit,
        solver=solver, warm_start=warm_start, verbose=verbose,
    )


@register("mip")
def solve_mip_problem(
    problem: L0Problem,
    *,
    time_limit: float | None = None,
    solver: str = "SCIP",
    warm_start: Any = None,
    verbose: bool = False,
) -> Solution:
    """Registered solver behind :func:`solve_mip` (``solve(..., method="mip")``)."""
    clock = Stopwatch()
    time_limit = _check_time_limit(time_limit)
    solver = _check_solver(solver)
    if not isinstance(verbose, (bool, np.bool_)):
        raise TypeError(f"verbose: expected a bool, got {describe(verbose)}")
    w_warm = _check_warm_start(warm_start, problem)
    cp = _import_backend(solver)

    # Incumbents: zero, the backsolve heuristic, the warm start (refit on its support).
    incumbents = _incumbents(problem, w_warm)
    for w, bounded, support in incumbents:
        if not bounded:
            return _unbounded(problem, w, support, clock)
    if problem.k == 0 or problem.k == problem.p:
        return _trivial(problem, clock)
    w_inc = min((w for w, _, _ in incumbents), key=problem.objective)
    upper = problem.objective(w_inc)

    spec = _Spectral.of(problem)
    big_m = derive_big_m(problem, upper=upper, spectral=spec, heuristic=w_inc)
    if big_m.unbounded_support is not None:
        fit = refit(problem, big_m.unbounded_support)
        return _unbounded(problem, fit.w, big_m.unbounded_support, clock)

    M = big_m.value
    rounds = 0
    outcome: _Outcome | None = None
    while True:
        rounds += 1
        remaining = None if time_limit is None else max(time_limit - clock.elapsed, 0.01)
        outcome = _solve_once(cp, problem, spec, M, solver, remaining, verbose)
        if outcome.w is None or outcome.status != "optimal" or big_m.valid:
            break
        fit = refit(problem, outcome.support)
        if not fit.bounded:
            return _unbounded(problem, fit.w, outcome.support, clock)
        active = np.max(np.abs(outcome.w)) >= (1 - _ACTIVE_RTOL) * M or np.max(
            np.abs(fit.w)
        ) > M * (1 + _ACTIVE_RTOL)
        if not active or rounds >= _MAX_ROUNDS:
            break
        if time_limit is not None and clock.elapsed >= time_limit:
            break
        logger.info("mip: big-M %.3g is active; re-solving with %.3g", M, M * _GROWTH)
        M *= _GROWTH
    assert outcome is not None
    return _finish(problem, outcome, big_m, M, rounds, incumbents, clock, solver)


# -------------------------------------------------------------------- checks
def _check_time_limit(time_limit: Any) -> float | None:
    if time_limit is None:
        return None
    if isinstance(time_limit, (bool, np.bool_)) or not isinstance(
        time_limit, (numbers.Real, np.number)
    ):
        raise TypeError(f"time_limit: expected a positive number of seconds or None, got "
                        f"{describe(time_limit)}")
    value = float(time_limit)
    if not (value > 0) or math.isnan(value):
        raise ValueError(f"time_limit: expected a positive number of seconds, got {value!r}")
    return None if math.isinf(value) else value


def _check_solver(solver: Any) -> str:
    if not isinstance(solver, str):
        raise TypeError(f"solver: expected one of {SOLVERS}, got {describe(solver)}")
    name = solver.upper()
    if name not in SOLVERS:
        raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
    return name


def _check_warm_start(warm_start: Any, problem: L0Problem) -> np.ndarray | None:
    if warm_start is None:
        return None
    if isinstance(warm_start, Solution):
        warm_start = np.asarray(warm_start.w)
    w = check_vector(warm_start, "warm_start", problem.p)
    if np.count_nonzero(w) > problem.k:
        w = hard_threshold(w, problem.k)
    return w


def _import_backend(solver: str) -> Any:
    try:
        import cvxpy as cp
    except ImportError as exc:
        raise ImportError(f"solve_mip needs cvxpy, which is not installed; {_INSTALL_HINT}") from exc
    if solver == "SCIP":
        try:
            import pyscipopt  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"solver 'SCIP' needs pyscipopt, which is not installed; {_INSTALL_HINT}"
            ) from exc
    if solver not in cp.installed_solvers():
        hint = "pip install ecos" if solver == "ECOS_BB" else _INSTALL_HINT
        raise ImportError(
            f"solver {solver!r} is not available to cvxpy (installed: {cp.installed_solvers()}); "
            f"{hint}"
        )
    return cp


# ---------------------------------------------------------------- incumbents
def _incumbents(
    problem: L0Problem, w_warm: np.ndarray | None
) -> list[tuple[np.ndarray, bool, np.ndarray]]:
    from ..solvers.backsolve import solve_backsolve

    out = [(np.zeros(problem.p), True, np.empty(0, dtype=np.int64))]
    if problem.k == 0:
        return out
    heur = solve_backsolve(problem)
    out.append((np.asarray(heur.w), heur.status != "unbounded", np.asarray(heur.support)))
    if w_warm is not None:
        support = np.flatnonzero(w_warm).astype(np.int64)
        fit = refit(problem, support)
        out.append((w_warm, True, support))
        out.append((fit.w, fit.bounded, support))
    return out


# ------------------------------------------------------------------ spectral
@dataclass(frozen=True)
class _Spectral:
    """Eigen-information of ``A^T A`` shared by the big-M and the formulation."""

    lam_min: float  # smallest eigenvalue of A^T A (0 when n < p)
    lam_max: float
    evals: np.ndarray | None  # eigen-decomposition of A^T A when n > p
    evecs: np.ndarray | None

    @classmethod
    def of(cls, problem: L0Problem) -> _Spectral:
        A = np.asarray(problem.A, dtype=np.float64)
        n, p = A.shape
        if n > p:
            evals, evecs = np.linalg.eigh(A.T @ A)
            evals = np.maximum(evals, 0.0)
            return cls(float(evals[0]), float(evals[-1]), evals, evecs)
        sig = np.linalg.svd(A, compute_uv=False)
        lam_max = float(sig[0] ** 2)
        lam_min = float(sig[-1] ** 2) if n == p else 0.0
        return cls(lam_min, lam_max, None, None)

    def reliable_lam_min(self) -> float:
        """``lambda_min(A^T A)``, or 0 when it is at rounding level."""
        tol = _EIG_RTOL * max(self.lam_max, 1.0) * 10
        return self.lam_min if self.lam_min > tol else 0.0


# --------------------------------------------------------------------- big-M
@dataclass(frozen=True)
class BigM:
    """A bound ``M`` on ``|w_i|`` and why it holds.

    ``source`` is "curvature" (valid, from a restricted-eigenvalue bound),
    "enumerated" (valid, per-support curvature by enumeration) or "heuristic"
    (a multiple of a heuristic solution: not proven). ``valid`` tells whether
    some minimiser of f is guaranteed to satisfy ``|w_i| <= M``.
    """

    value: float
    source: str
    valid: bool
    eta: float = 0.0
    unbounded_support: np.ndarray | None = None


def _level_set_radius(beta: np.ndarray | float, eta: np.ndarray | float, gap: float):
    """Largest ``t`` with ``eta/2 t^2 - beta t - gap <= 0`` (``gap = U - K``)."""
    disc = np.maximum(np.asarray(beta) ** 2 + 2.0 * np.asarray(eta) * gap, 0.0)
    return (np.asarray(beta) + np.sqrt(disc)) / np.asarray(eta)


def _gershgorin_k(H: np.ndarray, k: int) -> float:
    """Lower bound on ``lambda_min(H_SS)`` over all ``|S| = k`` (Gershgorin discs)."""
    if k <= 1:
        return float(np.min(np.diag(H)))
    off = np.abs(H)
    np.fill_diagonal(off, 0.0)
    m = min(k - 1, H.shape[0] - 1)
    largest = -np.partition(-off, m - 1, axis=1)[:, :m]
    return float(np.min(np.diag(H) - largest.sum(axis=1)))


def derive_big_m(
    problem: L0Problem,
    *,
    upper: float,
    spectral: _Spectral | None = None,
    heuristic: np.ndarray | None = None,
) -> BigM:
    """Derive ``M`` with ``|w_i| <= M`` for some minimiser (see ``docs/exact_solving.md``).

    With ``H = A^T A + l2 I``, ``b = A^T y + l2 w_bar - c`` and
    ``K = 1/2||y||^2 + (l2/2)||w_bar||^2``, ``f(w) = K - b^T w + 1/2 w^T H w``.
    If ``eta <= lambda_min(H_SS)`` for every ``|S| = k`` and ``beta`` is the norm
    of the ``k`` largest ``|b_i|``, the minimiser on the optimal support is
    ``H_SS^{-1} b_S``, of norm at most ``beta / eta``; and every ``k``-sparse
    ``w`` with ``f(w) <= upper`` satisfies ``eta/2 ||w||^2 - beta ||w|| + K -
    upper <= 0``, hence ``||w|| <= (beta + sqrt(beta^2 + 2 eta (upper - K))) /
    eta``. ``M`` is the smaller of the two.
    """
    spec = spectral if spectral is not None else _Spectral.of(problem)
    A = np.asarray(problem.A, dtype=np.float64)
    k, p, l2 = problem.k, problem.p, problem.l2
    b = A.T @ problem.y + l2 * problem.w_bar - problem.c
    K = 0.5 * problem.y_sq_norm + 0.5 * l2 * float(problem.w_bar @ problem.w_bar)
    gap = upper - K
    eta = l2 + spec.reliable_lam_min()
    if p <= 4000:  # the Gershgorin bound needs the p x p Gram matrix
        H = A.T @ A
        H[np.diag_indices_from(H)] += l2
        eta = max(eta, _gershgorin_k(H, k))
    scale = max(spec.lam_max + l2, 1e-300)
    if eta > 1e-9 * scale:
        beta = float(np.sqrt(np.sum(np.sort(b * b)[::-1][:k])))
        # Two valid bounds; the first needs no incumbent: the minimiser on a
        # support is H_SS^{-1} b_S, of norm at most ||b_S|| / eta.
        M = min(beta / eta, float(_level_set_radius(beta, eta, gap)))
        return BigM(_positive(M * (1 + 1e-6)), "curvature", True, eta)
    if l2 == 0.0 and math.comb(p, k) <= _ENUMERATE_LIMIT:
        return _enumerated_big_m(A, b, k, gap)
    # No bound can be derived: a multiple of the heuristic solution.
    ref = float(np.max(np.abs(heuristic))) if heuristic is not None and np.any(heuristic) else 0.0
    if ref == 0.0:  # nothing to scale from: the largest one-coordinate fit
        curv = np.maximum(problem.col_sq_norms + l2, 1e-300)
        ref = float(np.max(np.abs(b) / curv))
    return BigM(_positive(_SAFETY * ref), "heuristic", False, 0.0)


def _positive(M: float) -> float:
    return M if np.isfinite(M) and M > 0 else 1.0


def _enumerated_big_m(A: np.ndarray, b: np.ndarray, k: int, gap: float) -> BigM:
    """Per-support bound for ``l2 = 0``: smallest positive eigenvalue of each ``A_S^T A_S``.

    On a support the minimum-norm minimiser lies in the row space of ``A_S``,
    where f has curvature at least ``sigma_S``; the optimal support has
    ``f <= upper``, so its minimiser obeys the level-set bound with ``sigma_S``.
    """
    from .brute_force import _batches

    H = A.T @ A
    p = H.shape[0]
    M = 0.0
    for idx in _batches(p, k):
        Hs = H[idx[:, :, None], idx[:, None, :]]
        bs = b[idx]
        evals, evecs = np.linalg.eigh(Hs)
        top = np.maximum(evals[:, -1], 1.0)
        keep = evals > (top * _EIG_RTOL * k)[:, None]
        coef = np.einsum("mji,mj->mi", evecs, bs)
        outside = np.sum(np.where(keep, 0.0, coef * coef), axis=1)
        bnorm = np.sqrt(np.einsum("ij,ij->i", bs, bs))
        unb = np.sqrt(np.maximum(outside, 0.0)) > 1e-8 * np.maximum(bnorm, 1.0)
        if np.any(unb):
            return BigM(1.0, "enumerated", True, 0.0, idx[int(np.flatnonzero(unb)[0])])
        has = keep.any(axis=1)
        if not np.any(has):
            continue
        sigma = np.where(keep, evals, np.inf).min(axis=1)[has]
        beta = np.sqrt(np.sum(np.where(keep, coef * coef, 0.0), axis=1))[has]
        disc = beta**2 + 2.0 * sigma * gap
        ok = disc >= 0  # supports that cannot reach f <= upper do not matter
        if np.any(ok):
            # ||H_SS^+ b_S|| <= ||P b_S|| / sigma_S, or the level-set radius.
            radius = np.minimum(beta[ok] / sigma[ok], _level_set_radius(beta[ok], sigma[ok], gap))
            M = max(M, float(np.max(radius)))
    return BigM(_positive(M * (1 + 1e-6)), "enumerated", True, 0.0)


# --------------------------------------------------------------- formulation
@dataclass
class _Outcome:
    status: str  # "optimal", "time_limit", "error"
    w: np.ndarray | None
    support: np.ndarray
    lower_bound: float | None
    solver_status: str
    nodes: int
    message: str
    shift: float
    perspective: bool


def _least_squares_factor(problem: L0Problem, spec: _Spectral) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``R, q, delta, const`` with ``||y - A w||^2 = ||q - R w||^2 + delta ||w||^2 + const``.

    For ``n > p`` this is an eigen-factor of ``A^T A - delta I`` (fewer rows,
    and part of the diagonal goes to the perspective term); otherwise ``A, y``.
    """
    A = np.asarray(problem.A, dtype=np.float64)
    y = problem.y
    if spec.evals is None:
        return A, y, 0.0, 0.0
    evals, V = spec.evals, spec.evecs
    assert V is not None
    lam_min = spec.reliable_lam_min()
    delta = _SHIFT_FRACTION * lam_min
    keep = evals > _EIG_RTOL * max(spec.lam_max, 1.0) * evals.size
    g = V.T @ (A.T @ y)  # eigen-coordinates of A^T y
    lam = evals[keep]
    shifted = lam - delta
    R = np.sqrt(shifted)[:, None] * V[:, keep].T
    q = g[keep] / np.sqrt(shifted)
    # ||y - A w||^2 = rho^2 + ||q0 - R0 w||^2 with the unshifted factor; the
    # shift changes the constant by -sum g^2 delta / (lam (lam - delta)).
    w_ls = V[:, keep] @ (g[keep] / lam)
    r = y - A @ w_ls
    rho2 = float(r @ r)
    const = rho2 - float(np.sum(g[keep] ** 2 * delta / (lam * shifted)))
    return R, q, delta, const


def _solve_once(
    cp: Any,
    problem: L0Problem,
    spec: _Spectral,
    M: float,
    solver: str,
    time_limit: float | None,
    verbose: bool,
) -> _Outcome:
    p, k, l2 = problem.p, problem.k, problem.l2
    R, q, delta, const = _least_squares_factor(problem, spec)
    d = l2 + delta
    w = cp.Variable(p, bounds=[-M, M])
    z = cp.Variable(p, boolean=True)
    s = cp.Variable(nonneg=True)
    constraints = [
        cp.sum_squares(q - R @ w) <= s,
        w <= M * z,
        w >= -M * z,
        cp.sum(z) <= k,
    ]
    linear = problem.c - l2 * problem.w_bar
    objective = 0.5 * s + linear @ w
    perspective = d > 0
    if perspective:
        t = cp.Variable(p, nonneg=True)
        # w_i^2 <= t_i z_i as a rotated cone: ||(2 w_i, t_i - z_i)|| <= t_i + z_i.
        constraints.append(cp.SOC(t + z, cp.vstack([2 * w, t - z]), axis=0))
        objective = objective + 0.5 * d * cp.sum(t)
    # Constants kept out of CVXPY so its objective equals SCIP's (no offset).
    K0 = 0.5 * const + 0.5 * l2 * float(problem.w_bar @ problem.w_bar)
    prob = cp.Problem(cp.Minimize(objective), constraints)
    kwargs: dict[str, Any] = {"solver": solver, "verbose": bool(verbose)}
    if solver == "SCIP":
        params = dict(_SCIP_PARAMS)
        if time_limit is not None:
            params["limits/time"] = float(time_limit)
        kwargs["scip_params"] = params
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # "Solution may be inaccurate" accompanies every time-limited SCIP
            # run; the status is mapped below, so the warning adds nothing.
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(**kwargs)
    except Exception as exc:  # cvxpy.error.SolverError and friends: report, lose nothing
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            # CVXPY raises when SCIP stops on its time limit before finding
            # any solution of its own; that is a time limit, not a failure.
            return _Outcome("time_limit", None, np.empty(0, np.int64), None, "timelimit", 0,
                            f"{solver} found no solution within the time limit", delta,
                            perspective)
        logger.warning("mip: the solver failed: %s", exc)
        return _Outcome("error", None, np.empty(0, np.int64), None, "exception", 0,
                        f"{solver} failed: {exc}", delta, perspective)
    return _read_outcome(prob, w, z, K0, solver, delta, perspective)


def _read_outcome(
    prob: Any, w: Any, z: Any, K0: float, solver: str, delta: float, perspective: bool
) -> _Outcome:
    stats = getattr(prob, "solver_stats", None)
    extra = getattr(stats, "extra_stats", None) or {}
    model = extra.get("model") if isinstance(extra, dict) else None
    native = str(model.getStatus()) if model is not None else str(prob.status)
    nodes = int(model.getNNodes()) if model is not None else 0
    lower = None
    if model is not None:
        db = float(model.getDualbound())
        if np.isfinite(db):
            lower = db + K0
    if w.value is None or z.value is None:
        status = "time_limit" if native in ("timelimit", "nodelimit", "gaplimit") else "error"
        return _Outcome(status, None, np.empty(0, np.int64), lower, native, nodes,
                        f"{solver} returned no solution (status {native!r})", delta, perspective)
    w_val = np.asarray(w.value, dtype=np.float64).ravel()
    z_val = np.asarray(z.value, dtype=np.float64).ravel()
    support = np.flatnonzero(z_val > 0.5).astype(np.int64)
    if native == "optimal" or (model is None and prob.status == "optimal"):
        status = "optimal"
    elif native in ("timelimit", "nodelimit", "totalnodelimit", "gaplimit", "stallnodelimit"):
        status = "time_limit"
    else:
        status = "error"
    return _Outcome(status, w_val, support, lower, native, nodes,
                    f"{solver} status {native!r}", delta, perspective)


# --------------------------------------------------------------------- results
def _finish(
    problem: L0Problem,
    outcome: _Outcome,
    big_m: BigM,
    M: float,
    rounds: int,
    incumbents: list[tuple[np.ndarray, bool, np.ndarray]],
    clock: Stopwatch,
    solver: str,
) -> Solution:
    # The solver's support is refit exactly (its w carries tolerances); the
    # best of that and the heuristic incumbents is returned, so a time limit
    # or a solver failure never loses the starting point.
    candidates = [w for w, bounded, _ in incumbents if bounded]
    if outcome.w is not None and outcome.support.size <= problem.k:
        fit = refit(problem, outcome.support)
        if fit.bounded:
            candidates.append(fit.w)
    w_best = min(candidates, key=problem.objective)
    f_best = problem.objective(w_best)
    certified = outcome.status == "optimal" and big_m.valid and solver == "SCIP"
    bound_valid = big_m.valid and solver == "SCIP" and outcome.lower_bound is not None
    info = {
        "certified": bool(certified),
        "big_m": float(M),
        "big_m_source": big_m.source,
        "eta": float(big_m.eta),
        "perspective": bool(outcome.perspective),
        "shift": float(outcome.shift),
        "solver": solver,
        "solver_status": outcome.solver_status,
        "nodes": outcome.nodes,
        "rounds": rounds,
    }
    if outcome.lower_bound is not None and not bound_valid:
        info["box_lower_bound"] = float(min(outcome.lower_bound, f_best))
    if outcome.status == "optimal" and certified:
        status, message = "optimal", f"certified optimal by {solver} (big-M from {big_m.source})"
    elif outcome.status == "optimal":
        status = "converged"
        message = (
            f"{solver} solved the MIP with |w_i| <= M = {M:.3g}, but M comes from a heuristic "
            "solution (l2 = 0 and no restricted-curvature bound), so optimality is not "
            "certified for the unbounded problem"
        )
        if solver != "SCIP":
            message = f"{solver} reports no dual bound: optimality is not certified"
    elif outcome.status == "time_limit":
        status, message = "time_limit", f"time limit reached; {outcome.message}"
    else:
        status, message = "error", f"{outcome.message}; returning the best heuristic solution"
    sol = make_solution(
        problem, w_best, method="mip", status=status, message=message,
        n_iter=outcome.nodes, stopwatch=clock, **info,
    )
    if bound_valid:
        assert outcome.lower_bound is not None
        # The unconstrained minimum of f is also a valid bound; it is exact
        # when the sparse optimum fits perfectly (k >= n), where the solver's
        # bound only reaches f* up to its feasibility tolerance.
        relaxed = refit(problem, np.arange(problem.p, dtype=np.int64))
        lower = outcome.lower_bound
        if relaxed.bounded:
            lower = max(lower, problem.objective(relaxed.w))
        lower = float(min(lower, f_best))
        # Relative to |f|, floored at 1e-6 f(0) so that a (near-)perfect fit,
        # f ~ 0, is judged on the scale of the data (as in chita_opt.validate).
        f_zero = problem.objective(np.zeros(problem.p))
        gap = (f_best - lower) / max(abs(f_best), 1e-6 * max(abs(f_zero), 1e-300))
        sol = replace(sol, lower_bound=lower, gap=float(max(gap, 0.0)))
    return sol


def _trivial(problem: L0Problem, clock: Stopwatch) -> Solution:
    # k = 0: w = 0 is the only feasible point; k = p: the problem is convex.
    if problem.k == 0:
        w, msg = np.zeros(problem.p), "k = 0: w = 0 is the only feasible point"
    else:
        w = refit(problem, np.arange(problem.p, dtype=np.int64)).w
        msg = "k = p: the problem is convex; solved exactly on all coordinates"
    sol = make_solution(
        problem, w, method="mip", status="optimal", message=msg, stopwatch=clock,
        certified=True, big_m=float("nan"), big_m_source="none", solver_status="not called",
    )
    return replace(sol, lower_bound=sol.objective, gap=0.0)


def _unbounded(problem: L0Problem, w: np.ndarray, support: np.ndarray, clock: Stopwatch) -> Solution:
    return make_solution(
        problem, w, method="mip", status="unbounded", stopwatch=clock, certified=True,
        message=(
            f"f is unbounded below: on support {np.asarray(support).tolist()} the linear term "
            "has a component in the null space of A_S (l2 = 0)"
        ),
    )
