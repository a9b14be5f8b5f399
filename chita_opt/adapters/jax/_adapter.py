"""The JAX side of the pruning pipeline: jitted per-example gradients and losses of a pytree.

:class:`JaxAdapter` implements :class:`chita_opt.pruning.FrameworkAdapter`
for ``loss_fn(params, inputs, targets) -> scalar`` and a pytree of
parameters; nothing is modified (:meth:`write` returns new pytrees).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._validation import describe
from ...pruning.damping import Score
from ._layout import PytreeLayout, Select

LossFn = Callable[[Any, Any, Any], Any]

_CHUNK_BYTES = 64 * 2**20
_MAX_CHUNK_ROWS = 256


def _is_tuple_of_arrays(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(hasattr(d, "shape") and hasattr(d, "dtype") for d in data)
    )


def _leading(tree: Any) -> int:
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "data: expected inputs and targets whose arrays share one leading (example) "
            f"axis, got leading sizes {sorted(sizes)}"
        )
    return sizes.pop()


def _batches(data: Any) -> Iterator[tuple[Any, Any]]:
    """Yield the non-empty ``(inputs, targets)`` batches of ``data``, checked."""
    if _is_tuple_of_arrays(data):
        sources: Iterable[Any] = [data]
    elif isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            "data: expected a tuple (inputs, targets) of arrays or an iterable of "
            f"(inputs, targets) batches, got {describe(data)}"
        )
    else:
        sources = data
    for batch in sources:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(
                f"data: expected each batch to be a pair (inputs, targets), got {describe(batch)}"
            )
        inputs, targets = batch
        n_in, n_tg = _leading(inputs), _leading(targets)
        if n_in != n_tg:
            raise ValueError(
                f"data: expected inputs and targets with the same number of examples, got "
                f"{n_in} inputs and {n_tg} targets"
            )
        if n_in:
            yield inputs, targets


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *a: np.concatenate(a, axis=0), *parts)


# ------------------------------------------------------------------ gradients
def _row_gradients(loss_fn: LossFn, layout: PytreeLayout) -> Callable[..., Any]:
    """Jitted ``(selected, rest, xs, ys) -> (rows, p)`` float32 gradient rows.

    ``xs``/``ys`` carry a leading axis of rows and a second axis of the
    ``mini_batch`` examples of each row; each row is the gradient, with respect
    to the selected leaves only, of ``loss_fn`` on that row's examples.
    """
    try:
        return _cached_row_gradients(loss_fn, layout.treedef, layout.n_leaves, layout.indices)
    except TypeError:  # an unhashable loss_fn (e.g. a callable object): no cache
        return _cached_row_gradients.__wrapped__(
            loss_fn, layout.treedef, layout.n_leaves, layout.indices
        )


# Built functions are cached so that gradient_matrix, prune and every stage of
# CHITA++ on the same loss and tree reuse one jitted function (jax.jit caches
# compilations per function object; a fresh closure would compile again).
@functools.lru_cache(maxsize=8)
def _cached_row_gradients(
    loss_fn: LossFn, treedef: Any, n_leaves: int, indices: tuple[int, ...]
) -> Callable[..., Any]:
    selected = set(indices)
    rest_index = [i for i in range(n_leaves) if i not in selected]

    def merge(sel: list[Any], rest: list[Any]) -> Any:
        leaves: list[Any] = [None] * n_leaves
        for i, leaf in zip(indices, sel, strict=True):
            leaves[i] = leaf
        for i, leaf in zip(rest_index, rest, strict=True):
            leaves[i] = leaf
        return jax.tree_util.tree_unflatten(treedef, leaves)

    def one_row(sel: list[Any], rest: list[Any], x: Any, y: Any) -> Any:
        grads = jax.grad(lambda s: loss_fn(merge(s, rest), x, y))(sel)
        return jnp.concatenate([jnp.ravel(g).astype(jnp.float32) for g in grads])

    return jax.jit(jax.vmap(one_row, in_axes=(None, None, 0, 0)))


def _split(params: Any, layout: PytreeLayout) -> tuple[list[Any], list[Any]]:
    leaves = jax.tree_util.tree_leaves(params)
    selected = set(layout.indices)
    sel = [jnp.asarray(leaves[i]) for i in layout.indices]
    rest = [leaves[i] for i in range(layout.n_leaves) if i not in selected]
    return sel, rest


def _check_loss(loss_fn: LossFn, params: Any, inputs: Any, targets: Any) -> None:
    out = jax.eval_shape(loss_fn, params, inputs, targets)
    shape = getattr(out, "shape", None)
    dtype = getattr(out, "dtype", None)
    if shape != () or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            "loss_fn: expected loss_fn(params, inputs, targets) to return a floating-point "
            f"scalar, got {describe(out)}"
        )


def _chunk_rows(p: int, n: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return min(chunk_size, n)
    return max(1, min(n, _MAX_CHUNK_ROWS, _CHUNK_BYTES // max(4 * p, 1)))


def _pad_rows(a: np.ndarray, rows: int, rows_per_call: int, mini_batch: int) -> np.ndarray:
    """``(rows * m, ...)`` -> ``(rows_per_call, m, ...)``, padding by repeating rows.

    Every jitted call sees the same shape, so the last, shorter chunk does not
    trigger a second compilation; padded rows are computed and dropped.
    """
    a = a.reshape((rows, mini_batch, *a.shape[1:]))
    if rows < rows_per_call:
        a = a[np.arange(rows_per_call) % rows]
    return a



class JaxAdapter:
    """:class:`~chita_opt.pruning.FrameworkAdapter` for a pytree and a loss function."""

    framework = "jax"
    output_axis = -1

    def __init__(
        self,
        loss_fn: LossFn,
        params: Any,
        *,
        select: Select = None,
        masks: Any = None,
        chunk_size: int | None = None,
        eval_batch: int = 1024,
        error_fn: LossFn | None = None,
    ) -> None:
        check_callable(loss_fn)
        if error_fn is not None and not callable(error_fn):
            raise TypeError(
                "error_fn: expected None or a callable error_fn(params, inputs, targets) -> "
                f"fraction wrong, got {describe(error_fn)}"
            )
        self.error_fn = error_fn
        self.loss_fn = loss_fn
        self.params = params
        self.layout = PytreeLayout.from_params(params, select)
        self.start_mask = None if masks is None else self.layout.mask_vector(masks)
        self.chunk_size = chunk_size
        self.eval_batch = eval_batch
        self._grad_rows = _row_gradients(loss_fn, self.layout)
        self._checked = False

    # ----------------------------------------------------------------- weights
    def flat_weights(self) -> tuple[np.ndarray, np.ndarray]:
        w = self.layout.flatten_params(self.params)
        mask = np.ones(w.size, dtype=bool) if self.start_mask is None else self.start_mask.copy()
        return w, mask

    def write(self, w: np.ndarray, mask: np.ndarray) -> tuple[Any, Any]:
        """New ``(params, masks)`` pytrees; the input pytree is never modified."""
        return self.layout.unflatten_params(w, self.params), self.layout.masks(mask, self.params)

    # -------------------------------------------------------------------- data
    def batches(self, data: Any) -> Iterator[Any]:
        return _batches(data)

    def as_samples(self, data: Any) -> Any | None:
        if _is_tuple_of_arrays(data):
            return next(iter(_batches(data)), None)
        return None

    def num_samples(self, batch: Any) -> int:
        return _leading(batch[0])

    def take(self, batch: Any, index: np.ndarray) -> Any:
        index = np.asarray(index, dtype=np.int64)
        return jax.tree.map(lambda a: np.asarray(a)[index], batch)

    def concat(self, batches: list[Any]) -> Any:
        return _concat([jax.tree.map(np.asarray, b) for b in batches])

    # --------------------------------------------------------------- gradients
    def gradient_rows(
        self, w: np.ndarray, columns: np.ndarray, samples: Any, mini_batch: int, out: np.ndarray
    ) -> None:
        n = out.shape[0]
        m = mini_batch
        params = self.layout.unflatten_params(w, self.params)
        if not self._checked:
            first = jax.tree.map(lambda a: a[:m], samples)
            _check_loss(self.loss_fn, params, first[0], first[1])
            self._checked = True
        cols = None if bool(columns.all()) else np.flatnonzero(columns)
        per_call = _chunk_rows(self.layout.p, n, self.chunk_size)
        sel, rest = _split(params, self.layout)
        for r0 in range(0, n, per_call):
            rows = min(per_call, n - r0)
            part = jax.tree.map(lambda a, r0=r0, rows=rows: a[r0 * m : (r0 + rows) * m], samples)
            xs, ys = (
                jax.tree.map(lambda a, r=rows: _pad_rows(a, r, per_call, m), p) for p in part
            )
            block = np.asarray(self._grad_rows(sel, rest, xs, ys))[:rows]
            out[r0 : r0 + rows] = block if cols is None else block[:, cols]

    # -------------------------------------------------------------------- loss
    def evaluate(self, w: np.ndarray, batches: Iterable[Any]) -> Score:
        """Mean loss at ``w``; the error too when an ``error_fn`` was given.

        A JAX adapter sees a loss function, not the model's outputs, so it can
        only count classification errors through ``error_fn(params, x, y)``
        (the fraction wrong on a batch).
        """
        params = self.layout.unflatten_params(w, self.params)
        batches = list(batches) if self.error_fn is not None else batches
        loss = mean_loss(self.loss_fn, params, batches, self.eval_batch)
        if self.error_fn is None:
            return Score(loss)
        n = sum(_leading(inputs) for inputs, _ in batches)
        return Score(loss, mean_loss(self.error_fn, params, batches, self.eval_batch), n=n)


def mean_loss(loss_fn: LossFn, params: Any, batches: Iterable[Any], batch_size: int) -> float:
    """Mean of ``loss_fn`` over the samples of ``batches``, evaluated ``batch_size`` at a time."""
    batch_loss = _jitted(loss_fn)
    total = 0.0
    count = 0
    for inputs, targets in batches:
        n = _leading(inputs)
        for s in range(0, n, batch_size):
            x = jax.tree.map(lambda a, s=s: a[s : s + batch_size], inputs)
            y = jax.tree.map(lambda a, s=s: a[s : s + batch_size], targets)
            size = min(batch_size, n - s)
            total += float(batch_loss(params, x, y)) * size
            count += size
    if count == 0:
        raise ValueError("held_out: expected at least one example, got none")
    return total / count


def _jitted(loss_fn: LossFn) -> Callable[..., Any]:
    try:
        return _cached_jit(loss_fn)
    except TypeError:  # unhashable loss_fn
        return jax.jit(loss_fn)


@functools.lru_cache(maxsize=8)
def _cached_jit(loss_fn: LossFn) -> Callable[..., Any]:
    return jax.jit(loss_fn)


def check_callable(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(
            "loss_fn: expected a callable loss_fn(params, inputs, targets), got "
            f"{describe(loss_fn)}"
        )
