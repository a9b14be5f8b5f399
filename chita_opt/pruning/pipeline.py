"""The one pruning pipeline behind every adapter's ``prune``.

``adapter -> pipeline -> problem -> solver -> Solution -> adapter``: the
adapter (:class:`~chita_opt.pruning.FrameworkAdapter`) knows the framework;
:func:`run_pipeline` does everything else -- draws the samples
(:class:`~chita_opt.pruning.samples.SampleSource`), sets a held-out share
aside when the damping is chosen automatically or the first-order term is
guarded, streams gradient rows into one reused float32 buffer, and runs the
stage loop (:func:`~chita_opt.pruning.multistage_prune`). It never writes
into the model: the adapter does that with the returned report, so a failure
anywhere here leaves the model as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .._warnings import warn
from .config import PruneConfig
from .damping import Score, fisher_scale
from .multistage import multistage_prune
from .protocol import FrameworkAdapter
from .report import PruneReport
from .samples import SampleSource
from .selection import DampingSelection, relative_grid, select_damping

__all__ = ["gradient_matrix", "run_pipeline", "select_damping_runs"]


class _Replay:
    """Re-iterable batches of held-out ``data`` (one-shot iterators are read once and kept)."""

    def __init__(self, adapter: FrameworkAdapter, data: Any) -> None:
        self.adapter = adapter
        self.data = data
        self.kept: list[Any] | None = None
        if isinstance(data, Iterator):
            self.kept = list(adapter.batches(data))

    def __iter__(self) -> Iterator[Any]:
        if self.kept is not None:
            return iter(self.kept)
        return self.adapter.batches(self.data)


class _GradientRows:
    """``gradient_fn(w, columns)`` over the stage's samples, into one reused float32 buffer."""

    def __init__(self, adapter: FrameworkAdapter, source: SampleSource) -> None:
        self.adapter = adapter
        self.source = source
        self.samples: Any = None
        self.stage = 0
        self._buffer: np.ndarray | None = None

    def start_stage(self, t: int) -> None:
        self.stage = t
        self.samples = self.source.gradient_samples(t)

    def __call__(self, w: np.ndarray, columns: np.ndarray) -> np.ndarray:
        if self.samples is None:
            self.start_stage(1)
        n = self.source.n_rows
        q = int(np.count_nonzero(columns))
        if self._buffer is None or self._buffer.size < n * q:
            self._buffer = None  # free the old one first
            # Later stages need fewer columns and reuse the front part.
            self._buffer = np.empty(n * max(q, 1), dtype=np.float32)
        G = self._buffer[: n * q].reshape(n, q)
        self.adapter.gradient_rows(w, columns, self.samples, self.source.m, G)
        if not np.isfinite(G).all():
            raise ValueError(
                f"loss_fn: the gradients at stage {max(self.stage, 1)} contain NaN or Inf "
                f"({int((~np.isfinite(G)).sum())} entries); check that loss_fn returns a "
                "finite mean loss on the data"
            )
        return G


