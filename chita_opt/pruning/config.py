"""One validated configuration for every pruning entry point (PyTorch, JAX, raw arrays).

``PruneConfig`` holds the settings that are not framework code: sparsity,
schedule, damping, gradient rows, blocks and solver options. Every adapter's
``prune(...)`` builds one from its keywords (or takes one as ``config=``), so
the same names mean the same things everywhere and are validated once, before
any gradient is computed.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from .._validation import check_nonnegative, check_positive_int, check_sparsity, describe
from .schedules import sparsity_schedule

__all__ = ["DEFAULT_HELD_OUT_FRACTION", "DEFAULT_N_SAMPLES", "PruneConfig", "make_config"]

#: Gradient rows per stage when ``n_samples`` is not given (fewer when the data has fewer).
DEFAULT_N_SAMPLES = 1000

#: Share of the samples read that is held out to choose the damping when no
#: ``held_out`` data is given (see docs/benchmarks_zoo.md).
DEFAULT_HELD_OUT_FRACTION = 0.2


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {describe(value)}")
    return bool(value)


def _check_damping(value: Any) -> float | str:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"damping: expected a non-negative number or 'auto', got {value!r}")
        return value
    return check_nonnegative(value, "damping")


def _check_grid(grid: Any) -> tuple[float, ...] | None:
    if grid is None:
        return None
    if isinstance(grid, (str, bytes)) or isinstance(grid, numbers.Number):
        raise TypeError(f"damping_grid: expected a sequence of numbers, got {describe(grid)}")
    try:
        values = tuple(check_nonnegative(d, "damping_grid") for d in grid)
    except TypeError as exc:
        if "damping_grid" in str(exc):
            raise
        raise TypeError(
            f"damping_grid: expected a sequence of numbers, got {describe(grid)}"
        ) from None
    if not values:
        raise ValueError("damping_grid: expected at least one damping, got an empty sequence")
    return values


@dataclass(frozen=True)
class PruneConfig:
    """Validated pruning settings shared by every adapter.

    Attributes
    ----------
    sparsity : float
        Fraction of the selected weights set to exactly zero, in ``[0, 1)``
        (implied by ``pattern`` when that is given).
    pattern : str or None
        ``"N:M"`` (e.g. ``"2:4"``): at most N non-zeros in every group of M
        consecutive weights along each tensor's input dimension
        (:mod:`chita_opt.pruning.patterns`); the last stage is exactly N:M.
    method : str
        Solver of every stage (:func:`chita_opt.available_methods`);
        ``"magnitude"`` computes no gradients.
    stages, schedule, base_level
        Multi-stage schedule (:func:`~chita_opt.pruning.sparsity_schedule`);
        ``stages=1`` is one-shot CHITA, more is CHITA++.
    n_samples : int or None
        Gradient rows per stage. ``None``: up to :data:`DEFAULT_N_SAMPLES`,
        fewer when the data has fewer samples. An explicit value the data
        cannot supply is an error.
    mini_batch : int
        Samples averaged per gradient row.
    random_state : int or None
        Seeds the random draw of samples from tensors/arrays (iterables and
        data loaders are read in their own order).
    damping : float or "auto"
        Ridge added to the empirical Fisher. ``"auto"`` chooses it by the
        held-out score of the pruned network, one-shot and at the last stage
        of CHITA++; the stages before use a share of their own Fisher scale
        (see :mod:`chita_opt.pruning.damping`).
    damping_grid : sequence of float or None
        Candidates for ``"auto"``: absolute dampings, tried as given; ``None``
        uses the scale-aware grid relative to the Fisher's own scale, refined
        by bisection around the best candidate.
    held_out_fraction : float
        With ``"auto"`` and no ``held_out`` data: share of the samples read
        that is held out (never used for gradients).
    first_order, first_order_scale
        Linear (mean-gradient) term of the local model; the scale defaults to
        ``1 / mini_batch``. With held-out data each stage keeps the solution
        with or without the term, whichever has the lower held-out loss.
    block_size, max_gradient_columns, executor
        Block approximation (blocks inside tensors), gradient memory limit
        with blocks, and where blocks are solved.
    solver_options : mapping
        Extra options for :func:`chita_opt.solve`.
    progress : bool
        Progress bars over stages, blocks and gradient rows.
    """

    sparsity: float | None = None
    pattern: str | None = None
    method: str = "chita"
    stages: int = 1
    schedule: str | tuple[float, ...] = "exp"
    base_level: float | None = None
    n_samples: int | None = None
    mini_batch: int = 1
    random_state: int | None = 0
    damping: float | str = "auto"
    damping_grid: tuple[float, ...] | None = None
    held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION
    first_order: bool = False
    first_order_scale: float | None = None
    block_size: int | None = None
    max_gradient_columns: int | None = None
    executor: Any = field(default=None, compare=False)
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the validated values in place
        if self.pattern is not None:
            from .patterns import parse_pattern

            n, m = parse_pattern(self.pattern)
            implied = 1.0 - n / m
            if self.sparsity is None:
                set_(self, "sparsity", implied)
            elif abs(check_sparsity(self.sparsity, "sparsity") - implied) > 1e-12:
                raise ValueError(
                    f"sparsity: expected nothing (or {implied:g}) with pattern "
                    f"{self.pattern!r}, got {self.sparsity!r}"
                )
        if self.sparsity is None:
            raise TypeError("sparsity: expected a number in [0, 1), got nothing")
        set_(self, "sparsity", check_sparsity(self.sparsity, "sparsity"))
        if not isinstance(self.method, str):
            raise TypeError(f"method: expected a method name, got {describe(self.method)}")
        from ..solvers import available_methods

        if self.method not in available_methods():
            raise ValueError(
                f"method: expected one of {available_methods()}, got {self.method!r}"
            )
        set_(self, "stages", int(check_positive_int(self.stages, "stages")))  # type: ignore[arg-type]
        schedule = self.schedule
        if not isinstance(schedule, str):
            try:
                schedule = tuple(float(s) for s in schedule)  # type: ignore[union-attr]
            except (TypeError, ValueError):
                raise TypeError(
                    "schedule: expected a schedule name or a sequence of sparsity levels, "
                    f"got {describe(self.schedule)}"
                ) from None
            set_(self, "schedule", schedule)
        # Checks the schedule, its length and base_level now, before any gradient.
        sparsity_schedule(self.sparsity, self.stages, schedule, base_level=self.base_level)
        if self.n_samples is not None:
            set_(self, "n_samples", int(check_positive_int(self.n_samples, "n_samples")))  # type: ignore[arg-type]
        set_(self, "mini_batch", int(check_positive_int(self.mini_batch, "mini_batch")))  # type: ignore[arg-type]
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, numbers.Integral)
                               or int(rs) < 0):
            raise TypeError(
                f"random_state: expected None or a non-negative integer seed, got {describe(rs)}"
            )
        set_(self, "damping", _check_damping(self.damping))
        set_(self, "damping_grid", _check_grid(self.damping_grid))
        f = check_nonnegative(self.held_out_fraction, "held_out_fraction")
        if not 0.0 < f < 1.0:
            raise ValueError(f"held_out_fraction: expected a number in (0, 1), got {f}")
        set_(self, "held_out_fraction", f)
        set_(self, "first_order", _check_bool(self.first_order, "first_order"))
        if self.first_order_scale is not None:
            set_(self, "first_order_scale",
                 check_nonnegative(self.first_order_scale, "first_order_scale"))
        set_(self, "block_size", check_positive_int(self.block_size, "block_size", allow_none=True))
        set_(self, "max_gradient_columns", check_positive_int(
            self.max_gradient_columns, "max_gradient_columns", allow_none=True))
        if self.max_gradient_columns is not None and self.block_size is None:
            raise ValueError(
                "max_gradient_columns: only meaningful with blocks; set block_size as well"
            )
        if self.executor is not None and not callable(getattr(self.executor, "submit", None)):
            raise TypeError(
                "executor: expected an object with a submit(fn, *args) method, "
                f"got {describe(self.executor)}"
            )
        opts = self.solver_options
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            raise TypeError(f"solver_options: expected a mapping, got {describe(opts)}")
        set_(self, "solver_options", dict(opts))
        self._check_solver_options()
        set_(self, "progress", _check_bool(self.progress, "progress"))

    def _check_solver_options(self) -> None:
        opts = dict(self.solver_options)
        if not self.needs_gradients:
            if opts:
                raise TypeError(
                    f"solver_options: method {self.method!r} takes no options, got {sorted(opts)}"
                )
            return
        # Reject an option typo now, not after the first (possibly long) gradient pass.
        from ..solvers import check_options

        check_options(self.method, opts)

    # ----------------------------------------------------------------- derived
    @property
    def needs_gradients(self) -> bool:
        """False for methods that use the weights only (magnitude pruning)."""
        return _needs_gradients(self.method)

    @property
    def nm(self) -> tuple[int, int] | None:
        """``(N, M)`` of the pattern, or None."""
        if self.pattern is None:
            return None
        from .patterns import parse_pattern

        return parse_pattern(self.pattern)

    @property
    def auto_damping(self) -> bool:
        return self.damping == "auto"

    @property
    def effective_first_order_scale(self) -> float:
        # Rows that average m samples carry ~1/m of the per-sample Fisher mass;
        # scaling c = G^T 1 alike keeps the Taylor model consistent.
        if self.first_order_scale is None:
            return 1.0 / self.mini_batch
        return float(self.first_order_scale)

    def replace(self, **changes: Any) -> PruneConfig:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


def _needs_gradients(method: str) -> bool:
    from ..solvers import method_info

    return method_info(method).needs_design


_NAMES = frozenset(f.name for f in fields(PruneConfig))


def make_config(config: PruneConfig | None, **keywords: Any) -> PruneConfig:
    """``config`` updated with the keywords a caller passed, or a new config from them.

    ``keywords`` holds only the arguments the caller actually gave (adapters
    drop the ones left at their ``None`` sentinel), so a keyword overrides the
    same field of ``config``.
    """
    unknown = sorted(set(keywords) - _NAMES)
    if unknown:
        raise TypeError(f"{unknown[0]}: not a pruning setting; expected one of {sorted(_NAMES)}")
    if config is None:
        return PruneConfig(**keywords)
    if not isinstance(config, PruneConfig):
        raise TypeError(f"config: expected a PruneConfig, got {describe(config)}")
    if "pattern" in keywords and "sparsity" not in keywords:
        keywords["sparsity"] = None  # implied by the new pattern
    return replace(config, **keywords) if keywords else config
