"""Gradual pruning: prune to the next level, fine-tune, repeat (PyTorch)."""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._validation import check_positive_int, check_sparsity, describe
from ...pruning import sparsity_schedule
from ...pruning.report import GradualReport
from ._data import iter_batches, to_device
from ._prune import prune
from ._select import check_loss, check_model
from ._state import Snapshot, apply_masks

logger = logging.getLogger(__name__)


def gradual_prune(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    sparsity: float,
    optimizer: torch.optim.Optimizer,
    pruning_steps: int = 5,
    fine_tune_steps: int = 100,
    final_fine_tune_steps: int | None = None,
    schedule: str | Sequence[float] = "poly",
    base_level: float | None = None,
    train_data: Any = None,
    progress: bool = True,
    **prune_options: Any,
) -> GradualReport:
    """Prune gradually: prune to the next level, fine-tune, repeat (the paper's gradual setting).

    At each of ``pruning_steps`` levels of the schedule (default the cubic
    ``"poly"`` schedule of gradual pruning) the model is pruned with
    :func:`prune` (``**prune_options`` are passed on, e.g. ``stages``,
    ``first_order``, ``n_samples``), then fine-tuned for ``fine_tune_steps``
    optimizer steps on ``train_data`` (default ``data``), re-applying the
    masks after every step. The last level is followed by
    ``final_fine_tune_steps`` steps (default ``fine_tune_steps``).

    If anything fails, the model and the optimizer's state are restored to
    what they were before the call.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Built on ``model.parameters()`` (before or after pruning: the pruned
        ``Parameter`` objects are kept).
    """
    check_model(model)
    check_loss(loss_fn)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {describe(optimizer)}")
    sparsity = check_sparsity(sparsity, "sparsity")
    pruning_steps = int(check_positive_int(pruning_steps, "pruning_steps"))  # type: ignore[arg-type]
    fine_tune_steps = _check_nonneg_int(fine_tune_steps, "fine_tune_steps")
    final_steps = (
        fine_tune_steps
        if final_fine_tune_steps is None
        else _check_nonneg_int(final_fine_tune_steps, "final_fine_tune_steps")
    )
    levels = sparsity_schedule(sparsity, pruning_steps, schedule, base_level=base_level)
    if "sparsity" in prune_options or "progress" in prune_options:
        raise TypeError("prune_options: sparsity/progress are set by gradual_prune itself")
    train_data = data if train_data is None else train_data
    snapshot = Snapshot(model, list(model.modules()), optimizer)
    report = GradualReport(levels=[float(s) for s in levels])
    clock = time.perf_counter()
    try:
        for i, level in enumerate(levels):
            rep = prune(
                model, loss_fn, data, sparsity=float(level), progress=False, **prune_options
            )
            report.reports.append(rep)
            steps = final_steps if i == len(levels) - 1 else fine_tune_steps
            t0 = time.perf_counter()
            losses = _fine_tune(
                model,
                loss_fn,
                train_data,
                optimizer,
                steps,
                progress=progress,
                desc=f"fine-tune {i + 1}/{len(levels)}",
            )
            report.fine_tune_time += time.perf_counter() - t0
            report.train_losses.append(losses)
            logger.info(
                "gradual step %d/%d: sparsity %.4f, mean fine-tune loss %s",
                i + 1,
                len(levels),
                level,
                np.mean(losses) if losses else None,
            )
    except BaseException as exc:
        snapshot.restore()
        if isinstance(exc, Exception):
            exc.add_note(
                "chita_opt: gradual_prune failed; the model and optimizer were restored "
                "to their state before the call"
            )
        raise
    report.total_time = time.perf_counter() - clock
    return report


def _fine_tune(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    progress: bool,
    desc: str,
) -> list[float]:
    if steps == 0:
        return []
    from ...pruning.blocks import _progress

    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    losses: list[float] = []
    bar = _progress(steps, progress, desc)
    try:
        while len(losses) < steps:
            got_batch = False
            for x, y in iter_batches(data):
                got_batch = True
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(to_device(x, device)), to_device(y, device))
                loss.backward()
                optimizer.step()
                apply_masks(model)
                losses.append(float(loss.detach()))
                bar.update(1)
                if len(losses) >= steps:
                    break
            if not got_batch:
                raise ValueError(
                    "train_data: expected at least one (inputs, targets) batch, got none"
                )
    finally:
        bar.close()
        model.train(was_training)
    return losses



def _check_nonneg_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a non-negative integer, got {describe(value)}")
    if int(value) < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {int(value)}")
    return int(value)
