"""``functional_call`` as the adapter needs it: the model run on trial weights, left intact.

One tensor can appear under several names in two ways, which need opposite handling:

* **A module reached twice** (``self.b = self.a``; a cell applied at every step):
  ``functional_call``'s weight tying (``tie_weights=True``, its default) swaps and
  restores the tensor once per name, and with torch 2.13 left the *trial* tensor in
  the model afterwards (a plain tensor, no longer a parameter). The substitution here
  names such a tensor once and ties nothing: every use of the module sees it.
* **Distinct modules sharing one parameter** (``dec.weight = enc.weight``): every
  module must see the trial tensor, as each will see the weights written back, so
  every name of it is passed explicitly (:func:`tied_names`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["call", "tied_names"]


def tied_names(model: nn.Module, keys: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """For each of ``keys``, the names of the same tensor held by *other* modules."""
    entries: dict[int, list[tuple[str, int, str]]] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        prefix = mod_name + "." if mod_name else ""
        for attr, tensor in mod._parameters.items():
            if tensor is not None:
                entries.setdefault(id(tensor), []).append((prefix + attr, id(mod), attr))
    where = {name: (tid, mid, attr) for tid, found in entries.items() for name, mid, attr in found}
    out: dict[str, tuple[str, ...]] = {}
    for key in keys:
        if key not in where:
            continue
        tid, mid, attr = where[key]
        seen = {(mid, attr)}  # a module reached under another name holds no other copy
        others = []
        for name, m2, a2 in entries[tid]:
            if (m2, a2) not in seen:
                seen.add((m2, a2))
                others.append(name)
        if others:
            out[key] = tuple(others)
    return out


def call(
    model: nn.Module, params: dict[str, torch.Tensor], args: tuple[Any, ...],
    tied: Mapping[str, tuple[str, ...]],
) -> Any:
    """``model(*args)`` with ``params`` substituted (and their ``tied`` names), model intact."""
    if tied:
        params = dict(params)
        for key, names in tied.items():
            if key in params:
                for name in names:
                    params[name] = params[key]
    return functional_call(model, params, args, tie_weights=False)
