"""Layer-wise (reconstruction) pruning of PyTorch models, one Linear at a time.

    from chita_opt.adapters.torch import prune_layerwise

    report = prune_layerwise(model, calibration_batches, sparsity=0.5)   # or pattern="2:4"
    print(report)            # per layer: kept share, reconstruction error, time

For every selected layer (by default each ``nn.Linear`` and Hugging Face
``Conv1D`` except ``lm_head`` and weights tied to an embedding), in forward
order:

1. the calibration data runs through the model with a forward hook on the
   layer that adds ``X^T X`` of its inputs to a d_in x d_in float64 Gram
   matrix ``H`` (activations are never stored; the pass stops right after the
   layer when it is called once per forward). Layers that read the same input
   tensor (q/k/v projections) share one pass.
2. :func:`chita_opt.layerwise.solve_layer` solves the layer problem in ``H``
   with damping ``damping * mean(diag H)`` (SparseGPT's relative "percdamp").
3. the weights are written back and masked with :mod:`torch.nn.utils.prune`
   (``weight_orig`` + ``weight_mask``), so the next layers see the pruned ones
   (sequential, as SparseGPT does).

On any exception, KeyboardInterrupt included, the model is restored exactly
(weights, masks, hooks, training flags) and the exception propagates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..._validation import check_nonnegative, describe
from ...layerwise import LAYER_METHODS, budget_from_sparsity, solve_layer
from ._state import Snapshot

__all__ = ["LayerRecord", "LayerwiseReport", "prune_layerwise"]

logger = logging.getLogger(__name__)


@dataclass
class LayerRecord:
    """One layer: kept weights, errors ``1/2 ||X (W - W̄)^T||^2`` on its calibration inputs."""

    name: str
    shape: tuple[int, int]
    budget: str
    kept: int
    error_magnitude: float  # magnitude pruning at the same budget: the reference
    error: float  # after the solver
    dense_energy: float  # 1/2 ||X W̄^T||^2, the scale of the layer's output
    damping: float
    solve_seconds: float
    capture_seconds: float

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / (self.shape[0] * self.shape[1])

    @property
    def relative_error(self) -> float:
        return self.error / self.dense_energy if self.dense_energy > 0 else 0.0


@dataclass
class LayerwiseReport:
    method: str
    layers: list[LayerRecord] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        head = f"{'layer':<36} {'shape':>11} {'budget':>13} {'sparsity':>8} " \
               f"{'err(magn)':>10} {'err':>10} {'rel err':>8} {'time s':>7}"
        lines = [f"layer-wise pruning ({self.method}), {self.seconds:.1f} s", head]
        for r in self.layers:
            lines.append(
                f"{r.name[-36:]:<36} {f'{r.shape[0]}x{r.shape[1]}':>11} {r.budget:>13} "
                f"{r.sparsity:8.1%} {r.error_magnitude:10.4g} {r.error:10.4g} "
                f"{r.relative_error:8.2%} {r.solve_seconds + r.capture_seconds:7.2f}"
            )
        return "\n".join(lines)


class _Stop(Exception):
    """Raised by a capture hook to end a forward pass early."""


def _is_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2): y = x @ W + b with W (in, out)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _default_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out = []
    for name, mod in model.named_modules():
        if not (isinstance(mod, nn.Linear) or _is_conv1d(mod)):
            continue
        if name.split(".")[-1] == "lm_head" or id(getattr(mod, "weight", None)) in tied:
            continue
        out.append((name, mod))
    return out


def _select(model: nn.Module, layers: Any) -> list[tuple[str, nn.Module]]:
    allowed = {n: m for n, m in model.named_modules()
               if isinstance(m, nn.Linear) or _is_conv1d(m)}
    if layers is None:
        chosen = _default_layers(model)
    elif callable(layers):
        chosen = [(n, m) for n, m in allowed.items() if layers(n, m)]
    elif isinstance(layers, Iterable) and not isinstance(layers, (str, bytes)):
        names = list(layers)
        bad = [n for n in names if n not in allowed]
        if bad:
            raise ValueError(f"layers: expected names of Linear modules such as "
                             f"{list(allowed)[:3]}, got unknown {bad[:3]}")
        chosen = [(n, allowed[n]) for n in names]
    else:
        raise TypeError(f"layers: expected None, a list of module names or a predicate "
                        f"(name, module) -> bool, got {describe(layers)}")
    if not chosen:
        raise ValueError("layers: expected at least one Linear layer to prune, got none")
    for name, mod in chosen:
        if hasattr(mod, "weight_mask"):
            raise ValueError(f"layers: {name!r} already carries a torch.nn.utils.prune mask; "
                             "call torch.nn.utils.prune.remove(module, 'weight') first")
    return chosen


def _batches(data: Any) -> list[Any]:
    if isinstance(data, torch.Tensor):
        if data.ndim == 0 or data.shape[0] == 0:
            raise ValueError(f"data: expected a non-empty batch of inputs, got {describe(data)}")
        return [data]
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        batches = list(data)
        if not batches:
            raise ValueError("data: expected at least one calibration batch, got an empty iterable")
        for b in batches:
            if not isinstance(b, (torch.Tensor, Mapping, tuple, list)):
                raise TypeError(f"data: expected batches that are tensors, dicts of tensors "
                                f"or (inputs, ...) tuples, got {describe(b)}")
        return batches
    raise TypeError(f"data: expected a tensor, an iterable of batches or a dict of tensors, "
                    f"got {describe(data)}")


def _forward(model: nn.Module, batch: Any, device: torch.device | None) -> None:
    def to(x):
        return x.to(device) if device is not None and isinstance(x, torch.Tensor) else x
    if isinstance(batch, Mapping):
        model(**{k: to(v) for k, v in batch.items()})
    elif isinstance(batch, (tuple, list)):
        model(to(batch[0]))  # (inputs, targets) as a DataLoader yields
    else:
        model(to(batch))


def _run(model, batches, device) -> None:
    for batch in batches:
        try:
            _forward(model, batch, device)
        except _Stop:
            pass


def _plan(model, chosen, batches, device) -> list[list[tuple[str, nn.Module]]]:
    """Forward order of the layers, grouped when consecutive ones read one input tensor."""
    # (index in chosen, the input tensor itself): holding the tensor keeps it
    # alive, so "same input" is an identity test, not a reusable id()
    order: list[tuple[int, Any]] = []
    calls = [0] * len(chosen)
    handles = []
    for idx, (_, mod) in enumerate(chosen):
        def hook(m, args, idx=idx):
            calls[idx] += 1
            if calls[idx] == 1:
                order.append((idx, args[0]))
        handles.append(mod.register_forward_pre_hook(hook))
    try:
        _run(model, batches[:1], device)
    finally:
        for h in handles:
            h.remove()
    missing = [chosen[i][0] for i in range(len(chosen)) if calls[i] == 0]
    if missing:
        raise ValueError(f"layers: {missing[:3]} never ran in a forward pass of the calibration "
                         "data, so they have no inputs to reconstruct")
    groups: list[list[int]] = []
    last_input = None
    for idx, inp in order:
        if groups and inp is last_input:
            groups[-1].append(idx)
        else:
            groups.append([idx])
        last_input = inp
    # early stop is safe only for layers called once per forward
    counts = {chosen[i][0]: calls[i] for i in range(len(chosen))}
    return [[chosen[i] for i in g] for g in groups], counts


def _capture(model, group, batches, device, calls) -> list[torch.Tensor]:
    Hs = []
    seen = [0] * len(group)
    stop_ok = all(calls[name] == 1 for name, _ in group)
    handles = []
    for gi, (_, mod) in enumerate(group):
        d_in = mod.weight.shape[0] if _is_conv1d(mod) else mod.weight.shape[1]
        Hs.append(torch.zeros(d_in, d_in, dtype=torch.float64, device=mod.weight.device))

        def hook(m, args, gi=gi):
            x = args[0].detach().reshape(-1, Hs[gi].shape[0]).to(torch.float64)
            Hs[gi].addmm_(x.T, x)
            seen[gi] += 1
            if stop_ok and all(s > 0 for s in seen):
                raise _Stop
        handles.append(mod.register_forward_pre_hook(hook))
    try:
        for batch in batches:
            seen[:] = [0] * len(group)
            try:
                _forward(model, batch, device)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return Hs


def _write(mod: nn.Module, W: np.ndarray, mask: np.ndarray) -> None:
    weight = mod.weight
    if _is_conv1d(mod):
        W, mask = W.T, mask.T
    wt = torch.as_tensor(np.ascontiguousarray(W), dtype=weight.dtype).to(weight.device)
    mt = torch.as_tensor(np.ascontiguousarray(mask)).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        weight.copy_(wt)
    torch_prune.custom_from_mask(mod, "weight", mt)


def prune_layerwise(
    model: nn.Module,
    data: Any,
    *,
    sparsity: float | None = None,
    pattern: Any = None,
    scope: str = "layer",
    method: str = "chita",
    damping: float = 0.01,
    layers: Any = None,
    device: Any = None,
    progress: bool = True,
    solver_options: Mapping[str, Any] | None = None,
    callback: Callable[[LayerRecord], None] | None = None,
    solver: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> LayerwiseReport:
    """Prune every selected layer of ``model`` to reconstruct its calibration outputs.

    Parameters
    ----------
    data : a tensor of inputs, an iterable of batches (tensors, ``(inputs, ...)``
        tuples or dicts passed as ``model(**batch)``), or one dict.
    sparsity, pattern : exactly one: the share of weights removed per layer
        (``scope="layer"`` lets rows differ, ``"row"`` prunes each row alike),
        or an N:M pattern such as ``"2:4"``.
    method : one of :data:`chita_opt.layerwise.LAYER_METHODS`.
    damping : ridge relative to ``mean(diag H)`` of each layer.
    layers : None (every Linear/Conv1D but ``lm_head`` and tied weights), a list of
        module names, or a predicate ``(name, module) -> bool``.
    device : where batches are moved before the forward (default: left as given).
    solver_options : extra keyword arguments of :func:`~chita_opt.layerwise.solve_layer`.
    callback : called with each layer's :class:`LayerRecord` once it is pruned.
    solver : replaces ``method``: ``solver(H, W_bar, budget, damping) -> (W, mask)``
        on float64 numpy arrays (how the benchmarks run SparseGPT and Wanda
        through the same capture); its budget is checked.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    if method not in LAYER_METHODS:
        raise ValueError(f"method: expected one of {LAYER_METHODS}, got {describe(method)}")
    damping = check_nonnegative(damping, "damping")
    if scope not in ("layer", "row"):
        raise ValueError(f"scope: expected 'layer' or 'row', got {describe(scope)}")
    budget_from_sparsity((1, 8), sparsity, pattern, scope)  # validates sparsity/pattern early
    opts = dict(solver_options or {})
    batches = _batches(data)
    device = torch.device(device) if device is not None else None
    chosen = _select(model, layers)
    if solver is not None and not callable(solver):
        raise TypeError(f"solver: expected a callable (H, W_bar, budget, damping) -> (W, mask), "
                        f"got {describe(solver)}")
    report = LayerwiseReport(method=method if solver is None else getattr(
        solver, "__name__", "custom"))
    t_start = time.perf_counter()
    snap = Snapshot(model, [m for _, m in chosen])
    try:
        model.eval()
        with torch.no_grad():
            groups, calls = _plan(model, chosen, batches, device)
        bar = _progress(len(chosen), progress)
        for group in groups:
            t0 = time.perf_counter()
            with torch.no_grad():
                Hs = _capture(model, group, batches, device, calls)
            t_cap = (time.perf_counter() - t0) / len(group)
            for (name, mod), Ht in zip(group, Hs, strict=True):
                rec = _prune_one(name, mod, Ht, sparsity, pattern, scope, method, damping, opts,
                                 solver)
                rec.capture_seconds = t_cap
                report.layers.append(rec)
                bar(rec)
                if callback is not None:
                    callback(rec)
    except BaseException:
        snap.restore()
        raise
    for m, flag in snap.training:
        m.training = flag
    report.seconds = time.perf_counter() - t_start
    return report


