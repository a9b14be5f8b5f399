"""PyTorch adapter: per-sample gradients, one-shot / multi-stage / gradual CHITA pruning.

    from chita_opt.adapters.torch import prune, make_permanent

    report = prune(model, torch.nn.functional.cross_entropy, loader, sparsity=0.9)
    print(report)               # sparsity per layer, objective per stage, timings
    make_permanent(model)       # drop the masks once fine-tuning is over

What happens:

1. The pruned tensors are selected (by default the ``weight`` of every
   ``nn.Linear`` and ``nn.Conv1d/2d/3d``; ``params=`` takes names or a
   predicate) and flattened into one vector ``w`` (:class:`ParamLayout`).
2. At each stage, per-sample (or per-mini-batch) gradients of
   ``loss_fn(model(inputs), targets)`` are computed with ``torch.func``
   (``vmap`` over ``grad`` of a ``functional_call``) in eval mode, for the
   still-alive weights only, and streamed into one reused float32 buffer;
   the model itself is not modified while this happens.
3. :func:`chita_opt.pruning.multistage_prune` builds and solves the L0 problems
   on numpy.
4. The pruned weights are written back in place and the masks are recorded
   with :mod:`torch.nn.utils.prune` (``weight_orig`` + ``weight_mask`` + a
   forward pre-hook), so fine-tuning keeps the zeros at zero;
   :func:`make_permanent` removes the masks afterwards.

If anything fails, the model is left exactly as it was (weights, masks,
hooks, training mode, ``requires_grad``) and the exception propagates with a
note saying where it happened.

Importing this module imports torch; ``import chita_opt`` does not.
"""

from __future__ import annotations

import copy
import logging
import numbers
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune
from torch.utils import _pytree as pytree

from .._validation import check_nonnegative, check_positive_int, check_sparsity, describe
from ..pruning import (
    DEFAULT_DAMPING,
    DEFAULT_DAMPING_GRID,
    DampingSelection,
    ParamLayout,
    PruneReport,
    multistage_prune,
    sparsity_schedule,
)
from ..pruning import select_damping as _select_damping
from ..pruning.report import GradualReport

__all__ = [
    "DEFAULT_PRUNABLE",
    "apply_masks",
    "gradient_matrix",
    "gradual_prune",
    "held_out_loss",
    "make_permanent",
    "masks",
    "prune",
    "select_damping",
    "selected_params",
]

logger = logging.getLogger(__name__)

#: Module types whose ``weight`` is pruned by default.
DEFAULT_PRUNABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# Gradient rows are computed in chunks holding at most this many bytes of
# per-row gradients (plus the activations of the chunk's samples).
_CHUNK_BYTES = 1 << 25

Params = Sequence[str] | str | Callable[[str, torch.Tensor], bool] | None


# =================================================================== selection
@dataclass(frozen=True, eq=False)
class _Target:
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


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module, str, bool]]:
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


def _select(model: nn.Module, params: Params) -> list[_Target]:
    cands = _candidates(model)
    if params is None:
        parametrized = [
            name
            for name, mod in model.named_modules()
            if isinstance(mod, DEFAULT_PRUNABLE) and parametrize.is_parametrized(mod, "weight")
        ]
        if parametrized:
            raise ValueError(
                f"params: the weights of {parametrized} are parametrized "
                "(torch.nn.utils.parametrize); remove the parametrizations, or pass params= "
                "to choose other tensors"
            )
        chosen = [c for c in cands if isinstance(c[1], DEFAULT_PRUNABLE) and c[2] == "weight"]
        what = "the weights of nn.Linear / nn.Conv1d/2d/3d layers"
    elif callable(params):
        chosen = []
        for c in cands:
            tensor = c[1]._parameters[c[2] + "_orig"] if c[3] else c[1]._parameters[c[2]]
            if params(c[0], tensor):
                chosen.append(c)
        what = "parameters accepted by the params predicate"
    else:
        names = [params] if isinstance(params, str) else params
        try:
            names = list(names)
        except TypeError:
            raise TypeError(
                "params: expected None, a sequence of parameter names or a predicate "
                f"(name, tensor) -> bool, got {describe(params)}"
            ) from None
        by_name = {c[0]: c for c in cands}
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise TypeError(f"params: expected parameter names (str), got {describe(bad[0])}")
        missing = [n for n in names if n not in by_name]
        if missing:
            avail = sorted(by_name)
            shown = ", ".join(avail[:12]) + (", ..." if len(avail) > 12 else "")
            raise ValueError(
                f"params: no floating-point parameter named {missing} in the model; "
                f"available: [{shown}]"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"params: expected distinct names, got {names}")
        wanted = set(names)
        chosen = [c for c in cands if c[0] in wanted]
        what = f"parameters {names}"
    if not chosen:
        raise ValueError(f"params: no parameters selected (looked for {what})")
    targets = []
    seen: dict[int, str] = {}
    for name, mod, attr, pruned in chosen:
        t = _Target(name, mod, attr, pruned)
        leaf = t.leaf
        if id(leaf) in seen:
            raise ValueError(
                f"params: {name!r} and {seen[id(leaf)]!r} are the same (tied) tensor; "
                "select only one of them"
            )
        seen[id(leaf)] = name
        if leaf.numel() == 0:
            raise ValueError(f"params: {name!r} is empty (shape {tuple(leaf.shape)})")
        targets.append(t)
    return targets


