"""Framework-agnostic pruning: the one pipeline behind every adapter.

Everything here works on numpy arrays. An adapter implements
:class:`FrameworkAdapter` (``protocol.py``) for its framework;
``pipeline.run_pipeline(adapter, data, PruneConfig(...))`` draws the samples
(``samples.py``), holds out a share to choose the damping (``damping.py``),
streams gradient rows and runs :func:`multistage_prune` (``multistage.py``,
one stage in ``stages.py``); the adapter writes ``report.weights`` /
``report.mask`` back. docs/architecture.md has the picture.

API (stable)
------------
``PruneConfig(sparsity=None, pattern=None, method="chita", stages=1, ..., damping="auto", ...)``
    Every pruning setting, validated once (see its docstring); what the
    adapters' ``prune(..., config=...)`` and keywords build.
``ParamLayout(names, shapes)``
    Tensor names/shapes in flat-vector order: ``.p``, ``.sizes``, ``.offsets``,
    ``.slice(name)``, ``.ranges()``, ``.split(w) -> {name: view}``,
    ``.flatten(arrays)``, ``.blocks(block_size) -> [(start, stop), ...]``
    (blocks inside tensors), ``ParamLayout.from_arrays({name: array})``.
``sparsity_schedule(sparsity, stages, schedule="exp", *, base_level=None) -> ndarray``
    Levels per stage; ``schedule`` in :data:`SCHEDULES` (``exp``, ``poly``,
    ``linear``, ``const``) or an explicit sequence; base level default
    ``min(0.1, sparsity)``. ``stage_ks(p, levels)`` gives ``k`` per stage.
``multistage_prune(w0, gradient_fn, *, sparsity, stages=1, schedule="exp", base_level=None,
method="chita", damping=1e-3, damping_grid=None, evaluate=None, first_order=False,
first_order_scale=1.0, mask=None, layout=None, block_size=None, blocks=None,
block_ranking="magnitude", executor=None, max_columns=None, solver_options=None,
progress=True, options=None, on_stage=None, groups=None, group_cap=None) -> PruneReport``
    The loop. ``gradient_fn(w, columns) -> G`` returns gradient rows
    ``(n, columns.sum())`` at flat weights ``w`` (float64, p) for the
    coordinates where the boolean ``columns`` is True (only still-alive
    weights are ever requested, so memory is ``n x p_alive``; the returned
    array may be a reused buffer). Pruned weights stay at zero in later
    stages. ``method="magnitude"`` needs no gradients (``gradient_fn`` may be
    ``None``). With mini-batch gradient rows of ``m`` samples pass
    ``first_order_scale=1/m``. ``damping="auto"`` needs ``evaluate(w) ->``
    held-out loss (or a ``damping.Score``); ``groups``/``group_cap`` make the
    last stage N:M.
``PruneReport``
    ``.weights`` (p,), ``.mask`` (p,) bool, ``.stages`` (list of
    ``StageRecord``: sparsity, k, damping, damping_losses, damping_errors, held_out_loss,
    objective, gradient_time, solve_time, status), ``.layers``
    (``LayerSparsity`` per tensor when a layout is given), ``.achieved_sparsity``,
    ``.objective``, ``.gradient_time``,
    ``.solve_time``, ``.total_time``, ``.options``, ``.to_table()``,
    ``.to_dict()``; ``str(report)`` is a readable summary.
``select_damping(run, evaluate, grid=DEFAULT_DAMPING_GRID) -> DampingSelection``
    Whole runs compared side by side: ``run(damping) -> PruneReport`` (without
    touching the model), ``evaluate(report) -> held-out loss``; keeps the
    damping with the lowest loss. (``damping="auto"`` chooses per stage instead.)
Blocks (:mod:`chita_opt.pruning.blocks`)
    ``block_budgets(scores, blocks, k)``, ``BlockTask``, ``solve_block(task)``,
    ``solve_blocks(tasks, executor=None)`` -- any object with
    ``submit(fn, *args) -> future`` (``concurrent.futures`` executors,
    ``dask.distributed.Client``) runs the blocks.
"""

from .blocks import BlockResult, BlockTask, block_budgets, solve_block, solve_blocks
from .config import PruneConfig
from .layout import ParamLayout, uniform_blocks
from .multistage import DEFAULT_DAMPING, ModelValidityWarning, layer_sparsities, multistage_prune
from .protocol import FrameworkAdapter
from .report import GradualReport, LayerSparsity, PruneReport, StageRecord
from .schedules import DEFAULT_BASE_LEVEL, SCHEDULES, sparsity_schedule, stage_ks
from .selection import DEFAULT_DAMPING_GRID, DampingSelection, select_damping
from .stages import GradientFn

__all__ = [
    "DEFAULT_BASE_LEVEL",
    "DEFAULT_DAMPING",
    "DEFAULT_DAMPING_GRID",
    "SCHEDULES",
    "BlockResult",
    "BlockTask",
    "DampingSelection",
    "FrameworkAdapter",
    "GradientFn",
    "GradualReport",
    "LayerSparsity",
    "ModelValidityWarning",
    "ParamLayout",
    "PruneConfig",
    "PruneReport",
    "StageRecord",
    "block_budgets",
    "layer_sparsities",
    "multistage_prune",
    "select_damping",
    "solve_block",
    "solve_blocks",
    "sparsity_schedule",
    "stage_ks",
    "uniform_blocks",
]