def _prune_one(name, mod, Ht, sparsity, pattern, scope, method, damping, opts, solver):
    H = Ht.cpu().numpy()
    W_bar = mod.weight.detach().to(torch.float64).cpu().numpy()
    if _is_conv1d(mod):
        W_bar = W_bar.T
    try:
        budget = budget_from_sparsity(W_bar.shape, sparsity, pattern, scope)
        damp = damping * float(np.mean(np.diag(H)))
        magn = solve_layer(H, W_bar, budget, damping=damp, method="magnitude")
        if solver is None:
            sol = solve_layer(H, W_bar, budget, damping=damp, method=method, **opts)
            W, mask, secs, err = sol.W, sol.mask, sol.seconds, sol.error
        else:
            t0 = time.perf_counter()
            W, mask = solver(H, W_bar, budget, damp)
            secs = time.perf_counter() - t0
            W, mask = np.asarray(W, dtype=np.float64), np.asarray(mask, dtype=bool)
            if W.shape != W_bar.shape or mask.shape != W_bar.shape or not budget.is_feasible(mask):
                raise ValueError(f"solver: expected (W, mask) of shape {W_bar.shape} within "
                                 f"the budget {budget}, got {describe(W)} with "
                                 f"{int(mask.sum())} kept")
            W = np.where(mask, W, 0.0)
            D = W - W_bar
            err = 0.5 * float(np.einsum("ij,ij->", D @ H, D))
    except Exception as exc:
        exc.add_note(f"while pruning layer {name!r} of shape {W_bar.shape}")
        raise
    _write(mod, W, mask)
    dense = 0.5 * float(np.einsum("ij,ij->", W_bar @ H, W_bar))
    return LayerRecord(
        name=name, shape=W_bar.shape, budget=str(budget), kept=int(mask.sum()),
        error_magnitude=magn.error, error=err, dense_energy=dense, damping=damp,
        solve_seconds=secs, capture_seconds=0.0,
    )


def _progress(total: int, enabled: bool):
    bar = None
    if enabled:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="layer-wise pruning", unit="layer")
        except ImportError:
            bar = None

    def step(rec: LayerRecord) -> None:
        msg = f"{rec.name}: sparsity {rec.sparsity:.1%}, relative error {rec.relative_error:.3%}"
        if bar is not None:
            bar.set_postfix_str(msg[-60:])
            bar.update(1)
            if bar.n >= total:
                bar.close()
        elif enabled:
            logger.info(msg)
    return step
