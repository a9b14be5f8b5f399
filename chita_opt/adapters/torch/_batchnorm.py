"""BatchNorm running statistics re-estimated for pruned weights.

A BatchNorm layer normalises with the running mean and variance of its
inputs measured while the network was trained. Pruning changes those inputs,
so the stored statistics no longer match and the pruned network can collapse
even when its weights are a good solution (on the model zoo's BN CNNs at 90%
sparsity the pruned networks scored near chance with the stale statistics).
Here the statistics are measured again on the gradient samples, at the pruned
weights, by forward passes only -- for the held-out score of every damping
candidate and for the weights written back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import _data
from ._functional import call

# Samples per forward pass when re-estimating (each pass is one BN "batch").
_CHUNK = 256


def batchnorm_modules(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """Every BatchNorm layer that keeps running statistics, with its name."""
    return [
        (name, m) for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        and m.running_mean is not None and m.running_var is not None
    ]


def recalibrated_buffers(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    bn: list[tuple[str, nn.modules.batchnorm._BatchNorm]],
    inputs: Any,
    device: torch.device,
    tied: Mapping[str, tuple[str, ...]],
) -> dict[str, torch.Tensor]:
    """Running statistics of every BN layer at weights ``params`` on ``inputs`` (new tensors).

    ``tied``: other names of the ``params`` tensors (:func:`._functional.tied_names`).

    The model is not modified: the statistics accumulate in fresh buffers
    passed through ``functional_call`` (a cumulative average over the passes:
    ``momentum=None`` while this runs), with every other module in eval mode.
    """
    buffers: dict[str, torch.Tensor] = {}
    for name, m in bn:
        prefix = f"{name}." if name else ""
        buffers[prefix + "running_mean"] = torch.zeros_like(m.running_mean)
        buffers[prefix + "running_var"] = torch.ones_like(m.running_var)
        if m.num_batches_tracked is not None:
            buffers[prefix + "num_batches_tracked"] = torch.zeros_like(m.num_batches_tracked)
    saved = [(m, m.training, m.momentum) for _, m in bn]
    try:
        for m, _, _ in saved:
            m.train()
            m.momentum = None
        merged = {**params, **buffers}
        n = _data.batch_len(inputs, inputs)
        with torch.no_grad():
            for start in range(0, n, _CHUNK):
                x = _data._slice(inputs, start, start + _CHUNK)
                call(model, merged, (_data.to_device(x, device),), tied)
    finally:
        for m, training, momentum in saved:
            m.training = training
            m.momentum = momentum
    return buffers


def write_statistics(bn: list[tuple[str, nn.modules.batchnorm._BatchNorm]],
                     buffers: Mapping[str, torch.Tensor]) -> None:
    """Copy re-estimated statistics into the model's BN layers (caller snapshots first)."""
    with torch.no_grad():
        for name, m in bn:
            prefix = f"{name}." if name else ""
            m.running_mean.copy_(buffers[prefix + "running_mean"])
            m.running_var.copy_(buffers[prefix + "running_var"])
            if m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(buffers[prefix + "num_batches_tracked"])
