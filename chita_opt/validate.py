"""Heuristic-versus-exact validation harness.

:func:`validate` generates a suite of sparse-regression problems (or takes
yours), solves each with every requested method and with an exact reference
(:func:`~chita_opt.reference.brute_force` when enumeration is cheap, else
:func:`~chita_opt.reference.solve_mip`), and reports per method the share of
instances solved to the certified optimum, the mean and worst relative gap,
and the time.

Relative gap of a method on an instance::

    gap = (f_method - f_opt) / max(|f_opt|, 1e-6 * |f(0)|)

the usual MIP relative gap (relative to the optimal value), floored at a
millionth of ``f(0)``, the objective of ``w = 0``: an instance whose optimum
is (nearly) 0 -- a perfect fit -- is then judged on the scale of the data
instead of dividing rounding errors by zero. A method "solves" an instance
when ``gap <= tol`` (default ``1e-6``). Only instances whose reference is
certified (status "optimal") enter the shares and gap statistics; a method
that beats a certified reference by more than ``tol`` is counted in
``n_better`` (it would reveal a bug in the reference).
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import check_k, check_nonnegative, check_positive_int, describe
from .datasets import make_regression
from .problem import L0Problem
from .result import ConvergenceWarning, Solution
from .solvers import available_methods, solve

__all__ = ["MethodSummary", "ValidationReport", "relative_gap", "validate"]

logger = logging.getLogger(__name__)

#: ``reference="auto"`` uses brute force when it is estimated to take at most this long.
AUTO_BRUTE_FORCE_SECONDS = 5.0
_REFERENCES = ("auto", "brute_force", "mip")


def relative_gap(f_method: float, f_opt: float, f_zero: float) -> float:
    """``(f_method - f_opt) / max(|f_opt|, 1e-6 |f(0)|)`` (see the module notes)."""
    denom = max(abs(f_opt), 1e-6 * abs(f_zero), 1e-300)
    return float((f_method - f_opt) / denom)


@dataclass(frozen=True)
class MethodSummary:
    """One method's row of a :class:`ValidationReport`.

    Attributes
    ----------
    method : str
    instances : int
        Instances with a certified reference (the denominator of ``share_optimal``).
    n_optimal : int
        Certified instances on which ``gap <= tol``.
    share_optimal : float
        ``n_optimal / instances`` (NaN when nothing was certified).
    mean_gap, worst_gap : float
        Mean and largest relative gap over the certified instances.
    mean_time, max_time : float
        Wall-clock seconds per solve, over all instances.
    n_errors : int
        Solves that raised or returned status "error".
    n_better : int
        Certified instances on which the method beat the reference by more than ``tol``.
    """

    method: str
    instances: int
    n_optimal: int
    share_optimal: float
    mean_gap: float
    worst_gap: float
    mean_time: float
    max_time: float
    n_errors: int = 0
    n_better: int = 0


@dataclass(frozen=True)
class ValidationReport:
    """Result of :func:`validate`; ``str(report)`` is a text table.

    Attributes
    ----------
    summaries : tuple of MethodSummary
        One per method, in the order requested.
    reference : str
        "brute_force" or "mip" (the reference actually used).
    reference_objectives, reference_times : ndarray (instances,)
    reference_certified : ndarray of bool (instances,)
    zero_objectives : ndarray (instances,)
        ``f(0)`` of each instance (the scale of the gap's floor; ``f*/f(0)``
        says how much of the objective the optimum removes).
    objectives, times, gaps : dict[str, ndarray]
        Per method and instance (NaN where a solve failed).
    tol : float
        Gap under which an instance counts as solved.
    settings : dict
        The generator settings (n, p, k, design, rho, snr, pattern, l2, ...).
    """

    summaries: tuple[MethodSummary, ...]
    reference: str
    reference_objectives: np.ndarray
    reference_times: np.ndarray
    reference_certified: np.ndarray
    objectives: dict[str, np.ndarray]
    times: dict[str, np.ndarray]
    gaps: dict[str, np.ndarray]
    tol: float
    zero_objectives: np.ndarray = field(default_factory=lambda: np.empty(0))
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return int(self.reference_objectives.size)

    @property
    def n_certified(self) -> int:
        return int(np.sum(self.reference_certified))

    def summary(self, method: str) -> MethodSummary:
        """The row of ``method``."""
        for row in self.summaries:
            if row.method == method:
                return row
        raise KeyError(
            f"method: expected one of {[r.method for r in self.summaries]}, got {method!r}"
        )

    def to_table(self, fmt: str = "text") -> str:
        """The summary table as plain text (``fmt="text"``) or Markdown (``fmt="markdown"``)."""
        if fmt not in ("text", "markdown"):
            raise ValueError(f"fmt: expected 'text' or 'markdown', got {fmt!r}")
        header = [
            "method",
            "optimal",
            "share",
            "mean gap",
            "worst gap",
            "mean time",
            "max time",
            "errors",
        ]
        rows = []
        for s in self.summaries:
            rows.append(
                [
                    s.method,
                    f"{s.n_optimal}/{s.instances}",
                    _fmt_share(s.share_optimal),
                    _fmt_gap(s.mean_gap),
                    _fmt_gap(s.worst_gap),
                    _fmt_time(s.mean_time),
                    _fmt_time(s.max_time),
                    str(s.n_errors) + (f" ({s.n_better} beat ref!)" if s.n_better else ""),
                ]
            )
        rows.append(
            [
                f"[{self.reference}]",
                f"{self.n_certified}/{self.n_instances} certified",
                "",
                "",
                "",
                _fmt_time(float(np.mean(self.reference_times))) if self.n_instances else "-",
                _fmt_time(float(np.max(self.reference_times))) if self.n_instances else "-",
                "",
            ]
        )
        if fmt == "markdown":
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join(lines)
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(line.rstrip() for line in out)

    def describe_settings(self) -> str:
        """One line describing the suite."""
        s = self.settings
        if s.get("custom"):
            return f"{self.n_instances} user-supplied problems, tol={self.tol:g}"
        return (
            f"{self.n_instances} instances, n={s['n']}, p={s['p']}, k={s['k']}, "
            f"design={s['design']}, rho={s['rho']:g}, snr={s['snr']:g}, pattern={s['pattern']}, "
            f"l2={s['l2']:g}, random_state={s['random_state']}, tol={self.tol:g}"
        )

    def __str__(self) -> str:
        return self.describe_settings() + "\n" + self.to_table()


def _fmt_share(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.0f}%"


def _fmt_gap(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    return "0" if x == 0 else f"{x:.2e}"


def _fmt_time(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    return f"{1e3 * x:.1f} ms" if x < 1 else f"{x:.2f} s"


# -------------------------------------------------------------------- checks
def _check_methods(methods: Any) -> list[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if not isinstance(methods, Iterable):
        raise TypeError(f"methods: expected a list of method names, got {describe(methods)}")
    names = list(methods)
    if not names:
        raise ValueError("methods: expected at least one method name, got an empty list")
    known = available_methods()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"methods: expected method names (str), got {describe(name)}")
        if name not in known:
            raise ValueError(f"methods: expected names from {known}, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"methods: expected distinct names, got {names}")
    return names


def _check_tol(tol: Any) -> float:
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (numbers.Real, np.number)):
        raise TypeError(f"tol: expected a non-negative number, got {describe(tol)}")
    return check_nonnegative(tol, "tol")


# ------------------------------------------------------------------ harness
def _progress(iterable: Iterable[Any], enabled: bool, total: int) -> Iterable[Any]:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, same results
        return iterable
    return tqdm(iterable, total=total, desc="validate", unit="instance")


def _generate(
    instances: int,
    n: int,
    p: int,
    k: int,
    design: str,
    rho: float,
    snr: float,
    pattern: int,
    l2: float,
    random_state: Any,
) -> list[L0Problem]:
    seeds = np.random.SeedSequence(random_state).spawn(instances)
    problems = []
    for seed in seeds:
        data = make_regression(
            n,
            p,
            k,
            design=design,
            rho=rho,
            pattern=pattern,
            snr=snr,
            random_state=np.random.default_rng(seed),
        )
        problems.append(L0Problem(data.A, data.y, k, l2=l2))
    return problems


def _timed(
    problem: L0Problem, method: str, options: Mapping[str, Any]
) -> tuple[Solution | None, float]:
    start = time.perf_counter()
    try:
        sol = solve(problem, method=method, **options)
    except (ValueError, TypeError):
        raise  # bad options are the caller's error, not a method failure
    except Exception as exc:  # a failing method is recorded, not fatal
        logger.warning("validate: method %r raised %s: %s", method, type(exc).__name__, exc)
        return None, time.perf_counter() - start
    return sol, time.perf_counter() - start


def validate(
    methods: Sequence[str] | str,
    *,
    p: int = 20,
    k: int = 5,
    n: int | None = None,
    instances: int = 20,
    design: str = "toeplitz",
    rho: float = 0.5,
    snr: float = 3.0,
    pattern: int = 1,
    l2: float = 0.0,
    problems: Sequence[L0Problem] | None = None,
    reference: str = "auto",
    time_limit: float = 60.0,
    tol: float = 1e-6,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    warmup: bool = True,
    progress: bool = False,
    random_state: Any = 0,
) -> ValidationReport:
    """Compare methods with the certified optimum on a suite of problems.

    Parameters
    ----------
    methods : list of str or str
        Method names (see :func:`chita_opt.available_methods`), or one
        comma-separated string such as ``"chita,iht,magnitude"``.
    p, k, n : int
        Problem size of the generated suite (``n`` defaults to ``2 p``).
    instances : int
        Number of generated problems.
    design, rho, snr, pattern
        Generator settings, see :func:`chita_opt.datasets.make_regression`.
    l2 : float
        Ridge strength of the generated problems.
    problems : sequence of L0Problem, optional
        Use these problems instead of generating a suite (``p, k, n,
        instances`` and the generator settings are then ignored).
    reference : {"auto", "brute_force", "mip"}
        Exact reference. "auto" enumerates when that is estimated to take at
        most a few seconds per instance and otherwise solves the MIP.
    time_limit : float
        Seconds allowed to each MIP reference solve; an instance whose
        reference is not certified in time is excluded from the statistics.
    tol : float
        An instance is solved when the relative gap is at most ``tol``.
    method_options : mapping, optional
        Extra options per method, e.g. ``{"iht": {"max_iter": 500}}``.
    warmup : bool
        Run every method once, untimed, before timing (keeps Numba's
        just-in-time compilation out of the times).
    progress : bool
        Show a progress bar (needs tqdm).
    random_state : int, numpy Generator or None
        Seed of the suite; the same seed always gives the same problems.

    Returns
    -------
    ValidationReport
    """
    names = _check_methods(methods)
    tol = _check_tol(tol)
    if reference not in _REFERENCES:
        raise ValueError(f"reference: expected one of {_REFERENCES}, got {reference!r}")
    time_limit = check_nonnegative(time_limit, "time_limit")
    if time_limit == 0:
        raise ValueError("time_limit: expected a positive number of seconds, got 0.0")
    options = {m: dict((method_options or {}).get(m, {})) for m in names}
    if method_options is not None:
        unknown = sorted(set(method_options) - set(names))
        if unknown:
            raise ValueError(f"method_options: expected keys among {names}, got {unknown}")
    if problems is not None:
        suite = list(problems)
        if not suite:
            raise ValueError("problems: expected at least one L0Problem, got an empty sequence")
        for i, pr in enumerate(suite):
            if not isinstance(pr, L0Problem):
                raise TypeError(f"problems[{i}]: expected an L0Problem, got {describe(pr)}")
        settings: dict[str, Any] = {"custom": True}
    else:
        p = int(check_positive_int(p, "p"))  # type: ignore[arg-type]
        k = check_k(k, p, "k")
        n = 2 * p if n is None else int(check_positive_int(n, "n"))  # type: ignore[arg-type]
        instances = int(check_positive_int(instances, "instances"))  # type: ignore[arg-type]
        l2 = check_nonnegative(l2, "l2")
        suite = _generate(instances, n, p, k, design, rho, snr, pattern, l2, random_state)
        settings = {
            "n": n,
            "p": p,
            "k": k,
            "design": design,
            "rho": float(rho),
            "snr": float(snr),
            "pattern": pattern,
            "l2": l2,
            "random_state": random_state,
        }

    ref_name = reference
    if reference == "auto":
        from .reference.brute_force import estimated_seconds

        worst = max(estimated_seconds(pr.p, pr.k) for pr in suite)
        ref_name = "brute_force" if worst <= AUTO_BRUTE_FORCE_SECONDS else "mip"
    settings["reference"] = ref_name

    if warmup:
        for m in names:
            _timed(suite[0], m, options[m])

    count = len(suite)
    objectives = {m: np.full(count, np.nan) for m in names}
    times = {m: np.full(count, np.nan) for m in names}
    errors = dict.fromkeys(names, 0)
    ref_obj = np.full(count, np.nan)
    ref_time = np.full(count, np.nan)
    ref_cert = np.zeros(count, dtype=bool)
    f_zero = np.empty(count)
    for i, problem in enumerate(_progress(suite, progress, count)):
        f_zero[i] = problem.objective(np.zeros(problem.p))
        best: Solution | None = None
        for m in names:
            sol, elapsed = _timed(problem, m, options[m])
            times[m][i] = elapsed
            if sol is None or sol.status == "error":
                errors[m] += 1
                continue
            objectives[m][i] = sol.objective
            if best is None or sol.objective < best.objective:
                best = sol
        start = time.perf_counter()
        if ref_name == "brute_force":
            ref = solve(problem, method="brute_force")
        else:
            with warnings.catch_warnings():
                # A reference stopped by its time limit is not certified: it is
                # left out of the comparison and counted in n_certified, so the
                # per-instance ConvergenceWarning would only repeat that.
                warnings.simplefilter("ignore", ConvergenceWarning)
                ref = solve(problem, method="mip", time_limit=time_limit, warm_start=best)
        ref_time[i] = time.perf_counter() - start
        ref_obj[i] = ref.objective
        ref_cert[i] = ref.status == "optimal"
        logger.debug("validate: instance %d reference %s f=%.10g", i, ref.status, ref.objective)

    gaps = {
        m: np.array([relative_gap(objectives[m][i], ref_obj[i], f_zero[i]) for i in range(count)])
        for m in names
    }
    summaries = tuple(_summarise(m, gaps[m], times[m], ref_cert, errors[m], tol) for m in names)
    return ValidationReport(
        summaries=summaries,
        reference=ref_name,
        reference_objectives=ref_obj,
        reference_times=ref_time,
        reference_certified=ref_cert,
        objectives=objectives,
        times=times,
        gaps=gaps,
        tol=tol,
        zero_objectives=f_zero,
        settings=settings,
    )


def _summarise(
    method: str,
    gaps: np.ndarray,
    times: np.ndarray,
    certified: np.ndarray,
    n_errors: int,
    tol: float,
) -> MethodSummary:
    g = gaps[certified]
    solved = g[np.isfinite(g)]
    n_cert = int(certified.sum())
    n_opt = int(np.sum(solved <= tol))
    return MethodSummary(
        method=method,
        instances=n_cert,
        n_optimal=n_opt,
        share_optimal=n_opt / n_cert if n_cert else math.nan,
        # A failed solve counts as not optimal; the gap statistics cover the
        # solves that returned, with small negative gaps (rounding) shown as 0.
        mean_gap=float(np.mean(np.maximum(solved, 0.0))) if solved.size else math.nan,
        worst_gap=float(np.max(np.maximum(solved, 0.0))) if solved.size else math.nan,
        mean_time=float(np.nanmean(times)) if np.any(np.isfinite(times)) else math.nan,
        max_time=float(np.nanmax(times)) if np.any(np.isfinite(times)) else math.nan,
        n_errors=n_errors,
        n_better=int(np.sum(solved < -tol)),
    )
