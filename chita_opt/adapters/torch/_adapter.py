"""The PyTorch side of the pruning pipeline: per-sample gradients and losses via ``torch.func``.

:class:`TorchAdapter` implements :class:`chita_opt.pruning.FrameworkAdapter`
for an ``nn.Module``: gradients of ``loss_fn(model(inputs), targets)`` with
respect to the selected tensors are taken with ``vmap(grad(...))`` of a
``functional_call`` in eval mode, so the model itself is never modified until
:meth:`write`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap
from torch.utils import _pytree as pytree

from ...pruning import ParamLayout
from ...pruning.damping import Score
from . import _data
from ._batchnorm import batchnorm_modules, recalibrated_buffers, write_statistics
from ._functional import call, tied_names
from ._select import Select, Target, flat_weights, layout_of, select_targets
from ._state import write_back

# Gradient rows are computed in chunks holding at most this many bytes of
# per-row gradients (plus the activations of the chunk's samples).
_CHUNK_BYTES = 1 << 25


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


class _SubstitutedWeights:
    """Run the model on other weights; put back what a pruned module's pre-hook stored.

    A module pruned with torch.nn.utils.prune computes ``module.<attr>`` from
    ``<attr>_orig`` in a forward pre-hook; with substituted tensors that
    attribute would hold our trial weights afterwards.
    """

    def __init__(self, model: nn.Module, targets: Sequence[Target]) -> None:
        self.model = model
        self.targets = targets

    def __enter__(self) -> None:
        self.saved = [
            (t.module, t.attr, t.module.__dict__.get(t.attr)) for t in self.targets if t.pruned
        ]
        self.eval_mode = _EvalMode(self.model)
        self.eval_mode.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.eval_mode.__exit__(*exc)
        for mod, attr, value in self.saved:
            if value is None:
                mod.__dict__.pop(attr, None)
            else:
                mod.__dict__[attr] = value


class TorchAdapter:
    """:class:`~chita_opt.pruning.FrameworkAdapter` for a PyTorch model (see module docs)."""

    framework = "torch"
    output_axis = 0

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor],
        *,
        select: Select = None,
        select_name: str = "select",
        chunk_size: int | None = None,
        vectorize: bool = True,
        recalibrate_bn: bool = True,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.targets = select_targets(model, select, select_name)
        self.layout: ParamLayout = layout_of(self.targets)
        self.keys = [t.key for t in self.targets]
        self.tied = tied_names(model, self.keys)  # other modules' names of the same tensors
        self.device = self.targets[0].leaf.device
        self.vectorize = bool(vectorize)
        self.chunk_size = chunk_size
        self._grad_fns: dict[tuple[int, ...], tuple[Callable[..., Any], Callable[..., Any]]] = {}
        # BatchNorm statistics are re-estimated at pruned weights on the latest
        # gradient samples (see _batchnorm); none without BN layers.
        self.bn = batchnorm_modules(model) if recalibrate_bn else []
        self._calibration: Any = None

    # ----------------------------------------------------------------- weights
    def flat_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return flat_weights(self.targets, self.layout)

    def _tensors(self, w: np.ndarray) -> list[torch.Tensor]:
        out = []
        for t, (a, b) in zip(self.targets, self.layout.ranges(), strict=True):
            leaf = t.leaf
            out.append(
                torch.as_tensor(w[a:b].reshape(leaf.shape), dtype=leaf.dtype).to(self.device)
            )
        return out

    @property
    def wants_calibration(self) -> bool:
        """Whether BatchNorm statistics are re-estimated (the pipeline's optional hook)."""
        return bool(self.bn)

    def calibrate(self, samples: Any) -> None:
        """Samples that re-estimate BatchNorm statistics when no gradient rows are drawn."""
        self._calibration = samples[0]

    @property
    def calibrated(self) -> bool:
        return bool(self.bn) and self._calibration is not None

    def write(self, w: np.ndarray, mask: np.ndarray) -> None:
        statistics = self._statistics(dict(zip(self.keys, self._tensors(w), strict=True)))
        write_back(self.targets, self.layout, w, mask)
        if statistics:
            write_statistics(self.bn, statistics)

    def _statistics(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Re-estimated BN statistics at ``params`` (empty without BN or samples)."""
        if not self.bn or self._calibration is None:
            return {}
        with _SubstitutedWeights(self.model, self.targets):
            return recalibrated_buffers(self.model, params, self.bn, self._calibration,
                                        self.device, self.tied)

    # -------------------------------------------------------------------- data
    def batches(self, data: Any) -> Iterator[Any]:
        for x, y in _data.iter_batches(data):
            if _data.batch_len(x, y):
                yield (x, y)

    def as_samples(self, data: Any) -> Any | None:
        if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
            batch = next(iter(_data.iter_batches(data)))
            _data.batch_len(*batch)
            return batch
        return None

    def num_samples(self, batch: Any) -> int:
        return _data.batch_len(*batch)

    def take(self, batch: Any, index: np.ndarray) -> Any:
        return _data.take(batch, index)

    def concat(self, batches: list[Any]) -> Any:
        if len(batches) == 1:
            return batches[0]
        return (_data.cat([b[0] for b in batches]), _data.cat([b[1] for b in batches]))

    # --------------------------------------------------------------- gradients
    def _grad_fns_for(
        self, wanted: tuple[int, ...]
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """``grad`` (and its ``vmap``) w.r.t. the targets in ``wanted`` only, the rest fixed."""
        if wanted not in self._grad_fns:
            model, loss_fn, tied = self.model, self.loss_fn, self.tied
            diff_keys = [self.keys[i] for i in wanted]
            fixed_keys = [k for i, k in enumerate(self.keys) if i not in wanted]

            def row_loss(
                diff: tuple[torch.Tensor, ...], fixed: tuple[torch.Tensor, ...], x: Any, y: Any
            ) -> torch.Tensor:
                params = dict(zip(diff_keys, diff, strict=True))
                params.update(zip(fixed_keys, fixed, strict=True))
                return loss_fn(call(model, params, (x,), tied), y)

            g = grad(row_loss)
            self._grad_fns[wanted] = (g, vmap(g, in_dims=(None, None, 0, 0)))
        return self._grad_fns[wanted]

    def gradient_rows(
        self, w: np.ndarray, columns: np.ndarray, samples: Any, mini_batch: int, out: np.ndarray
    ) -> None:
        m = mini_batch
        n = out.shape[0]
        tensors = self._tensors(w)
        selections = []  # (target index, column offset in out, count, index tensor or None)
        col = 0
        for i, (a, b) in enumerate(self.layout.ranges()):
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
        chunk = self.chunk_size or max(1, _CHUNK_BYTES // max(1, 4 * self.layout.p))
        chunk = max(1, min(n, int(chunk)))
        out_t = torch.from_numpy(out)
        x_all, y_all = samples
        self._calibration = x_all  # the latest samples re-estimate BN statistics
        with _SubstitutedWeights(self.model, self.targets), torch.no_grad():
            for r0 in range(0, n, chunk):
                r = min(chunk, n - r0)
                x = _data.to_device(_data._slice(x_all, r0 * m, (r0 + r) * m), self.device)
                y = _data.to_device(_data._slice(y_all, r0 * m, (r0 + r) * m), self.device)
                grads = self._row_grads(grad_fn, vgrad_fn, diff, fixed, x, y, r, m)
                for j, (_, c0, cnt, idx) in enumerate(selections):
                    g = grads[j].reshape(r, -1)
                    if idx is not None:
                        g = g.index_select(1, idx)
                    out_t[r0 : r0 + r, c0 : c0 + cnt].copy_(g)

    def _row_grads(
        self,
        grad_fn: Callable[..., Any],
        vgrad_fn: Callable[..., Any],
        diff: tuple[torch.Tensor, ...],
        fixed: tuple[torch.Tensor, ...],
        x: Any,
        y: Any,
        r: int,
        m: int,
    ) -> Any:
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
        rows = [grad_fn(diff, fixed, _data.row(x, j), _data.row(y, j)) for j in range(r)]
        return tuple(torch.stack([g[i] for g in rows]) for i in range(len(diff)))

    # -------------------------------------------------------------------- loss
    def evaluate(self, w: np.ndarray, batches: Iterable[Any]) -> Score:
        """Mean loss at ``w``; with class-index targets also the classification error.

        The error is counted when the outputs are ``(batch, classes)`` scores and
        the targets integer class indices ``(batch,)`` -- what ``F.cross_entropy``
        and ``F.nll_loss`` take. The damping choice ranks candidates by error
        first: on networks the pruning breaks, the loss is dominated by a few
        confident mistakes (docs/benchmarks_zoo.md).
        """
        params = dict(zip(self.keys, self._tensors(w), strict=True))
        params.update(self._statistics(params))
        total = 0.0
        wrong = 0
        count = 0
        classes = True
        with _SubstitutedWeights(self.model, self.targets), torch.no_grad():
            for x, y in batches:
                bs = _data.batch_len(x, y)
                out = call(self.model, params, (_data.to_device(x, self.device),), self.tied)
                y = _data.to_device(y, self.device)
                total += float(self.loss_fn(out, y)) * bs
                count += bs
                classes = classes and _is_classification(out, y)
                if classes:
                    wrong += int((out.argmax(dim=1) != y).sum())
        if count == 0:
            raise ValueError("held_out: expected at least one (inputs, targets) batch, got none")
        return Score(total / count, wrong / count if classes else None, n=count)


def _is_classification(out: Any, y: Any) -> bool:
    return (
        torch.is_tensor(out) and torch.is_tensor(y) and out.ndim == 2 and y.ndim == 1
        and out.shape[0] == y.shape[0] and not torch.is_floating_point(y)
        and not torch.is_complex(y) and y.dtype != torch.bool
    )
