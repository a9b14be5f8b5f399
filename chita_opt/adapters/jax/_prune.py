"""``prune``, ``select_damping``, ``gradient_matrix``, ``held_out_loss``,
``classification_error`` (JAX pytrees)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..._validation import check_positive_int, describe
from ..._warnings import warn
from ...pruning import DampingSelection, PruneConfig, PruneReport
from ...pruning.config import make_config
from ...pruning.pipeline import gradient_matrix as _gradient_matrix
from ...pruning.pipeline import run_pipeline, select_damping_runs
from ._adapter import JaxAdapter, LossFn, _is_tuple_of_arrays, check_callable, mean_loss
from ._layout import PytreeLayout, Select

_ERROR_FN_HINT = (
    "error_fn: not given, so the held-out choice (damping='auto', the first-order guard, "
    "select_damping) "
    "ranks by loss alone -- this adapter sees a loss function, not the model's outputs -- "
    "and these targets are class indices. For a classifier pass "
    "error_fn=chita_opt.adapters.jax.classification_error(apply_fn) to rank by held-out "
    "error first, as the PyTorch adapter does (on the model zoo's MLPs the loss alone chose "
    "worse dampings; docs/pruning_jax.md), or filter this warning."
)


def _warn_if_ranked_by_loss(error_fn: LossFn | None, data: Any) -> None:
    """The ``_ERROR_FN_HINT`` warning: held-out candidates about to be ranked by loss
    alone although ``data``'s targets are class indices."""
    if error_fn is None and _class_indices(data):
        warn(_ERROR_FN_HINT, UserWarning)


def _class_indices(data: Any) -> bool:
    """Targets of ``data`` (arrays, or the first batch of a list) that are class indices:
    one integer per example. Other iterables are not read ahead (they may be one-shot)."""
    if isinstance(data, (list, tuple)) and data and not _is_tuple_of_arrays(data):
        data = data[0]
    if not _is_tuple_of_arrays(data):
        return False
    targets = data[1]
    return np.ndim(targets) == 1 and np.issubdtype(np.dtype(targets.dtype), np.integer)


def _adapter(loss_fn: Any, params: Any, select: Select, masks: Any, chunk_size: Any,
             layout: PytreeLayout | None = None, error_fn: Any = None) -> JaxAdapter:
    check_callable(loss_fn)
    chunk = check_positive_int(chunk_size, "chunk_size", allow_none=True)
    adapter = JaxAdapter(loss_fn, params, select=select, masks=masks, chunk_size=chunk,
                         error_fn=error_fn)
    if layout is not None:
        adapter.layout = layout
    return adapter


def prune(
    loss_fn: LossFn,
    params: Any,
    data: Any,
    *,
    config: PruneConfig | None = None,
    held_out: Any = None,
    select: Select = None,
    masks: Any = None,
    chunk_size: int | None = None,
    output_axis: int = -1,
    error_fn: LossFn | None = None,
    **settings: Any,
) -> tuple[Any, Any, PruneReport]:
    """Prune a pytree of parameters with CHITA / CHITA++ (or magnitude pruning).

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, inputs, targets) -> scalar`` (the mean loss of a batch).
    params : pytree
        The trained parameters; never modified.
    data : tuple of arrays or iterable of batches
        From arrays, samples are drawn at random (seeded by ``random_state``);
        iterables are read in their order, a fresh read per stage (a one-shot
        iterator is read once and kept).
    config : PruneConfig, optional
        All pruning settings at once; keywords given as well override it.
    held_out : tuple of arrays or iterable of batches, optional
        Held-out data for the damping choice (default: a share of ``data``).
    select : None, str, sequence of str or callable
        Which leaves to prune (see the package docstring).
    masks : pytree of bool, optional
        Weights allowed to be non-zero at the start (e.g. from an earlier call).
    chunk_size : int, optional
        Gradient rows per jitted call (default: as many as fit in 64 MiB, at most 256).
    output_axis : {-1, 0}
        Which axis of a weight leaf indexes outputs, for ``pattern="N:M"``
        (groups run along the others): -1 for Flax / Haiku kernels ``(in, out)``,
        0 for ``(out, in)`` matrices used as ``x @ w.T``.
    error_fn : callable, optional
        ``error_fn(params, inputs, targets) -> fraction wrong`` on a batch: with
        it the damping choice ranks candidates by held-out classification error
        first, then loss (what the PyTorch adapter does by itself for class-index
        targets); without it, by loss. For a classifier pass
        ``error_fn=classification_error(apply_fn)``: on 33 MLP settings of the
        model zoo, ranking by loss alone chose worse dampings (validation
        accuracy 89.5% against 90.0%, up to 12.7 points on one setting;
        docs/pruning_jax.md). Without it, class-index targets (integers of shape
        ``(batch,)``) and ``damping="auto"`` give a ``UserWarning`` saying so.
    **settings
        The fields of :class:`~chita_opt.pruning.PruneConfig` (the same as
        :func:`chita_opt.adapters.torch.prune`): ``sparsity`` (required unless
        in ``config``), ``method``, ``stages``, ``schedule``, ``base_level``,
        ``n_samples``, ``mini_batch``, ``random_state``, ``damping="auto"``,
        ``damping_grid``, ``held_out_fraction``, ``first_order``,
        ``first_order_scale``, ``block_size``, ``max_gradient_columns``,
        ``executor``, ``solver_options``, ``progress``.

    Returns
    -------
    new_params : pytree
        Same structure, dtypes, shapes and devices as ``params``, pruned.
    masks : pytree of bool
        ``True`` where a weight may be non-zero (all ``True`` in leaves not selected).
    report : PruneReport
        As from the PyTorch adapter (``options["one_shot"]`` and
        ``options["fallback"]`` for CHITA++ with ``damping="auto"``).
    """
    adapter = _adapter(loss_fn, params, select, masks, chunk_size, error_fn=error_fn)
    if output_axis not in (0, -1) or isinstance(output_axis, bool):
        raise ValueError(f"output_axis: expected -1 or 0, got {output_axis!r}")
    adapter.output_axis = output_axis
    cfg = make_config(config, **settings)
    ranked = cfg.needs_gradients and (cfg.auto_damping or cfg.first_order)
    if ranked:
        _warn_if_ranked_by_loss(error_fn, held_out if held_out is not None else data)
    report = run_pipeline(adapter, data, cfg, held_out=held_out,
                          options={"leaves": list(adapter.layout.names)})
    new_params, new_masks = adapter.write(report.weights, report.mask)
    return new_params, new_masks, report


