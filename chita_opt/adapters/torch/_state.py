"""Snapshots, write-back and masks of a PyTorch model (``torch.nn.utils.prune`` layout)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ...pruning import ParamLayout
from ._select import Target, candidates, check_model

# Every hook dictionary pruning may touch: torch.nn.utils.prune's pre-hooks, and
# the forward hooks prune_layerwise registers to capture layer inputs.
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


class Snapshot:
    """Everything :func:`prune` / :func:`gradual_prune` may change, to restore on failure."""

    def __init__(
        self, model: nn.Module, modules: Iterable[nn.Module], optimizer: Any = None
    ) -> None:
        self.training = [(m, m.training) for m in model.modules()]
        self.requires_grad = [(p, p.requires_grad) for p in model.parameters()]
        self.modules = []
        seen: set[int] = set()
        for mod in modules:
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            tensors = [
                t
                for t in list(mod._parameters.values()) + list(mod._buffers.values())
                if t is not None
            ]
            self.modules.append(
                (
                    mod,
                    dict(mod.__dict__),
                    dict(mod._parameters),
                    dict(mod._buffers),
                    set(mod._non_persistent_buffers_set),
                    {h: dict(getattr(mod, h)) for h in _HOOK_DICTS if hasattr(mod, h)},
                    [(t, t.detach().clone()) for t in tensors],
                )
            )
        self.optimizer = optimizer
        self.optimizer_state = (
            copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
        )

    def restore(self) -> None:
        with torch.no_grad():
            for mod, attrs, params, buffers, nonpersistent, hooks, data in self.modules:
                for key in [k for k in mod.__dict__ if k not in attrs]:
                    del mod.__dict__[key]
                for key, value in attrs.items():
                    if mod.__dict__.get(key) is not value:
                        mod.__dict__[key] = value
                mod._parameters.clear()
                mod._parameters.update(params)
                mod._buffers.clear()
                mod._buffers.update(buffers)
                mod._non_persistent_buffers_set.clear()
                mod._non_persistent_buffers_set.update(nonpersistent)
                for name, content in hooks.items():
                    d = getattr(mod, name)
                    d.clear()
                    d.update(content)
                for tensor, saved in data:
                    tensor.copy_(saved)
        for m, flag in self.training:
            m.training = flag
        for p, flag in self.requires_grad:
            p.requires_grad_(flag)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(self.optimizer_state)



def write_back(
    targets: Sequence[Target], layout: ParamLayout, w: np.ndarray, mask: np.ndarray
) -> None:
    """Write weights and masks into the model (caller restores a snapshot on failure)."""
    # Convert everything first so that a conversion error changes nothing.
    new = []
    for t, (a, b) in zip(targets, layout.ranges(), strict=True):
        leaf = t.leaf
        wt = torch.as_tensor(w[a:b].reshape(leaf.shape), dtype=leaf.dtype).to(leaf.device)
        mt = torch.as_tensor(mask[a:b].reshape(leaf.shape)).to(device=leaf.device, dtype=leaf.dtype)
        new.append((wt, mt))
    with torch.no_grad():
        for t, (wt, mt) in zip(targets, new, strict=True):
            mod, attr = t.module, t.attr
            if t.pruned:
                orig = mod._parameters[attr + "_orig"]
                buf = mod._buffers[attr + "_mask"]
                orig.copy_(wt)
                buf.copy_(mt)
            else:
                mod._parameters[attr].copy_(wt)  # type: ignore[union-attr]
                position = list(mod._parameters).index(attr)
                torch_prune.custom_from_mask(mod, attr, mt)
                move_parameter(mod, attr + "_orig", position)
    for t in targets:
        # what the pruning hook would compute at the next forward, so that
        # module.weight is already right before it
        mod, attr = t.module, t.attr
        setattr(mod, attr, mod._parameters[attr + "_orig"] * mod._buffers[attr + "_mask"])


def move_parameter(module: nn.Module, name: str, position: int) -> None:
    """Put ``name`` back at ``position`` in ``module._parameters``.

    torch.nn.utils.prune re-registers the tensor at the end; keeping the
    original order keeps ``model.parameters()`` (and optimizer state saved by
    position) aligned with the unpruned model.
    """
    items = list(module._parameters.items())
    current = [k for k, _ in items].index(name)
    item = items.pop(current)
    items.insert(position, item)
    module._parameters.clear()
    module._parameters.update(items)



# ====================================================================== masks
def pruned_entries(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    return [(name, mod, attr) for name, mod, attr, pruned in candidates(model) if pruned]


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pruning masks of the model, ``{name: bool tensor}`` (True = kept)."""
    check_model(model)
    return {name: mod._buffers[attr + "_mask"] != 0 for name, mod, attr in pruned_entries(model)}


def apply_masks(model: nn.Module) -> None:
    """Zero the pruned entries of every ``<name>_orig`` (call after an optimizer step).

    The forward pass already multiplies by the mask; this keeps the stored
    weights clean too (weight decay or momentum cannot resurrect them when
    the masks are made permanent).
    """
    check_model(model)
    with torch.no_grad():
        for _, mod, attr in pruned_entries(model):
            orig = mod._parameters[attr + "_orig"]
            orig.mul_(mod._buffers[attr + "_mask"])  # type: ignore[union-attr]


def make_permanent(model: nn.Module) -> list[str]:
    """Remove the pruning masks and hooks, keeping the pruned weights (zeros stay).

    Returns the names of the tensors that were un-masked. The ``Parameter``
    objects are kept, so an optimizer built earlier still refers to them.
    """
    check_model(model)
    done = []
    for name, mod, attr in pruned_entries(model):
        position = list(mod._parameters).index(attr + "_orig")
        torch_prune.remove(mod, attr)
        move_parameter(mod, attr, position)
        done.append(name)
    return done