def selected_params(model: nn.Module, params: Params = None) -> list[str]:
    """Names of the tensors :func:`prune` would prune (default: Linear/Conv weights)."""
    _check_model(model)
    return [t.name for t in _select(model, params)]


def _layout(targets: Sequence[_Target]) -> ParamLayout:
    return ParamLayout([t.name for t in targets], [tuple(t.leaf.shape) for t in targets])


def _flat_weights(targets: Sequence[_Target], layout: ParamLayout) -> tuple[np.ndarray, np.ndarray]:
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


# ======================================================================== data
def _is_tensor_tree(x: Any) -> bool:
    leaves = pytree.tree_leaves(x)
    return bool(leaves) and all(torch.is_tensor(leaf) for leaf in leaves)


def _iter_batches(data: Any) -> Iterator[tuple[Any, Any]]:
    """Yield ``(inputs, targets)`` batches from the accepted data forms."""
    expected = (
        "data: expected a DataLoader (or any iterable) of (inputs, targets) batches, "
        "or a tuple (inputs, targets) of tensors"
    )
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        if not _is_tensor_tree(data[1]):
            raise TypeError(f"{expected}, got a tuple whose targets are {describe(data[1])}")
        yield data[0], data[1]
        return
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, torch.utils.data.IterableDataset
    ):
        raise TypeError(
            f"{expected}, got a {type(data).__name__} (a Dataset yields single samples); "
            "wrap it in torch.utils.data.DataLoader(dataset, batch_size=...)"
        )
    if isinstance(data, (str, bytes, np.ndarray)) or torch.is_tensor(data):
        raise TypeError(f"{expected}, got {describe(data)}")
    try:
        iterator = iter(data)
    except TypeError:
        raise TypeError(f"{expected}, got {describe(data)}") from None
    for i, batch in enumerate(iterator):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"{expected}; batch {i} is {describe(batch)}")
        x, y = batch
        if not _is_tensor_tree(x) or not _is_tensor_tree(y):
            raise TypeError(
                f"{expected}; batch {i} holds {describe(x)} and {describe(y)} instead of tensors"
            )
        yield x, y


def _batch_len(x: Any, y: Any) -> int:
    sizes = {int(leaf.shape[0]) if leaf.ndim else -1 for leaf in pytree.tree_leaves((x, y))}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "data: expected inputs and targets with the same leading (batch) dimension, "
            f"got leading sizes {sorted(sizes)}"
        )
    return sizes.pop()


def _slice(tree: Any, start: int, stop: int) -> Any:
    return pytree.tree_map(lambda a: a[start:stop], tree)


def _cat(trees: list[Any]) -> Any:
    if len(trees) == 1:
        return trees[0]
    return pytree.tree_map(lambda *a: torch.cat(a), *trees)


def _to(tree: Any, device: torch.device) -> Any:
    return pytree.tree_map(lambda a: a.to(device, non_blocking=True), tree)


