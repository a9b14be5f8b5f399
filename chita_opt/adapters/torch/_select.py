"""Which tensors of a PyTorch model are pruned, and their flat layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from ..._validation import describe
from ...pruning import ParamLayout

#: Module types whose ``weight`` is pruned by default.
DEFAULT_PRUNABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

Select = Sequence[str] | str | Callable[[str, torch.Tensor], bool] | None


@dataclass(frozen=True, eq=False)
class Target:
    """One pruned tensor: ``module.<attr>``, possibly already pruned by torch.nn.utils.prune."""

    name: str
    module: nn.Module
    attr: str
    pruned: bool

    @property
    def key(self) -> str:
        """Name of the leaf tensor to substitute in ``functional_call``."""
        return self.name + "_orig" if self.pruned else self.name

    @property
    def leaf(self) -> torch.Tensor:
        if self.pruned:
            return self.module._parameters[self.attr + "_orig"]  # type: ignore[return-value]
        return self.module._parameters[self.attr]  # type: ignore[return-value]

    @property
    def mask(self) -> torch.Tensor | None:
        return self.module._buffers[self.attr + "_mask"] if self.pruned else None

    def effective(self) -> torch.Tensor:
        """The weight the forward pass uses (``orig * mask`` when pruned), detached."""
        leaf = self.leaf.detach()
        m = self.mask
        return leaf * m if m is not None else leaf


def _pruning_hook(module: nn.Module, attr: str) -> torch_prune.BasePruningMethod | None:
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == attr:
            return hook
        if isinstance(hook, torch_prune.PruningContainer) and hook._tensor_name == attr:
            return hook
    return None


def candidates(model: nn.Module) -> list[tuple[str, nn.Module, str, bool]]:
    """Every prunable floating tensor as (full name, module, attr, already pruned)."""
    out = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, parametrize.ParametrizationList):
            continue  # the original of a parametrized tensor is not the weight the model uses
        prefix = mod_name + "." if mod_name else ""
        for pname, param in mod._parameters.items():
            if param is None or not torch.is_floating_point(param):
                continue
            if pname.endswith("_orig") and pname[:-5] + "_mask" in mod._buffers:
                attr = pname[:-5]
                if _pruning_hook(mod, attr) is not None:
                    out.append((prefix + attr, mod, attr, True))
                    continue
            out.append((prefix + pname, mod, pname, False))
    return out


def select_targets(model: nn.Module, params: Select, name: str = "select") -> list[Target]:
    """The tensors chosen by a selector (``name`` is the argument the user passed it as)."""
    cands = candidates(model)
    if params is None:
        parametrized = [
            mod_name
            for mod_name, mod in model.named_modules()
            if isinstance(mod, DEFAULT_PRUNABLE) and parametrize.is_parametrized(mod, "weight")
        ]
        if parametrized:
            raise ValueError(
                f"{name}: the weights of {parametrized} are parametrized "
                "(torch.nn.utils.parametrize); remove the parametrizations, or pass "
                f"{name}= to choose other tensors"
            )
        chosen = [c for c in cands if isinstance(c[1], DEFAULT_PRUNABLE) and c[2] == "weight"]
        what = "the weights of nn.Linear / nn.Conv1d/2d/3d layers"
    elif callable(params):
        chosen = []
        for c in cands:
            tensor = c[1]._parameters[c[2] + "_orig"] if c[3] else c[1]._parameters[c[2]]
            if params(c[0], tensor):
                chosen.append(c)
        what = f"parameters accepted by the {name} predicate"
    else:
        names = [params] if isinstance(params, str) else params  # type: ignore[assignment]
        try:
            names = list(names)
        except TypeError:
            raise TypeError(
                f"{name}: expected None, a sequence of parameter names or a predicate "
                f"(name, tensor) -> bool, got {describe(params)}"
            ) from None
        by_name = {c[0]: c for c in cands}
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise TypeError(f"{name}: expected parameter names (str), got {describe(bad[0])}")
        missing = [n for n in names if n not in by_name]
        if missing:
            avail = sorted(by_name)
            shown = ", ".join(avail[:12]) + (", ..." if len(avail) > 12 else "")
            raise ValueError(
                f"{name}: no floating-point parameter named {missing} in the model; "
                f"available: [{shown}]"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: expected distinct names, got {names}")
        wanted = set(names)
        chosen = [c for c in cands if c[0] in wanted]
        what = f"parameters {names}"
    if not chosen:
        raise ValueError(f"{name}: no parameters selected (looked for {what})")
    targets = []
    seen: dict[int, str] = {}
    for tname, mod, attr, pruned in chosen:
        t = Target(tname, mod, attr, pruned)
        leaf = t.leaf
        if id(leaf) in seen:
            raise ValueError(
                f"{name}: {tname!r} and {seen[id(leaf)]!r} are the same (tied) tensor; "
                "select only one of them"
            )
        seen[id(leaf)] = tname
        if leaf.numel() == 0:
            raise ValueError(f"{name}: {tname!r} is empty (shape {tuple(leaf.shape)})")
        targets.append(t)
    return targets


def selected_params(model: nn.Module, select: Select = None, *, params: Select = None) -> list[str]:
    """Names of the tensors :func:`prune` would prune (default: Linear/Conv weights)."""
    check_model(model)
    select, name = resolve_selector(select, params)
    return [t.name for t in select_targets(model, select, name)]


def resolve_selector(select: Select, params: Select) -> tuple[Select, str]:
    """``select=`` (the name both adapters use) or its older PyTorch spelling ``params=``."""
    if params is not None:
        if select is not None:
            raise TypeError("select/params: expected one tensor selector, got both")
        return params, "params"
    return select, "select"


def layout_of(targets: Sequence[Target]) -> ParamLayout:
    return ParamLayout([t.name for t in targets], [tuple(t.leaf.shape) for t in targets])


def flat_weights(targets: Sequence[Target], layout: ParamLayout) -> tuple[np.ndarray, np.ndarray]:
    """Current effective weights (float64) and the existing masks (bool), flattened."""
    w = np.empty(layout.p)
    alive = np.ones(layout.p, dtype=bool)
    for t, (a, b) in zip(targets, layout.ranges(), strict=True):
        w[a:b] = t.effective().reshape(-1).to("cpu", torch.float64).numpy()
        m = t.mask
        if m is not None:
            alive[a:b] = m.detach().reshape(-1).to("cpu").numpy() != 0
    if not np.all(np.isfinite(w)):
        bad = [
            t.name
            for t, (a, b) in zip(targets, layout.ranges(), strict=True)
            if not np.all(np.isfinite(w[a:b]))
        ]
        raise ValueError(f"model: expected finite weights, got NaN/Inf in {bad}")
    return w, alive




def check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")


def check_loss(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(
            "loss_fn: expected a callable loss_fn(outputs, targets) -> scalar, "
            f"got {describe(loss_fn)}"
        )
