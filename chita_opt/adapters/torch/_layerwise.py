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

With ``gradient_block=loss_fn`` each layer group also gets one forward and
backward pass per batch of ``loss_fn(model, batch)`` after step 1: forward
hooks add a zero probe tensor to the layers' outputs and
``torch.autograd.grad`` returns the loss's gradient ``delta`` at every probe
(no ``.grad`` of any parameter is touched), from which the per-sample
gradients of the weight ``g_i = sum_t delta_{i,t} x_{i,t}^T`` (sample i = index
along the first dimension of the layer's input) go to ``solve_layer`` as the
row-wise gradient block (:mod:`chita_opt.layerwise.problem`).

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
from ...layerwise import LAYER_METHODS, LayerProblem, budget_from_sparsity, solve_layer
from ...layerwise._linalg import linalg_for
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
    gradient_scale: float = 0.0  # gamma of the gradient block (0: none)

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


def _move(batch: Any, device: torch.device | None) -> Any:
    """``batch`` (tensor, dict or tuple of tensors) with its tensors on ``device``."""
    def to(x):
        return x.to(device) if device is not None and isinstance(x, torch.Tensor) else x
    if isinstance(batch, Mapping):
        return {k: to(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to(x) for x in batch)
    return to(batch)


def _forward(model: nn.Module, batch: Any, device: torch.device | None) -> None:
    if isinstance(batch, Mapping):
        model(**_move(batch, device))
    elif isinstance(batch, (tuple, list)):
        model(_move(batch[0], device))  # (inputs, targets) as a DataLoader yields
    else:
        model(_move(batch, device))


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


def _capture_gradients(model, group, batches, device, loss_fn) -> list[np.ndarray]:
    """Per-sample gradients of each layer's weight, ``(n, d_out, d_in)`` float64 (module doc)."""
    taps: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    handles = []
    for gi, (_, mod) in enumerate(group):
        def hook(m, args, out, gi=gi):
            # a zero probe added to the output: its gradient is delta, and the graph
            # stays whole, so a layer called twice also gets the path through its
            # second call (a detached leaf would cut it)
            probe = torch.zeros_like(out, requires_grad=True)
            taps.append((gi, args[0].detach(), probe))
            return out + probe
        handles.append(mod.register_forward_hook(hook))
    per_batch: list[list[torch.Tensor]] = [[] for _ in group]
    try:
        for batch in batches:
            taps.clear()
            with torch.enable_grad():
                loss = loss_fn(model, _move(batch, device))
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError("gradient_block: expected loss_fn(model, batch) to return a "
                                    f"scalar loss tensor, got {describe(loss)}")
                seen = {gi for gi, _, _ in taps}
                missing = [group[gi][0] for gi in range(len(group)) if gi not in seen]
                if missing:
                    raise ValueError(f"gradient_block: layers {missing[:3]} did not run in "
                                     "loss_fn(model, batch), so they have no output gradients")
                probes = [probe for _, _, probe in taps]
                deltas = torch.autograd.grad(loss.reshape(()), probes, allow_unused=True)
            acc: dict[int, torch.Tensor] = {}
            for (gi, x, probe), delta in zip(taps, deltas, strict=True):
                if delta is None:
                    delta = torch.zeros_like(probe)
                b = x.shape[0]
                xs = x.reshape(b, -1, x.shape[-1]).to(torch.float64)
                ds = delta.reshape(b, -1, delta.shape[-1]).to(torch.float64)
                g = torch.einsum("bto,bti->boi", ds, xs)  # a layer called twice: summed
                acc[gi] = acc[gi] + g if gi in acc else g
            for gi in range(len(group)):
                per_batch[gi].append(acc[gi])
    finally:
        for h in handles:
            h.remove()
        taps.clear()
    out = []
    for gi, (name, _) in enumerate(group):
        g = torch.cat(per_batch[gi]).cpu().numpy()
        if not np.isfinite(g).all():
            raise ValueError(f"gradient_block: the loss gradients at layer {name!r} are not "
                             "finite (NaN or Inf)")
        out.append(g)
    return out


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
    gradient_block: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    gradient_weight: float = 1.0,
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
    solver_options : extra keyword arguments of :func:`~chita_opt.layerwise.solve_layer`;
        ``{"device": "cuda"}`` runs its batched Cholesky solves and inverses with
        torch on that device (default: numpy/LAPACK on the CPU, whatever
        ``device`` the batches go to: the two are independent).
    callback : called with each layer's :class:`LayerRecord` once it is pruned.
    solver : replaces ``method``: ``solver(H, W_bar, budget, damping) -> (W, mask)``
        on float64 numpy arrays (how the benchmarks run SparseGPT and Wanda
        through the same capture); its budget is checked.
    gradient_block : None/False (default: reconstruction only), or
        ``loss_fn(model, batch) -> scalar loss tensor``: each layer is then
        pruned on reconstruction plus its row-wise Fisher block from the
        per-sample gradients of that loss (module docstring), e.g. for a causal
        LM ``lambda m, b: m(**b, labels=b["input_ids"]).loss``. The gradient
        of a batch mean weighs each sample by 1/batch size, so use equal
        batches (or return a sum). Costs one forward and backward per batch
        and layer group, n x d_out x d_in floats of gradients per layer and
        d_out x d_in^2 for its per-row Hessians.
    gradient_weight : the gradient block's weight relative to the trace-matched
        scale (1: the blocks summed over rows carry the trace of ``H``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")
    if method not in LAYER_METHODS:
        raise ValueError(f"method: expected one of {LAYER_METHODS}, got {describe(method)}")
    damping = check_nonnegative(damping, "damping")
    if scope not in ("layer", "row"):
        raise ValueError(f"scope: expected 'layer' or 'row', got {describe(scope)}")
    budget_from_sparsity((1, 8), sparsity, pattern, scope)  # validates sparsity/pattern early
    if gradient_block is False:
        gradient_block = None
    if gradient_block is not None and not callable(gradient_block):
        raise TypeError("gradient_block: expected None/False or a callable loss_fn(model, batch) "
                        f"-> scalar loss tensor, got {describe(gradient_block)}")
    if gradient_block is not None and solver is not None:
        raise ValueError("gradient_block: a custom solver= receives H only; expected "
                         f"gradient_block=None with solver=, got {describe(gradient_block)}")
    gradient_weight = check_nonnegative(gradient_weight, "gradient_weight")
    opts = dict(solver_options or {})
    # a bad solver device fails here, not after the first layer's capture
    linalg_for(opts.get("device"))
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
            grads: list[Any] = [None] * len(group)
            if gradient_block is not None:
                grads = _capture_gradients(model, group, batches, device, gradient_block)
            t_cap = (time.perf_counter() - t0) / len(group)
            for (name, mod), Ht, gr in zip(group, Hs, grads, strict=True):
                rec = _prune_one(name, mod, Ht, sparsity, pattern, scope, method, damping, opts,
                                 solver, gr, gradient_weight)
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


def _prune_one(name, mod, Ht, sparsity, pattern, scope, method, damping, opts, solver,
               grads=None, gradient_weight=1.0):
    H = Ht.cpu().numpy()
    W_bar = mod.weight.detach().to(torch.float64).cpu().numpy()
    if _is_conv1d(mod):
        W_bar = W_bar.T
    try:
        budget = budget_from_sparsity(W_bar.shape, sparsity, pattern, scope)
        damp = damping * float(np.mean(np.diag(H)))
        magn = solve_layer(H, W_bar, budget, damping=damp, method="magnitude")
        if solver is None:
            if grads is None:
                sol = solve_layer(H, W_bar, budget, damping=damp, method=method, **opts)
                secs, gamma = sol.seconds, 0.0
            else:
                # timed here: building the per-row Hessians is part of the solve
                t0 = time.perf_counter()
                prob = LayerProblem(H, W_bar, budget, damp, grads, gradient_weight)
                sol = solve_layer(prob, method=method, **opts)
                secs, gamma = time.perf_counter() - t0, prob.gamma
            W, mask, err = sol.W, sol.mask, sol.error
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
            gamma = 0.0
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
        solve_seconds=secs, capture_seconds=0.0, gradient_scale=gamma,
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