def _row_chunks(
    data: Any, n_rows: int, m: int, rows_per_chunk: int, device: torch.device
) -> Iterator[tuple[Any, Any, int]]:
    """Chunks of ``r * m`` consecutive samples (``r <= rows_per_chunk``), ``n_rows * m`` in all."""
    need = n_rows * m
    per_chunk = rows_per_chunk * m
    xs: list[Any] = []
    ys: list[Any] = []
    have = taken = 0
    for x, y in _iter_batches(data):
        bs = _batch_len(x, y)
        take = min(bs, need - taken)
        if take <= 0:
            break
        if take < bs:
            x, y = _slice(x, 0, take), _slice(y, 0, take)
        xs.append(x)
        ys.append(y)
        have += take
        taken += take
        while have >= per_chunk or (taken == need and have > 0):
            X, Y = _cat(xs), _cat(ys)
            size = min(per_chunk, have)
            yield _to(_slice(X, 0, size), device), _to(_slice(Y, 0, size), device), size // m
            xs = [_slice(X, size, have)] if have > size else []
            ys = [_slice(Y, size, have)] if have > size else []
            have -= size
        if taken == need:
            return
    hint = (
        " (an iterator or generator can be read only once, and every stage reads the data "
        "again: pass a DataLoader, a list or a tuple of tensors)"
        if taken == 0
        else ""
    )
    raise ValueError(
        f"data: expected at least n_samples * mini_batch = {n_rows} * {m} = {need} samples, "
        f"got {taken}; lower n_samples or mini_batch, or pass more data{hint}"
    )


