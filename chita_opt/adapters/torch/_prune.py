"""``prune``, ``select_damping``, ``gradient_matrix`` and ``held_out_loss`` for PyTorch models."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._validation import check_positive_int, describe
from ...pruning import (
    DampingSelection,
    ParamLayout,
    PruneConfig,
    PruneReport,
)
from ...pruning.config import make_config
from ...pruning.pipeline import gradient_matrix as _gradient_matrix
from ...pruning.pipeline import run_pipeline, select_damping_runs
from ._adapter import TorchAdapter
from ._select import Select, check_loss, check_model, resolve_selector
from ._state import Snapshot

logger = logging.getLogger(__name__)


def _adapter(
    model: Any, loss_fn: Any, select: Select, params: Select, chunk_size: Any, vectorize: Any,
    recalibrate_bn: Any = True,
) -> TorchAdapter:
    check_model(model)
    check_loss(loss_fn)
    selector, name = resolve_selector(select, params)
    for flag, label in ((vectorize, "vectorize"), (recalibrate_bn, "recalibrate_bn")):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{label}: expected a bool, got {describe(flag)}")
    return TorchAdapter(
        model, loss_fn, select=selector, select_name=name,
        chunk_size=check_positive_int(chunk_size, "chunk_size", allow_none=True),
        vectorize=bool(vectorize), recalibrate_bn=bool(recalibrate_bn),
    )


def _snapshot(model: nn.Module, adapter: TorchAdapter) -> Snapshot:
    """What prune may change: the pruned modules and the BN layers it re-estimates."""
    return Snapshot(model, [t.module for t in adapter.targets] + [m for _, m in adapter.bn])


def prune(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    config: PruneConfig | None = None,
    held_out: Any = None,
    select: Select = None,
    params: Select = None,
    chunk_size: int | None = None,
    vectorize: bool = True,
    recalibrate_bn: bool = True,
    **settings: Any,
) -> PruneReport:
    """Prune a PyTorch model in place with CHITA (one stage) or CHITA++ (several).

    Parameters
    ----------
    model : nn.Module
        Pruned in place: weights written back, masks recorded with
        ``torch.nn.utils.prune`` (``<name>_orig``, ``<name>_mask``). Modules
        already pruned that way keep their zeros (their masks only shrink).
    loss_fn : callable
        ``loss_fn(model(inputs), targets)`` -> scalar mean loss.
    data : (inputs, targets) tensors, DataLoader, or iterable of (inputs, targets)
        Gradient data. From tensors, samples are drawn at random (seeded by
        ``random_state``); loaders and iterables are read in their order, a
        fresh read per stage (a one-shot iterator is read once and kept).
    config : PruneConfig, optional
        All pruning settings at once; keywords given as well override it.
    held_out : data, optional
        Held-out data for the damping choice (default: a share of ``data``).
    select : names, predicate or None
        Tensors to prune (default: weights of Linear and Conv1d/2d/3d);
        ``params=`` is the older name of the same argument.
    chunk_size, vectorize
        Gradient rows per ``vmap`` call (default: as many as fit in 32 MiB),
        and ``vectorize=False`` for models ``vmap`` cannot trace.
    recalibrate_bn : bool, default True
        Re-estimate the running statistics of BatchNorm layers at the pruned
        weights on the gradient samples (forward passes only), for every
        held-out score and for the model written back; the stale statistics
        of the dense network can make a good pruned network look broken.
    **settings
        The fields of :class:`~chita_opt.pruning.PruneConfig`: ``sparsity``
        (required unless in ``config``), ``method="chita"``, ``stages=1``,
        ``schedule="exp"``, ``base_level``, ``n_samples`` (default up to
        1000), ``mini_batch=1``, ``random_state=0``, ``damping="auto"`` (or a
        number), ``damping_grid``, ``held_out_fraction=0.2``,
        ``first_order=False``, ``first_order_scale``, ``block_size``,
        ``max_gradient_columns``, ``executor``, ``solver_options``,
        ``progress=True``.

    Returns
    -------
    PruneReport
        Per stage: the damping chosen and the held-out loss of every
        candidate; per layer: the sparsity reached. With ``stages > 1`` and
        ``damping="auto"``, ``options["one_shot"]`` scores the one-shot prune
        the first stage also solved, and ``options["fallback"]`` says when it
        (or magnitude pruning) was returned because the multi-stage run scored
        worse on the held-out samples.
    """
    adapter = _adapter(model, loss_fn, select, params, chunk_size, vectorize, recalibrate_bn)
    cfg = make_config(config, **settings)
    snapshot = _snapshot(model, adapter)
    try:
        report = run_pipeline(adapter, data, cfg, held_out=held_out)
        if adapter.bn:  # how many BatchNorm layers got statistics of the pruned weights
            report.options["batchnorm_recalibrated"] = len(adapter.bn) if adapter.calibrated else 0
        adapter.write(report.weights, report.mask)
    except BaseException as exc:
        snapshot.restore()
        if isinstance(exc, Exception):
            exc.add_note(
                "chita_opt: prune failed; the model was restored to its state before the call"
            )
        raise
    logger.info("pruned %d tensors: %s", len(adapter.targets), repr(report))
    return report


def select_damping(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    held_out: Any,
    *,
    grid: Sequence[float] | None = None,
    config: PruneConfig | None = None,
    select: Select = None,
    params: Select = None,
    chunk_size: int | None = None,
    vectorize: bool = True,
    **settings: Any,
) -> DampingSelection:
    """Run the whole pruning once per damping in ``grid``; keep the best on ``held_out``.

    The model is not modified. ``held_out`` must be data not used for the
    gradients (same forms as ``data``). ``grid=None`` (default): ten times the
    Fisher's own scale ``lambda_0`` of the weights (one gradient pass) and four
    points down to ``1e-7 lambda_0``, two decades apart
    (:func:`chita_opt.pruning.selection.relative_grid`). Returns a
    :class:`~chita_opt.pruning.DampingSelection` with the chosen damping, the
    loss (and, for class-index targets, the error) of every candidate and the
    chosen run's report. Candidates are ranked as ``damping="auto"`` ranks them:
    the held-out classification error when the targets are class indices, ties
    broken by the mean loss; the loss alone otherwise. ``prune`` chooses
    the damping per stage by itself (``damping="auto"``, the default); this
    is for comparing whole runs side by side.
    """
    adapter = _adapter(model, loss_fn, select, params, chunk_size, vectorize)
    settings.setdefault("progress", False)
    cfg = make_config(config, **settings)
    snapshot = _snapshot(model, adapter)
    try:
        return select_damping_runs(adapter, data, held_out, cfg, grid)
    except BaseException:
        snapshot.restore()
        raise


def gradient_matrix(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    select: Select = None,
    params: Select = None,
    n_samples: int | None = None,
    mini_batch: int = 1,
    random_state: int | None = 0,
    dtype: Any = np.float32,
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> tuple[np.ndarray, np.ndarray, ParamLayout]:
    """Gradient rows of ``loss_fn(model(inputs), targets)`` w.r.t. the selected weights.

    Samples are drawn as :func:`prune` draws them (at random from tensors,
    seeded by ``random_state``; in order from loaders and iterables); the
    model is not modified (eval mode through ``torch.func``).

    Returns
    -------
    G : ndarray, shape (n_samples, p)
        Row ``i`` is the gradient for sample (or mini-batch) ``i``.
    w : ndarray, shape (p,)
        The current weights, float64.
    layout : ParamLayout
        Which tensor each column belongs to.
    """
    dt = _check_dtype(dtype)
    adapter = _adapter(model, loss_fn, select, params, chunk_size, vectorize)
    cfg = PruneConfig(sparsity=0.0, n_samples=n_samples, mini_batch=mini_batch,
                      random_state=random_state, progress=False)
    G, w = _gradient_matrix(adapter, data, cfg)
    return np.array(G, dtype=dt), w, adapter.layout


def held_out_loss(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    select: Select = None,
    params: Select = None,
) -> float:
    """Mean ``loss_fn`` of the model (eval mode) over ``data`` (batch-size weighted)."""
    adapter = _adapter(model, loss_fn, select, params, None, True)
    w, _ = adapter.flat_weights()
    return adapter.evaluate(w, adapter.batches(data)).loss


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype: expected np.float32 or np.float64, got {describe(dtype)}"
        ) from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected np.float32 or np.float64, got {dt}")
    return dt