def run_pipeline(
    adapter: FrameworkAdapter,
    data: Any,
    config: PruneConfig,
    *,
    held_out: Any = None,
    options: Mapping[str, Any] | None = None,
) -> PruneReport:
    """Prune the adapter's weights by ``config``; the model is not modified (see module docs).

    Parameters
    ----------
    adapter : FrameworkAdapter
    data : Any
        Gradient data in a form the adapter accepts.
    config : PruneConfig
    held_out : Any, optional
        Held-out data for the damping choice and the first-order guard;
        default: a share of ``data`` (``config.held_out_fraction``).
    options : mapping, optional
        Extra entries for ``report.options``.
    """
    w0, mask0 = adapter.flat_weights()
    groups = cap = None
    if config.nm is not None:  # checked before any data is read
        from .patterns import input_groups

        cap, m = config.nm
        groups = input_groups(adapter.layout, m, adapter.output_axis)
    evaluate = None
    gradient_fn = None
    recorded: dict[str, Any] = {"framework": adapter.framework}
    if held_out is not None and not (config.needs_gradients
                                     and (config.auto_damping or config.first_order)):
        warn(
            "held_out: not used (it scores damping candidates and the first-order term; "
            f"this run has damping={config.damping!r}, first_order={config.first_order}, "
            f"method={config.method!r})", UserWarning,
        )
    if config.needs_gradients:
        guarded = config.auto_damping or config.first_order
        source = SampleSource(adapter, data, config, hold_out=guarded and held_out is None)
        recorded.update(source.describe())
        if guarded:
            batches: Iterable[Any] = (
                [source.held] if held_out is None else _Replay(adapter, held_out)
            )
            if held_out is not None:
                recorded["held_out"] = "given"

            def evaluate(w: np.ndarray) -> Score:
                return adapter.evaluate(w, batches)

        gradient_fn = _GradientRows(adapter, source)
    elif data is not None and getattr(adapter, "wants_calibration", False):
        # No gradients (magnitude pruning), but the adapter re-estimates statistics
        # at the pruned weights (BatchNorm): give it samples drawn as usual.
        source = SampleSource(adapter, data, config, hold_out=False,
                              purpose="the statistics re-estimated at the pruned weights")
        adapter.calibrate(source.gradient_samples(1))
        recorded.update(source.describe())
    recorded.update(options or {})
    if config.pattern is not None:
        recorded["pattern"] = config.pattern
    return multistage_prune(
        w0,
        gradient_fn,
        sparsity=config.sparsity,
        stages=config.stages,
        schedule=config.schedule,
        base_level=config.base_level,
        method=config.method,
        damping=config.damping,
        damping_grid=config.damping_grid,
        evaluate=evaluate,
        first_order=config.first_order,
        first_order_scale=config.effective_first_order_scale,
        mask=None if mask0.all() else mask0,
        layout=adapter.layout,
        block_size=config.block_size,
        executor=config.executor,
        max_columns=config.max_gradient_columns,
        solver_options=config.solver_options,
        progress=config.progress,
        options=recorded,
        on_stage=gradient_fn.start_stage if gradient_fn is not None else None,
        groups=groups,
        group_cap=cap,
    )


def gradient_matrix(
    adapter: FrameworkAdapter, data: Any, config: PruneConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient rows at the current weights, drawn by the pipeline's sampling policy.

    Returns ``(G, w)``: ``G`` (n, p) float32 and the flat weights (float64).
    """
    w, _ = adapter.flat_weights()
    source = SampleSource(adapter, data, config, hold_out=False)
    rows = _GradientRows(adapter, source)
    G = rows(w, np.ones(w.size, dtype=bool))
    return G, w


def select_damping_runs(
    adapter: FrameworkAdapter,
    data: Any,
    held_out: Any,
    config: PruneConfig,
    grid: Sequence[float] | None,
    *,
    options: Mapping[str, Any] | None = None,
) -> DampingSelection:
    """One whole :func:`run_pipeline` per damping of ``grid``, scored on ``held_out`` as
    ``damping="auto"`` scores its candidates (classification error, then mean loss; the
    loss alone without an error) -- the adapters' ``select_damping``; the model is not
    modified.

    ``grid=None``: :func:`~chita_opt.pruning.selection.relative_grid` of the Fisher
    scale of the alive weights, from one gradient pass drawn as the first stage's.
    """
    if held_out is None:
        raise TypeError("held_out: expected held-out (inputs, targets) data, got None")
    batches = list(adapter.batches(held_out))
    if not batches:
        raise ValueError("held_out: expected at least one batch, got an empty iterable")
    if grid is None:
        G, _ = gradient_matrix(adapter, data, config)
        alive = adapter.flat_weights()[1]
        grid = relative_grid(fisher_scale(G if alive.all() else G[:, alive]))
    return select_damping(
        lambda d: run_pipeline(adapter, data, config.replace(damping=d), options=options),
        lambda rep: adapter.evaluate(rep.weights, batches),
        grid,
    )