# ================================================================== gradients
class _EvalMode:
    """Put every module in eval mode, restore each module's own flag afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        for m, flag in self.flags:
            m.training = flag


class _GradientEngine:
    """``gradient_fn(w, columns) -> G`` for :func:`multistage_prune`, over a torch model.

    Each call iterates ``data`` afresh, computes ``n_rows`` gradient rows
    (per-sample when ``mini_batch == 1``, else the mean gradient of
    ``mini_batch`` consecutive samples) at the weights ``w`` through
    ``torch.func`` without modifying the model, and writes the requested
    columns into one flat float buffer that is reused by every call.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        data: Any,
        targets: Sequence[_Target],
        layout: ParamLayout,
        *,
        n_rows: int,
        mini_batch: int,
        dtype: Any = np.float32,
        chunk_size: int | None = None,
        vectorize: bool = True,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.data = data
        self.targets = list(targets)
        self.layout = layout
        self.n_rows = n_rows
        self.m = mini_batch
        self.dtype = np.dtype(dtype)
        self.vectorize = vectorize
        self.device = self.targets[0].leaf.device
        self.keys = [t.key for t in self.targets]
        if chunk_size is None:
            chunk_size = max(1, _CHUNK_BYTES // max(1, 4 * layout.p))
        self.rows_per_chunk = max(1, min(n_rows, int(chunk_size)))
        self._buffer: np.ndarray | None = None
        self.calls = 0

        self._grad_fns: dict[tuple[int, ...], tuple[Callable[..., Any], Callable[..., Any]]] = {}

    def _grad_fns_for(
        self, wanted: tuple[int, ...]
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """``grad`` (and its ``vmap``) w.r.t. the targets in ``wanted`` only, the rest fixed."""
        if wanted not in self._grad_fns:
            model, loss_fn = self.model, self.loss_fn
            diff_keys = [self.keys[i] for i in wanted]
            fixed_keys = [k for i, k in enumerate(self.keys) if i not in wanted]

            def row_loss(
                diff: tuple[torch.Tensor, ...], fixed: tuple[torch.Tensor, ...], x: Any, y: Any
            ) -> torch.Tensor:
                params = dict(zip(diff_keys, diff, strict=True))
                params.update(zip(fixed_keys, fixed, strict=True))
                return loss_fn(functional_call(model, params, (x,)), y)

            g = grad(row_loss)
            self._grad_fns[wanted] = (g, vmap(g, in_dims=(None, None, 0, 0)))
        return self._grad_fns[wanted]

    def buffer(self, size: int) -> np.ndarray:
        if self._buffer is None or self._buffer.size < size:
            self._buffer = None  # free the old one first
            self._buffer = np.empty(size, dtype=self.dtype)
        return self._buffer

    def __call__(self, w: np.ndarray, columns: np.ndarray) -> np.ndarray:
        self.calls += 1
        n, layout = self.n_rows, self.layout
        q = int(np.count_nonzero(columns))
        G = self.buffer(n * q)[: n * q].reshape(n, q)
        Gt = torch.from_numpy(G)
        tensors = []
        selections = []  # (target index, column offset in G, count, index tensor or None)
        col = 0
        for i, (t, (a, b)) in enumerate(zip(self.targets, layout.ranges(), strict=True)):
            leaf = t.leaf
            tensors.append(
                torch.as_tensor(w[a:b].reshape(leaf.shape), dtype=leaf.dtype).to(self.device)
            )
            local = np.flatnonzero(columns[a:b])
            if local.size == 0:
                continue
            idx = None if local.size == b - a else torch.as_tensor(local, device=self.device)
            selections.append((i, col, local.size, idx))
            col += local.size
        # Differentiate only the tensors with requested columns (block groups).
        wanted = tuple(sel[0] for sel in selections)
        diff = tuple(tensors[i] for i in wanted)
        fixed = tuple(t for i, t in enumerate(tensors) if i not in wanted)
        grad_fn, vgrad_fn = self._grad_fns_for(wanted)
        row = 0
        saved_attrs = [
            (t.module, t.attr, t.module.__dict__.get(t.attr)) for t in self.targets if t.pruned
        ]
        try:
            with _EvalMode(self.model), torch.no_grad():
                for x, y, r in _row_chunks(self.data, n, self.m, self.rows_per_chunk, self.device):
                    grads = self._row_grads(grad_fn, vgrad_fn, diff, fixed, x, y, r)
                    for j, (_, c0, cnt, idx) in enumerate(selections):
                        g = grads[j].reshape(r, -1)
                        if idx is not None:
                            g = g.index_select(1, idx)
                        Gt[row : row + r, c0 : c0 + cnt].copy_(g)
                    row += r
        finally:
            # A pruned module's forward pre-hook stored a tensor computed from
            # our substituted weights as module.<attr>; put the original back.
            for mod, attr, value in saved_attrs:
                if value is None:
                    mod.__dict__.pop(attr, None)
                else:
                    mod.__dict__[attr] = value
        return G

    def _row_grads(
        self,
        grad_fn: Callable[..., Any],
        vgrad_fn: Callable[..., Any],
        diff: tuple[torch.Tensor, ...],
        fixed: tuple[torch.Tensor, ...],
        x: Any,
        y: Any,
        r: int,
    ) -> Any:
        m = self.m
        x = pytree.tree_map(lambda a: a.reshape(r, m, *a.shape[1:]), x)
        y = pytree.tree_map(lambda a: a.reshape(r, m, *a.shape[1:]), y)
        if self.vectorize:
            try:
                return vgrad_fn(diff, fixed, x, y)
            except RuntimeError as exc:
                exc.add_note(
                    "chita_opt: computing per-sample gradients with torch.func.vmap(grad(...)) "
                    "failed. loss_fn(model(inputs), targets) must return a scalar (the mean over "
                    "the batch); if the model is not vmap-compatible (e.g. it calls .item() or "
                    "branches on data), pass vectorize=False."
                )
                raise
        rows = [grad_fn(diff, fixed, _row(x, j), _row(y, j)) for j in range(r)]
        return tuple(torch.stack([g[i] for g in rows]) for i in range(len(diff)))


def _row(tree: Any, j: int) -> Any:
    return pytree.tree_map(lambda a: a[j], tree)


def gradient_matrix(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    params: Params = None,
    n_samples: int = 1000,
    mini_batch: int = 1,
    dtype: Any = np.float32,
    chunk_size: int | None = None,
    vectorize: bool = True,
) -> tuple[np.ndarray, np.ndarray, ParamLayout]:
    """Gradient rows of ``loss_fn(model(inputs), targets)`` w.r.t. the selected weights.

    Parameters
    ----------
    model : nn.Module
        Not modified (gradients are taken in eval mode through ``torch.func``;
        the training mode is restored afterwards).
    loss_fn : callable
        ``loss_fn(outputs, targets) -> scalar``, the mean over the batch (a
        standard criterion such as ``nn.functional.cross_entropy``).
    data : DataLoader, iterable of (inputs, targets), or (inputs, targets) tensors
        Samples are taken in order; ``n_samples * mini_batch`` are needed.
    params : names, predicate ``(name, tensor) -> bool`` or None
        Tensors to differentiate (default: weights of Linear/Conv1d/2d/3d).
    n_samples : int
        Number of gradient rows ``n``.
    mini_batch : int
        Samples per row: 1 gives per-sample gradients; ``m > 1`` gives the
        mean gradient over ``m`` consecutive samples per row.
    dtype : numpy dtype
        ``np.float32`` (default) or ``np.float64``.
    chunk_size : int, optional
        Rows computed per vectorised call (default: about 32 MB of gradients).
    vectorize : bool
        ``False`` computes one row at a time (for models ``vmap`` cannot handle).

    Returns
    -------
    G : ndarray, shape (n_samples, p)
        Row ``i`` is the gradient for sample (or mini-batch) ``i``.
    w : ndarray, shape (p,)
        The current weights, float64.
    layout : ParamLayout
        Which tensor each column belongs to.
    """
    _check_model(model)
    _check_loss(loss_fn)
    n_samples = int(check_positive_int(n_samples, "n_samples"))  # type: ignore[arg-type]
    mini_batch = int(check_positive_int(mini_batch, "mini_batch"))  # type: ignore[arg-type]
    dtype = _check_dtype(dtype)
    targets = _select(model, params)
    layout = _layout(targets)
    w, _ = _flat_weights(targets, layout)
    engine = _GradientEngine(
        model,
        loss_fn,
        data,
        targets,
        layout,
        n_rows=n_samples,
        mini_batch=mini_batch,
        dtype=dtype,
        chunk_size=_check_chunk(chunk_size),
        vectorize=bool(vectorize),
    )
    G = engine(w, np.ones(layout.p, dtype=bool))
    return G, w, layout


# ================================================================== snapshots
_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


class _Snapshot:
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


# ==================================================================== pruning
class _Pruner:
    """Validated settings plus the gradient engine, shared by prune/select_damping."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        data: Any,
        *,
        sparsity: float,
        method: str,
        stages: int,
        schedule: str | Sequence[float],
        base_level: float | None,
        n_samples: int,
        mini_batch: int,
        first_order: bool,
        first_order_scale: float | None,
        block_size: int | None,
        executor: Any,
        max_gradient_columns: int | None,
        params: Params,
        solver_options: Mapping[str, Any] | None,
        chunk_size: int | None,
        vectorize: bool,
        progress: bool,
    ) -> None:
        _check_model(model)
        _check_loss(loss_fn)
        self.model = model
        self.loss_fn = loss_fn
        self.sparsity = check_sparsity(sparsity, "sparsity")
        self.stages = int(check_positive_int(stages, "stages"))  # type: ignore[arg-type]
        # validate the schedule now, before any gradient is computed
        sparsity_schedule(self.sparsity, self.stages, schedule, base_level=base_level)
        self.schedule = schedule
        self.base_level = base_level
        self.method = method
        n_samples = int(check_positive_int(n_samples, "n_samples"))  # type: ignore[arg-type]
        mini_batch = int(check_positive_int(mini_batch, "mini_batch"))  # type: ignore[arg-type]
        self.n_samples, self.mini_batch = n_samples, mini_batch
        if not isinstance(first_order, (bool, np.bool_)):
            raise TypeError(f"first_order: expected a bool, got {describe(first_order)}")
        self.first_order = bool(first_order)
        if first_order_scale is None:
            # Rows that average m samples have ~1/m of the per-sample Fisher
            # mass; scaling c = G^T 1 alike keeps the Taylor model consistent.
            first_order_scale = 1.0 / mini_batch
        self.first_order_scale = check_nonnegative(first_order_scale, "first_order_scale")
        self.block_size = check_positive_int(block_size, "block_size", allow_none=True)
        self.executor = executor
        self.max_columns = check_positive_int(
            max_gradient_columns, "max_gradient_columns", allow_none=True
        )
        self.solver_options = dict(solver_options or {})
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress: expected a bool, got {describe(progress)}")
        self.progress = bool(progress)
        self.targets = _select(model, params)
        self.layout = _layout(self.targets)
        self.w0, self.mask0 = _flat_weights(self.targets, self.layout)
        self.engine = _GradientEngine(
            model,
            loss_fn,
            data,
            self.targets,
            self.layout,
            n_rows=n_samples,
            mini_batch=mini_batch,
            chunk_size=_check_chunk(chunk_size),
            vectorize=bool(vectorize),
        )

    def run(self, damping: float) -> PruneReport:
        return multistage_prune(
            self.w0,
            self.engine,
            sparsity=self.sparsity,
            stages=self.stages,
            schedule=self.schedule,
            base_level=self.base_level,
            method=self.method,
            damping=damping,
            first_order=self.first_order,
            first_order_scale=self.first_order_scale,
            mask=None if self.mask0.all() else self.mask0,
            layout=self.layout,
            block_size=self.block_size,
            executor=self.executor,
            max_columns=self.max_columns,
            solver_options=self.solver_options,
            progress=self.progress,
            options={"n_samples": self.n_samples, "mini_batch": self.mini_batch},
        )

    def held_out_loss(self, weights: np.ndarray, held_out: Any) -> float:
        return _held_out_loss(
            self.model, self.loss_fn, held_out, self.targets, self.layout, weights
        )

    def apply(self, report: PruneReport) -> None:
        _write_back(self.targets, self.layout, report.weights, report.mask)


def _write_back(
    targets: Sequence[_Target], layout: ParamLayout, w: np.ndarray, mask: np.ndarray
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
                _move_parameter(mod, attr + "_orig", position)
    for t in targets:
        # what the pruning hook would compute at the next forward, so that
        # module.weight is already right before it
        mod, attr = t.module, t.attr
        setattr(mod, attr, mod._parameters[attr + "_orig"] * mod._buffers[attr + "_mask"])


def _move_parameter(module: nn.Module, name: str, position: int) -> None:
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


def _held_out_loss(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    held_out: Any,
    targets: Sequence[_Target],
    layout: ParamLayout,
    weights: np.ndarray,
) -> float:
    device = targets[0].leaf.device
    tensors = {}
    for t, (a, b) in zip(targets, layout.ranges(), strict=True):
        leaf = t.leaf
        tensors[t.key] = torch.as_tensor(weights[a:b].reshape(leaf.shape), dtype=leaf.dtype).to(
            device
        )
    total = 0.0
    count = 0
    saved_attrs = [(t.module, t.attr, t.module.__dict__.get(t.attr)) for t in targets if t.pruned]
    try:
        with _EvalMode(model), torch.no_grad():
            for x, y in _iter_batches(held_out):
                bs = _batch_len(x, y)
                out = functional_call(model, tensors, (_to(x, device),))
                loss = loss_fn(out, _to(y, device))
                total += float(loss) * bs
                count += bs
    finally:
        for mod, attr, value in saved_attrs:
            if value is None:
                mod.__dict__.pop(attr, None)
            else:
                mod.__dict__[attr] = value
    if count == 0:
        raise ValueError("held_out: expected at least one (inputs, targets) batch, got none")
    return total / count


def held_out_loss(
    model: nn.Module, loss_fn: Callable[..., torch.Tensor], data: Any, *, params: Params = None
) -> float:
    """Mean ``loss_fn`` of the model (eval mode) over ``data`` (batch-size weighted)."""
    _check_model(model)
    _check_loss(loss_fn)
    targets = _select(model, params)
    layout = _layout(targets)
    w, _ = _flat_weights(targets, layout)
    return _held_out_loss(model, loss_fn, data, targets, layout, w)


def prune(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    *,
    sparsity: float,
    method: str = "chita",
    stages: int = 1,
    schedule: str | Sequence[float] = "exp",
    base_level: float | None = None,
    n_samples: int = 1000,
    mini_batch: int = 1,
    damping: float | str = DEFAULT_DAMPING,
    damping_grid: Sequence[float] = DEFAULT_DAMPING_GRID,
    held_out: Any = None,
    first_order: bool = False,
    first_order_scale: float | None = None,
    block_size: int | None = None,
    executor: Any = None,
    max_gradient_columns: int | None = None,
    params: Params = None,
    solver_options: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    vectorize: bool = True,
    progress: bool = True,
) -> PruneReport:
    """Prune a PyTorch model in place with CHITA (one stage) or CHITA++ (several).

    Parameters
    ----------
    model : nn.Module
        Pruned in place: weights written back, masks recorded with
        ``torch.nn.utils.prune`` (``<name>_orig``, ``<name>_mask``). Modules
        already pruned that way keep their zeros (their masks only shrink).
    loss_fn : callable
        ``loss_fn(model(inputs), targets)`` -> scalar mean loss.
    data : DataLoader, iterable of (inputs, targets), or (inputs, targets) tensors
        Gradient data; ``n_samples * mini_batch`` samples are read per stage
        (a shuffling DataLoader gives fresh samples at every stage).
    sparsity : float
        Fraction of the selected weights set to exactly zero:
        ``k = p - round(sparsity * p)`` weights survive.
    method : str
        Solver (``"chita"``, ``"backsolve"``, ``"iht"``, ..., or ``"magnitude"``,
        which needs no gradients).
    stages, schedule, base_level
        Multi-stage schedule (see :func:`chita_opt.pruning.sparsity_schedule`):
        gradients are recomputed at the current weights before each stage.
    n_samples, mini_batch
        Gradient rows, and samples averaged per row.
    damping : float or "auto"
        Ridge added to the empirical Fisher (default ``1e-3``; larger values
        keep the weights closer to the dense ones, see the docs on the
        quadratic-model trap). ``"auto"`` tries ``damping_grid`` and keeps the
        damping with the lowest loss on ``held_out``.
    damping_grid, held_out
        Candidates and held-out data for ``damping="auto"``.
    first_order : bool
        Include the linear (mean-gradient) term ``c = first_order_scale * G^T 1``;
        helps CHITA++ at high sparsity (after the first stage the weights are
        no longer at a stationary point).
    first_order_scale : float, optional
        Default ``1 / mini_batch`` (see the docs).
    block_size : int, optional
        Block approximation: blocks of about this many weights inside each
        layer, each with its share of ``k`` from the global magnitude ranking.
    executor : Executor-like, optional
        Runs blocks (``concurrent.futures`` executor, ``dask.distributed.Client``).
    max_gradient_columns : int, optional
        With blocks: gradient memory limit ``n x max_gradient_columns``.
    params : names, predicate or None
        Tensors to prune (default: weights of Linear and Conv1d/2d/3d).
    solver_options : mapping, optional
        Extra options for :func:`chita_opt.solve`.
    chunk_size, vectorize
        See :func:`gradient_matrix`.
    progress : bool
        Progress bars (tqdm) over stages and blocks.

    Returns
    -------
    PruneReport
    """
    pruner = _Pruner(
        model,
        loss_fn,
        data,
        sparsity=sparsity,
        method=method,
        stages=stages,
        schedule=schedule,
        base_level=base_level,
        n_samples=n_samples,
        mini_batch=mini_batch,
        first_order=first_order,
        first_order_scale=first_order_scale,
        block_size=block_size,
        executor=executor,
        max_gradient_columns=max_gradient_columns,
        params=params,
        solver_options=solver_options,
        chunk_size=chunk_size,
        vectorize=vectorize,
        progress=progress,
    )
    auto = isinstance(damping, str)
    if auto and damping != "auto":
        raise ValueError(f"damping: expected a non-negative number or 'auto', got {damping!r}")
    if auto and held_out is None:
        raise TypeError("held_out: expected held-out data for damping='auto', got None")
    if not auto:
        damping = check_nonnegative(damping, "damping")
    snapshot = _Snapshot(model, [t.module for t in pruner.targets])
    try:
        if auto:
            selection = _select_damping(
                pruner.run, lambda rep: pruner.held_out_loss(rep.weights, held_out), damping_grid
            )
            report = selection.report
            report.options["damping"] = selection.damping
            report.options["damping_selection"] = "auto"
        else:
            report = pruner.run(float(damping))  # type: ignore[arg-type]
        pruner.apply(report)
    except BaseException as exc:
        snapshot.restore()
        if isinstance(exc, Exception):
            exc.add_note(
                "chita_opt: prune failed; the model was restored to its state before the call"
            )
        raise
    logger.info("pruned %d tensors: %s", len(pruner.targets), repr(report))
    return report


def select_damping(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Any,
    held_out: Any,
    *,
    sparsity: float,
    grid: Sequence[float] = DEFAULT_DAMPING_GRID,
    method: str = "chita",
    stages: int = 1,
    schedule: str | Sequence[float] = "exp",
    base_level: float | None = None,
    n_samples: int = 1000,
    mini_batch: int = 1,
    first_order: bool = False,
    first_order_scale: float | None = None,
    block_size: int | None = None,
    executor: Any = None,
    max_gradient_columns: int | None = None,
    params: Params = None,
    solver_options: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    vectorize: bool = True,
    progress: bool = False,
) -> DampingSelection:
    """Try each damping in ``grid`` and keep the one with the lowest held-out loss.

    The model is not modified. ``held_out`` must be data not used for the
    gradients (same forms as ``data``). Returns a
    :class:`~chita_opt.pruning.DampingSelection` with the chosen damping, the
    loss of every candidate and the chosen run's report (apply it with
    ``prune(..., damping=selection.damping)`` or use ``prune(damping="auto")``).
    """
    pruner = _Pruner(
        model,
        loss_fn,
        data,
        sparsity=sparsity,
        method=method,
        stages=stages,
        schedule=schedule,
        base_level=base_level,
        n_samples=n_samples,
        mini_batch=mini_batch,
        first_order=first_order,
        first_order_scale=first_order_scale,
        block_size=block_size,
        executor=executor,
        max_gradient_columns=max_gradient_columns,
        params=params,
        solver_options=solver_options,
        chunk_size=chunk_size,
        vectorize=vectorize,
        progress=progress,
    )
    if held_out is None:
        raise TypeError("held_out: expected held-out (inputs, targets) data, got None")
    snapshot = _Snapshot(model, [t.module for t in pruner.targets])
    try:
        return _select_damping(
            pruner.run, lambda rep: pruner.held_out_loss(rep.weights, held_out), grid
        )
    except BaseException:
        snapshot.restore()
        raise


# ====================================================================== masks
def _pruned_entries(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    return [(name, mod, attr) for name, mod, attr, pruned in _candidates(model) if pruned]


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pruning masks of the model, ``{name: bool tensor}`` (True = kept)."""
    _check_model(model)
    return {name: mod._buffers[attr + "_mask"] != 0 for name, mod, attr in _pruned_entries(model)}


def apply_masks(model: nn.Module) -> None:
    """Zero the pruned entries of every ``<name>_orig`` (call after an optimizer step).

    The forward pass already multiplies by the mask; this keeps the stored
    weights clean too (weight decay or momentum cannot resurrect them when
    the masks are made permanent).
    """
    _check_model(model)
    with torch.no_grad():
        for _, mod, attr in _pruned_entries(model):
            orig = mod._parameters[attr + "_orig"]
            orig.mul_(mod._buffers[attr + "_mask"])  # type: ignore[union-attr]


def make_permanent(model: nn.Module) -> list[str]:
    """Remove the pruning masks and hooks, keeping the pruned weights (zeros stay).

    Returns the names of the tensors that were un-masked. The ``Parameter``
    objects are kept, so an optimizer built earlier still refers to them.
    """
    _check_model(model)
    done = []
    for name, mod, attr in _pruned_entries(model):
        position = list(mod._parameters).index(attr + "_orig")
        torch_prune.remove(mod, attr)
        _move_parameter(mod, attr, position)
        done.append(name)
    return done


# ==================================================================== gradual
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
    _check_model(model)
    _check_loss(loss_fn)
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
    snapshot = _Snapshot(model, list(model.modules()), optimizer)
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
    from ..pruning.blocks import _progress

    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    losses: list[float] = []
    bar = _progress(steps, progress, desc)
    try:
        while len(losses) < steps:
            got_batch = False
            for x, y in _iter_batches(data):
                got_batch = True
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(_to(x, device)), _to(y, device))
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


# ================================================================= validation
def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {describe(model)}")


def _check_loss(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(
            "loss_fn: expected a callable loss_fn(outputs, targets) -> scalar, "
            f"got {describe(loss_fn)}"
        )


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype: expected np.float32 or np.float64, got {describe(dtype)}"
        ) from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected np.float32 or np.float64, got {dt}")
    return dt


def _check_chunk(chunk_size: Any) -> int | None:
    return check_positive_int(chunk_size, "chunk_size", allow_none=True)


def _check_nonneg_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a non-negative integer, got {describe(value)}")
    if int(value) < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {int(value)}")
    return int(value)