def select_damping(
    loss_fn: LossFn,
    params: Any,
    data: Any,
    held_out: Any,
    *,
    grid: Sequence[float] | None = None,
    config: PruneConfig | None = None,
    select: Select = None,
    masks: Any = None,
    chunk_size: int | None = None,
    error_fn: LossFn | None = None,
    **settings: Any,
) -> DampingSelection:
    """Run the whole pruning once per damping in ``grid``; keep the best on ``held_out``.

    The JAX counterpart of :func:`chita_opt.adapters.torch.select_damping`:
    ``params`` are not modified, ``held_out`` is data not used for the gradients
    (same forms as ``data``), ``grid=None`` is relative to the Fisher's own scale
    (:func:`chita_opt.pruning.selection.relative_grid`), and the
    :class:`~chita_opt.pruning.DampingSelection` holds the chosen damping, the
    held-out loss (and, with ``error_fn``, the error, ranked first as by
    ``damping="auto"``) of every candidate and the chosen run's report (write its
    weights with ``PytreeLayout.unflatten_params``, or call :func:`prune` with
    ``damping=selection.damping``). :func:`prune` chooses the damping per stage
    by itself (``damping="auto"``, the default); this compares whole runs.
    ``error_fn`` as for :func:`prune`: with it the runs are ranked by held-out
    classification error, then loss; without it, by loss (and class-index
    targets give a ``UserWarning`` saying so).
    """
    adapter = _adapter(loss_fn, params, select, masks, chunk_size, error_fn=error_fn)
    _warn_if_ranked_by_loss(error_fn, held_out)
    settings.setdefault("progress", False)
    return select_damping_runs(adapter, data, held_out, make_config(config, **settings), grid,
                               options={"leaves": list(adapter.layout.names)})


def gradient_matrix(
    loss_fn: LossFn,
    params: Any,
    data: Any,
    *,
    select: Select = None,
    n_samples: int | None = None,
    mini_batch: int = 1,
    random_state: int | None = 0,
    chunk_size: int | None = None,
    layout: PytreeLayout | None = None,
) -> tuple[np.ndarray, np.ndarray, PytreeLayout]:
    """Per-example (or per-mini-batch) gradients of the selected leaves.

    Samples are drawn as :func:`prune` draws them: at random from arrays
    (seeded by ``random_state``), in order from iterables; ``n_samples``
    rows (default: up to 1000; an explicit number the data cannot supply is
    an error).

    Returns
    -------
    G : ndarray, shape (n, p), float32
    w : ndarray, shape (p,), float64
        The selected weights, flattened in the same order as the columns of ``G``.
    layout : PytreeLayout
        ``layout.unflatten_params(w, params)`` writes a vector back into a copy of ``params``.
    """
    adapter = _adapter(loss_fn, params, select, None, chunk_size, layout)
    cfg = PruneConfig(sparsity=0.0, n_samples=n_samples, mini_batch=mini_batch,
                      random_state=random_state, progress=False)
    G, w = _gradient_matrix(adapter, data, cfg)
    return np.array(G), w, adapter.layout


def classification_error(apply_fn: Callable[[Any, Any], Any]) -> LossFn:
    """``error_fn`` for :func:`prune` from a model's ``apply_fn(params, inputs) -> scores``.

    The returned ``error_fn(params, inputs, targets)`` is the fraction of
    examples whose highest score along the last axis is not the target index
    (class-index targets, as ``optax.softmax_cross_entropy_with_integer_labels``
    takes them; token targets ``(batch, time)`` count per token). With it,
    ``damping="auto"`` ranks candidates by held-out error first, then loss,
    as the PyTorch adapter does by itself. For Flax, ``apply_fn`` is
    ``model.apply`` (called with the same variables pytree ``prune`` gets).
    """
    if not callable(apply_fn):
        raise TypeError(
            "apply_fn: expected a callable apply_fn(params, inputs) -> scores, got "
            f"{describe(apply_fn)}"
        )

    def error_fn(params: Any, inputs: Any, targets: Any) -> Any:
        scores = apply_fn(params, inputs)
        return jnp.mean(jnp.argmax(scores, axis=-1) != targets)

    error_fn.__qualname__ = error_fn.__name__ = "classification_error"
    return error_fn


def held_out_loss(loss_fn: LossFn, params: Any, data: Any, *, batch_size: int = 1024) -> float:
    """Mean of ``loss_fn`` over all examples of ``data`` (weighted by batch size).

    ``data`` is a tuple of arrays or an iterable of batches, as for
    :func:`gradient_matrix`; examples are evaluated in jitted batches of
    ``batch_size``.
    """
    check_callable(loss_fn)
    batch_size = int(check_positive_int(batch_size, "batch_size"))  # type: ignore[arg-type]
    from ._adapter import _batches

    return mean_loss(loss_fn, params, _batches(data), batch_size)
