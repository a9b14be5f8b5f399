"""2:4-pruned Linear weights as ``torch.sparse`` semi-structured tensors (CUDA only).

After ``prune(model, loss, data, pattern="2:4")`` and :func:`make_permanent`,
:func:`to_semi_structured` stores each selected ``nn.Linear`` weight with
``torch.sparse.to_sparse_semi_structured``, the layout NVIDIA's sparse tensor
cores run (compute capability 8.0+, float16 / bfloat16 weights). Nothing here
runs without a CUDA device; the test is skipped where there is none.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..._validation import describe
from ._select import check_model
from ._state import pruned_entries

__all__ = ["to_semi_structured"]

_DTYPES = (torch.float16, torch.bfloat16)


def _is_two_four(weight: torch.Tensor) -> bool:
    if weight.ndim != 2 or weight.shape[1] % 4:
        return False
    counts = (weight.detach().reshape(weight.shape[0], -1, 4) != 0).sum(-1)
    return bool((counts <= 2).all())


def to_semi_structured(
    model: nn.Module, select: Callable[[str, nn.Linear], bool] | None = None
) -> list[str]:
    """Convert every selected 2:4-sparse ``nn.Linear`` weight in place; returns their names.

    Parameters
    ----------
    model : nn.Module
        Pruned with ``pattern="2:4"`` and with its masks removed
        (:func:`make_permanent`): a weight still under a pruning mask is refused.
    select : callable ``(name, module) -> bool``, optional
        Which Linear layers to convert (default: all).

    Every layer is checked before any is converted: a layer on the CPU, in
    another dtype than float16/bfloat16, or not 2:4 along its input dimension
    is an error naming it, and nothing changes.
    """
    check_model(model)
    if select is not None and not callable(select):
        raise TypeError(f"select: expected None or a callable (name, module) -> bool, "
                        f"got {describe(select)}")
    masked = {name for name, _, _ in pruned_entries(model)}
    chosen = [(name, mod) for name, mod in model.named_modules()
              if isinstance(mod, nn.Linear) and (select is None or select(name, mod))]
    problems = []
    for name, mod in chosen:
        w = mod.weight
        if f"{name}.weight" in masked or not isinstance(w, torch.Tensor):
            problems.append(f"{name}: still masked (call make_permanent(model) first)")
        elif w.device.type != "cuda":
            problems.append(f"{name}: on {w.device.type}, expected a CUDA device")
        elif w.dtype not in _DTYPES:
            problems.append(f"{name}: dtype {w.dtype}, expected float16 or bfloat16")
        elif not _is_two_four(w):
            problems.append(f"{name}: not 2:4 along its input dimension")
    if problems:
        raise ValueError("model: cannot store these Linear weights as 2:4 semi-structured "
                         "tensors: " + "; ".join(problems))
    from torch.sparse import to_sparse_semi_structured

    converted = [(mod, nn.Parameter(to_sparse_semi_structured(mod.weight.detach()),
                                    requires_grad=mod.weight.requires_grad))
                 for _, mod in chosen]  # converted first: a failure changes nothing
    for mod, param in converted:
        mod.weight = param
    return [name for name, _ in chosen]
