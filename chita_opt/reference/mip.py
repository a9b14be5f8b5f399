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
from ..solvers._common import Stopwatch, hard_threshold, make_solution, top_k
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
#: The least-squares cone is scaled to the incumbent's residual, but never to
#: less than this fraction of ||q||^2 (coefficients grow like 1/sqrt of it).
_SCALE_FLOOR = 1e-4
#: SCIP stops at this absolute gap, relative to the incumbent's |f|.
_ABS_GAP = 1e-7
#: Largest relative gap (after the exact refit) reported as certified optimal.
_CERTIFY_GAP = 1e-4
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
#: Restarts are off: after a restart SCIP's presolve can rewrite the cones so
#: that its SOC handler no longer recognises them, and it then branches on the
#: continuous variables (90 000+ nodes on a p = 6, k = 1 instance that takes
#: one node without the restart).
#: The feasibility tolerance is 1e-7 instead of 1e-6: the least-squares cone
#: is computed as a difference (q - R w) of larger numbers, so its absolute
#: tolerance is a relative error of the bound on near-perfect fits (1.4e-4 in
#: one property-test instance with 1e-6). 1e-8 is more accurate still but
#: makes SoPlex warn when SCIP re-solves an unstable LP 1000x tighter.
_SCIP_PARAMS: dict[str, Any] = {
    "numerics/feastol": 1e-7,
    "presolving/maxrestarts": 0,
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
        ``perspective``, ``shift``, ``solver_status``, ``nodes``, ``rounds``,
        ``tolerance_slack`` (how far SCIP's bound may sit below the optimum
        through its feasibility tolerance; a gap within it still certifies).

    Raises
    ------
    ImportError
        When cvxpy or the chosen solver is not installed.
    """
    return _solve(
        A,
        y,
        k,
        l2=l2,
        w_bar=w_bar,
        c=c,
        method="mip",
        time_limit=time_limit,
        solver=solver,
        warm_start=warm_start,
        verbose=verbose,
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
    form = _Formulation.of(problem, spec)
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
        outcome = _solve_once(cp, problem, form, w_inc, M, solver, remaining, verbose)
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
    outcome = _rescaled_resolve(
        cp, problem, form, outcome, M, solver, time_limit, verbose, clock, incumbents
    )
    return _finish(problem, outcome, big_m, M, rounds, incumbents, clock, solver)


def _rescaled_resolve(
    cp: Any,
    problem: L0Problem,
    form: _Formulation,
    outcome: _Outcome,
    M: float,
    solver: str,
    time_limit: float | None,
    verbose: bool,
    clock: Stopwatch,
    incumbents: list[tuple[np.ndarray, bool, np.ndarray]],
) -> _Outcome:
    """Solve once more when the cone was scaled to a much worse incumbent.

    The least-squares cone is scaled to the incumbent's residual. When the
    optimum fits far better (a near-perfect fit found from a poor heuristic),
    SCIP's absolute tolerance is again large relative to the optimum's
    residual; a second solve scaled to the optimum restores the accuracy of
    the bound. Both bounds are valid, so the larger is kept.
    """
    if outcome.status != "optimal" or outcome.w is None or outcome.lower_bound is None:
        return outcome
    fit = refit(problem, outcome.support)
    if not fit.bounded or form.residual(fit.w) >= 0.01 * outcome.scale:
        return outcome
    remaining = None
    if time_limit is not None:
        remaining = time_limit - clock.elapsed
        if remaining <= 0:
            return outcome
    incumbents.append((fit.w, True, outcome.support))
    again = _solve_once(cp, problem, form, fit.w, M, solver, remaining, verbose)
    if again.status != "optimal" or again.lower_bound is None:
        return outcome
    logger.info("mip: re-solved with the cone scaled to the optimum's residual")
    return replace(again, lower_bound=max(again.lower_bound, outcome.lower_bound))


# -------------------------------------------------------------------- checks
def _check_time_limit(time_limit: Any) -> float | None:
    if time_limit is None:
        return None
    if isinstance(time_limit, (bool, np.bool_)) or not isinstance(
        time_limit, (numbers.Real, np.number)
    ):
        raise TypeError(
            f"time_limit: expected a positive number of seconds or None, got {describe(time_limit)}"
        )
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
        raise ImportError(
            f"solve_mip needs cvxpy, which is not installed; {_INSTALL_HINT}"
        ) from exc
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
    valid: list[BigM] = []
    if eta > 1e-9 * scale:
        beta = float(np.sqrt(np.sum(np.sort(b * b)[::-1][:k])))
        # Two valid bounds; the first needs no incumbent: the minimiser on a
        # support is H_SS^{-1} b_S, of norm at most ||b_S|| / eta.
        M = min(beta / eta, float(_level_set_radius(beta, eta, gap)))
        valid.append(BigM(_positive(M * (1 + 1e-6)), "curvature", True, eta))
    if math.comb(p, k) <= _ENUMERATE_LIMIT:
        # Per-support curvature is often far larger than the global bound (an
        # ill-conditioned A^T A with well-conditioned k-subsets), and a smaller
        # M both tightens the relaxation and keeps the solver's integrality
        # tolerance from letting w_i leak through z_i ~ 1e-6.
        enumerated = _enumerated_big_m(A, b, k, gap, l2, 1e-8 * (abs(K) + abs(upper)))
        if enumerated.unbounded_support is not None:
            return enumerated
        valid.append(replace(enumerated, eta=eta))
    if valid:
        return min(valid, key=lambda m: m.value)
    # No bound can be derived: a multiple of the heuristic solution.
    ref = float(np.max(np.abs(heuristic))) if heuristic is not None and np.any(heuristic) else 0.0
    if ref == 0.0:  # nothing to scale from: the largest one-coordinate fit
        curv = np.maximum(problem.col_sq_norms + l2, 1e-300)
        ref = float(np.max(np.abs(b) / curv))
    return BigM(_positive(_SAFETY * ref), "heuristic", False, 0.0)


def _positive(M: float) -> float:
    return M if np.isfinite(M) and M > 0 else 1.0


def _enumerated_big_m(
    A: np.ndarray, b: np.ndarray, k: int, gap: float, l2: float, slack: float
) -> BigM:
    """The tightest valid M, by enumerating every support (only for few supports).

    On each support ``S`` the minimum-norm minimiser ``w_S = H_SS^+ b_S`` and
    its value ``f_S = K - 1/2 b_S^T H_SS^+ b_S`` are computed from an
    eigendecomposition. The optimal support has ``f_S = f* <= upper``, so
    ``M = max |w_S|`` over the supports with ``f_S <= upper`` (``gap = upper -
    K``, plus ``slack`` for rounding) contains a minimiser. With ``l2 = 0`` it
    also detects unboundedness (``b_S`` outside the range of ``H_SS``).
    """
    from .brute_force import _batches

    H = A.T @ A
    if l2:
        H[np.diag_indices_from(H)] += l2
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
        if l2 == 0.0 and np.any(unb):
            return BigM(1.0, "enumerated", True, 0.0, idx[int(np.flatnonzero(unb)[0])])
        scaled = np.where(keep, coef / np.where(keep, evals, 1.0), 0.0)
        decrease = 0.5 * np.sum(scaled * coef, axis=1)  # K - f_S
        ok = -decrease <= gap + slack  # supports that can match the incumbent
        if np.any(ok):
            w_s = np.einsum("mij,mj->mi", evecs[ok], scaled[ok])
            M = max(M, float(np.max(np.abs(w_s))))
    return BigM(_positive(M * (1 + 1e-6)), "enumerated", True, 0.0)


# --------------------------------------------------------------- formulation
@dataclass(frozen=True)
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
    scale: float = 1.0
    solver_time: float = float("nan")


@dataclass(frozen=True)
class _Formulation:
    """``||y - A w||^2 = ||q - R w||^2 + delta ||w||^2 + const`` (see _least_squares_factor)."""

    R: np.ndarray
    q: np.ndarray
    delta: float
    const: float

    @classmethod
    def of(cls, problem: L0Problem, spec: _Spectral) -> _Formulation:
        return cls(*_least_squares_factor(problem, spec))

    def residual(self, w: np.ndarray) -> float:
        """``||q - R w||^2``, floored so that it can scale the cone."""
        r = self.q - self.R @ w
        return max(float(r @ r), _SCALE_FLOOR * float(self.q @ self.q), 1e-300)


def _least_squares_factor(
    problem: L0Problem, spec: _Spectral
) -> tuple[np.ndarray, np.ndarray, float, float]:
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
    form: _Formulation,
    incumbent: np.ndarray,
    M: float,
    solver: str,
    time_limit: float | None,
    verbose: bool,
) -> _Outcome:
    p, k, l2 = problem.p, problem.k, problem.l2
    R, q, delta, const = form.R, form.q, form.delta, form.const
    d = l2 + delta
    w = cp.Variable(p, bounds=[-M, M])
    z = cp.Variable(p, boolean=True)
    s = cp.Variable(nonneg=True)
    # The cone is scaled so that s ~ 1 at the incumbent: CVXPY writes
    # ||x||^2 <= s as ||(2x, s - 1)|| <= s + 1, whose absolute feasibility
    # tolerance would otherwise be a large relative error when the residual
    # is small (near-perfect fits).
    scale = form.residual(incumbent)
    root = np.sqrt(scale)
    constraints = [
        cp.sum_squares((q - R @ w) / root) <= s,
        w <= M * z,
        w >= -M * z,
        cp.sum(z) <= k,
    ]
    linear = problem.c - l2 * problem.w_bar
    objective = 0.5 * scale * s + linear @ w
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
        # Stop at an absolute gap of 1e-7 of the objective's scale, far below
        # the 1e-4 that is certified: with SCIP's default (0) it can keep
        # branching on the continuous cone variables (tens of thousands of
        # nodes on p <= 10 problems) to close a gap at its tolerance level.
        f_inc = problem.objective(incumbent)
        f_zero = problem.objective(np.zeros(p))
        params["limits/absgap"] = _ABS_GAP * max(abs(f_inc), 1e-6 * abs(f_zero), 1e-300)
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
            return _Outcome(
                "time_limit",
                None,
                np.empty(0, np.int64),
                None,
                "timelimit",
                0,
                f"{solver} found no solution within the time limit",
                delta,
                perspective,
            )
        logger.warning("mip: the solver failed: %s", exc)
        return _Outcome(
            "error",
            None,
            np.empty(0, np.int64),
            None,
            "exception",
            0,
            f"{solver} failed: {exc}",
            delta,
            perspective,
        )
    return replace(_read_outcome(prob, w, z, K0, solver, delta, perspective), scale=scale)


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
        status = "time_limit" if native in ("timelimit", "nodelimit") else "error"
        return _Outcome(
            status,
            None,
            np.empty(0, np.int64),
            lower,
            native,
            nodes,
            f"{solver} returned no solution (status {native!r})",
            delta,
            perspective,
        )
    w_val = np.asarray(w.value, dtype=np.float64).ravel()
    z_val = np.asarray(z.value, dtype=np.float64).ravel()
    support = np.flatnonzero(z_val > 0.5).astype(np.int64)
    # "gaplimit" is the absolute gap requested in _solve_once (1e-7 of the
    # objective's scale): solved, for every purpose reported here.
    if native in ("optimal", "gaplimit") or (model is None and prob.status == "optimal"):
        status = "optimal"
    elif native in ("timelimit", "nodelimit", "totalnodelimit", "stallnodelimit"):
        status = "time_limit"
    else:
        status = "error"
    return _Outcome(
        status,
        w_val,
        support,
        lower,
        native,
        nodes,
        f"{solver} status {native!r}",
        delta,
        perspective,
        solver_time=float(model.getSolvingTime()) if model is not None else float("nan"),
    )


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
    w_best = _best_point(problem, outcome, incumbents)
    f_best = problem.objective(w_best)
    bound_valid = big_m.valid and solver == "SCIP" and outcome.lower_bound is not None
    lower = gap = None
    if bound_valid:
        assert outcome.lower_bound is not None
        lower, gap = _bound_and_gap(problem, outcome.lower_bound, f_best)
    # Certified: SCIP proved the MIP optimal, M is valid, and the exact refit
    # of the returned point agrees with the bound -- to 1e-4 relative, or to
    # within what SCIP's feasibility tolerance lets the bound slip (an
    # objective near zero, from a linear term cancelling the quadratic part,
    # cannot be bounded more tightly than that). The test catches the
    # solver's tolerances (w_i leaking through z_i ~ 1e-6 when M is large).
    slack = _tolerance_slack(problem, outcome)
    certified = (
        outcome.status == "optimal"
        and bound_valid
        and gap is not None
        and lower is not None
        and (gap <= _CERTIFY_GAP or f_best - lower <= slack)
    )
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
        "solver_time": outcome.solver_time,
        "rounds": rounds,
        "tolerance_slack": float(slack),
    }
    if outcome.lower_bound is not None and not bound_valid:
        info["box_lower_bound"] = float(min(outcome.lower_bound, f_best))
    if certified:
        status, message = "optimal", f"certified optimal by {solver} (big-M from {big_m.source})"
    elif outcome.status == "optimal" and bound_valid:
        status = "converged"
        message = (
            f"{solver} reported the MIP solved, but the exact refit of its solution is "
            f"{gap:.2e} (relative) above its bound: a numerical tolerance issue (M = {M:.3g}); "
            "lower_bound and gap are valid, optimality is not certified"
        )
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
        problem,
        w_best,
        method="mip",
        status=status,
        message=message,
        n_iter=outcome.nodes,
        stopwatch=clock,
        **info,
    )
    if bound_valid:
        sol = replace(sol, lower_bound=lower, gap=gap)
    return sol


def _best_point(
    problem: L0Problem, outcome: _Outcome, incumbents: list[tuple[np.ndarray, bool, np.ndarray]]
) -> np.ndarray:
    """Best of the heuristic incumbents and the exact refits of the solver's supports.

    The solver's ``w`` carries its tolerances, so its support is refit
    exactly: the support read from ``z``, and the ``k`` largest ``|w_i|`` (they
    differ when some ``w_i`` leaked through a ``z_i`` at the integrality
    tolerance). Keeping the incumbents means a time limit or a solver
    failure never loses the starting point.
    """
    candidates = [w for w, bounded, _ in incumbents if bounded]
    if outcome.w is not None:
        supports = [outcome.support, top_k(np.abs(outcome.w), problem.k)]
        for support in supports:
            if support.size <= problem.k:
                fit = refit(problem, support)
                if fit.bounded:
                    candidates.append(fit.w)
    return min(candidates, key=problem.objective)


def _tolerance_slack(problem: L0Problem, outcome: _Outcome) -> float:
    """How far SCIP's dual bound may sit below the true optimum through its feasibility tolerance.

    Each cone may be violated by ``feastol`` (absolute): the residual cone's
    ``s`` enters the objective as ``scale * s / 2``, and each perspective
    cone's ``t_i`` as ``d * t_i / 2``. Twice that sum, so that a bound at the
    solver's tolerance level is not mistaken for a real gap.
    """
    feastol = float(_SCIP_PARAMS["numerics/feastol"])
    d = problem.l2 + outcome.shift if outcome.perspective else 0.0
    return 2.0 * feastol * 0.5 * (outcome.scale + d * problem.p)


def _bound_and_gap(problem: L0Problem, solver_bound: float, f_best: float) -> tuple[float, float]:
    """The lower bound to report and the relative gap of ``f_best`` to it."""
    # The unconstrained minimum of f is also a valid bound; it is exact when
    # the sparse optimum fits perfectly (k >= n), where the solver's bound
    # only reaches f* up to its feasibility tolerance.
    relaxed = refit(problem, np.arange(problem.p, dtype=np.int64))
    lower = solver_bound
    if relaxed.bounded:
        lower = max(lower, problem.objective(relaxed.w))
    lower = float(min(lower, f_best))
    # Relative to |f|, floored at 1e-6 f(0) so that a (near-)perfect fit,
    # f ~ 0, is judged on the scale of the data (as in chita_opt.validate).
    f_zero = problem.objective(np.zeros(problem.p))
    gap = (f_best - lower) / max(abs(f_best), 1e-6 * abs(f_zero), 1e-300)
    return lower, float(max(gap, 0.0))


def _trivial(problem: L0Problem, clock: Stopwatch) -> Solution:
    # k = 0: w = 0 is the only feasible point; k = p: the problem is convex.
    if problem.k == 0:
        w, msg = np.zeros(problem.p), "k = 0: w = 0 is the only feasible point"
    else:
        w = refit(problem, np.arange(problem.p, dtype=np.int64)).w
        msg = "k = p: the problem is convex; solved exactly on all coordinates"
    sol = make_solution(
        problem,
        w,
        method="mip",
        status="optimal",
        message=msg,
        stopwatch=clock,
        certified=True,
        big_m=float("nan"),
        big_m_source="none",
        solver_status="not called",
    )
    return replace(sol, lower_bound=sol.objective, gap=0.0)


def _unbounded(
    problem: L0Problem, w: np.ndarray, support: np.ndarray, clock: Stopwatch
) -> Solution:
    return make_solution(
        problem,
        w,
        method="mip",
        status="unbounded",
        stopwatch=clock,
        certified=True,
        message=(
            f"f is unbounded below: on support {np.asarray(support).tolist()} the linear term "
            "has a component in the null space of A_S (l2 = 0)"
        ),
    )
