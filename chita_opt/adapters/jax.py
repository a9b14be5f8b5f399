"""JAX adapter: prune the weights of a pytree of parameters with CHITA.

JAX models are pure functions of a pytree of parameters, so this adapter never
touches a model object: it takes ``loss_fn(params, inputs, targets) -> scalar``,
the ``params`` pytree and some data, and returns *new* pytrees (the input is
never modified)::

    from chita_opt.adapters.jax import prune

    new_params, masks, report = prune(loss_fn, params, (x_train, y_train), sparsity=0.9)

The data flow is the package's usual one: per-example gradients of the selected
leaves become the rows of ``G`` (:func:`gradient_matrix`), the framework-agnostic
:mod:`chita_opt.pruning` loop builds and solves the L0 problems (one-shot,
multi-stage CHITA++, blocks), and the solution is written back into a copy of
the pytree with the same structure, dtypes, shapes and devices.

Importing this module imports ``jax``; ``import chita_opt`` does not.

Selecting leaves
----------------
Leaves are named by their pytree path joined with ``/``: a Flax tree
``{"params": {"Dense_0": {"kernel": ...}}}`` has the leaf
``"params/Dense_0/kernel"``; a list of dicts ``[{"w": ..., "b": ...}, ...]`` has
``"0/w"``, ``"0/b"``, ``"1/w"``... ``select`` is

* ``None`` (default): every floating-point leaf with ``ndim >= 2`` whose name
  does not look like a bias, a scale or an embedding table;
* a list of patterns (or one pattern): shell-style globs matched against the
  whole path with :func:`fnmatch.fnmatchcase` (``"*/kernel"``,
  ``"params/Dense_[01]/kernel"``); a pattern starting with ``"re:"`` is a
  regular expression matched against the whole path with :func:`re.fullmatch`
  (``"re:params/Dense_\\d+/kernel"``). Every pattern must match at least one leaf;
* a callable ``select(path, leaf) -> bool`` receiving the ``/``-joined path.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_nonnegative, check_positive_int, check_sparsity, describe
from ..pruning import (
    DEFAULT_DAMPING,
    DEFAULT_DAMPING_GRID,
    ParamLayout,
    PruneReport,
    multistage_prune,
    select_damping,
)

__all__ = [
    "PytreeLayout",
    "apply_masks",
    "gradient_matrix",
    "held_out_loss",
    "leaf_paths",
    "prune",
    "select_leaves",
]

logger = logging.getLogger(__name__)

LossFn = Callable[[Any, Any, Any], Any]
Select = Callable[[str, Any], bool] | str | Sequence[str] | None

# Leaf names that are never pruned by default: biases and normalisation scales
# are tiny and pruning them hurts far more than it saves; embedding tables are
# lookups, not products, and the per-example gradient model fits them badly.
_SKIP_LAST = re.compile(r"bias|scale", re.IGNORECASE)
_SKIP_ANY = re.compile(r"embed", re.IGNORECASE)

# Bytes of one chunk of gradient rows computed per jitted call (float32).
_CHUNK_BYTES = 64 * 2**20
_MAX_CHUNK_ROWS = 256


# --------------------------------------------------------------------- leaves
def leaf_paths(params: Any) -> list[str]:
    """The ``/``-joined path of every leaf of ``params``, in flattening order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [_path_str(path) for path, _ in flat]


def _path_str(path: Any) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _is_float_leaf(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def _default_select(path: str, leaf: Any) -> bool:
    if not _is_float_leaf(leaf) or np.ndim(leaf) < 2:
        return False
    last = path.rsplit("/", 1)[-1]
    return not (_SKIP_LAST.search(last) or _SKIP_ANY.search(path))


def _pattern_matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as exc:
            raise ValueError(f"select: invalid regular expression {pattern!r}: {exc}") from exc
        return lambda path: regex.fullmatch(path) is not None
    return lambda path: fnmatch.fnmatchcase(path, pattern)


def _preview(paths: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(p) for p in paths[:limit])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")


def select_leaves(params: Any, select: Select = None) -> list[int]:
    """Indices (in flattening order) of the leaves of ``params`` that ``select`` picks.

    Parameters
    ----------
    params : pytree
        The parameters.
    select : None, str, sequence of str or callable
        See the module docstring: ``None`` for the default rule, glob patterns
        (``"re:"`` prefix for regular expressions) or ``select(path, leaf) -> bool``.

    Returns
    -------
    list of int
        Sorted leaf indices.

    Raises
    ------
    TypeError
        ``select`` has the wrong type, or picks a leaf that is not a
        floating-point array.
    ValueError
        A pattern matches no leaf, or nothing is selected.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    paths = [_path_str(path) for path, _ in flat]
    leaves = [leaf for _, leaf in flat]
    if not leaves:
        raise ValueError(f"params: expected a pytree with array leaves, got {describe(params)}")
    if select is None:
        chosen = [i for i, leaf in enumerate(leaves) if _default_select(paths[i], leaf)]
        if not chosen:
            raise ValueError(
                "select: the default rule (floating-point leaves with ndim >= 2 that are not "
                f"biases, scales or embeddings) matched no leaf among {_preview(paths)}; "
                "pass select= explicitly"
            )
        return chosen
    if callable(select):
        chosen = [i for i, leaf in enumerate(leaves) if bool(select(paths[i], leaf))]
        if not chosen:
            raise ValueError(f"select: the predicate matched no leaf among {_preview(paths)}")
    else:
        patterns = [select] if isinstance(select, str) else select
        if not isinstance(patterns, Sequence) or not all(isinstance(s, str) for s in patterns):
            raise TypeError(
                "select: expected None, a callable (path, leaf) -> bool, a pattern string or a "
                f"list of pattern strings, got {describe(select)}"
            )
        if len(patterns) == 0:
            raise ValueError("select: expected at least one pattern, got an empty list")
        hit: set[int] = set()
        for pattern in patterns:
            match = _pattern_matcher(pattern)
            found = [i for i, p in enumerate(paths) if match(p)]
            if not found:
                raise ValueError(
                    f"select: pattern {pattern!r} matched no leaf; leaves are {_preview(paths)} "
                    "(patterns are shell globs over the whole '/'-joined path, or regular "
                    "expressions with the 're:' prefix)"
                )
            hit.update(found)
        chosen = sorted(hit)
    bad = [i for i in chosen if not _is_float_leaf(leaves[i])]
    if bad:
        kinds = ", ".join(f"{paths[i]!r} ({describe(leaves[i])})" for i in bad)
        raise TypeError(f"select: expected floating-point array leaves, got {kinds}")
    return chosen


# --------------------------------------------------------------------- layout
class PytreeLayout(ParamLayout):
    """A :class:`~chita_opt.pruning.ParamLayout` that also knows the pytree.

    Besides the names (``/``-joined paths), shapes, sizes and offsets of the
    selected leaves in the flat vector ``w``, it records the structure of the
    whole pytree, which leaves are selected and their dtypes, so a vector can be
    written back into a copy of the parameters.

    Attributes
    ----------
    treedef : PyTreeDef
        Structure of the whole parameter pytree.
    n_leaves : int
        Number of leaves of the pytree.
    indices : tuple of int
        Leaf indices (flattening order) of the selected leaves.
    dtypes : tuple of numpy.dtype
        Dtypes of the selected leaves.
    """

    treedef: Any
    n_leaves: int
    indices: tuple[int, ...]
    dtypes: tuple[np.dtype, ...]

    def __init__(
        self,
        names: Sequence[str],
        shapes: Sequence[Sequence[int]],
        *,
        treedef: Any,
        n_leaves: int,
        indices: Sequence[int],
        dtypes: Sequence[Any],
    ) -> None:
        super().__init__(names, shapes)
        object.__setattr__(self, "treedef", treedef)
        object.__setattr__(self, "n_leaves", int(n_leaves))
        object.__setattr__(self, "indices", tuple(int(i) for i in indices))
        object.__setattr__(self, "dtypes", tuple(np.dtype(d) for d in dtypes))

    @classmethod
    def from_params(cls, params: Any, select: Select = None) -> PytreeLayout:
        """Build the layout of the leaves of ``params`` that ``select`` picks."""
        leaves, treedef = jax.tree_util.tree_flatten(params)
        indices = select_leaves(params, select)
        paths = leaf_paths(params)
        return cls(
            [paths[i] for i in indices],
            [np.shape(leaves[i]) for i in indices],
            treedef=treedef,
            n_leaves=len(leaves),
            indices=indices,
            dtypes=[leaves[i].dtype for i in indices],
        )

    def _check_params(self, params: Any, name: str = "params") -> list[Any]:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        if treedef != self.treedef:
            raise ValueError(
                f"{name}: expected a pytree with the structure the layout was built from, "
                f"got {treedef}"
            )
        for i, nm, shape in zip(self.indices, self.names, self.shapes, strict=True):
            if tuple(np.shape(leaves[i])) != shape:
                raise ValueError(
                    f"{name}: expected leaf {nm!r} of shape {shape}, got {np.shape(leaves[i])}"
                )
        return leaves

    def flatten_params(self, params: Any) -> np.ndarray:
        """The selected weights of ``params`` as one float64 vector of length ``p``."""
        leaves = self._check_params(params)
        return self.flatten([np.asarray(leaves[i]) for i in self.indices])

    def unflatten_params(self, w: Any, params: Any) -> Any:
        """A new pytree: ``params`` with the selected leaves replaced by ``w``.

        Leaves keep their dtype, shape and device; leaves that are not
        selected are shared (JAX arrays are immutable) or copied (numpy).
        ``params`` itself is not modified.
        """
        leaves = self._check_params(params)
        parts = self.split(w)
        out = [_copy_leaf(leaf) for leaf in leaves]
        for i, name in zip(self.indices, self.names, strict=True):
            out[i] = _like(leaves[i], parts[name])
        return jax.tree_util.tree_unflatten(self.treedef, out)

    def masks(self, keep: Any, params: Any) -> Any:
        """Boolean pytree shaped like ``params``: ``True`` where a weight may be non-zero.

        ``keep`` is a boolean vector of length ``p`` (or weights, then
        ``keep = w != 0``); leaves that are not pruned are all ``True``.
        """
        leaves = self._check_params(params)
        keep = np.asarray(keep)
        parts = self.split(keep if keep.dtype == np.bool_ else keep != 0)
        out: list[Any] = [jnp.ones(np.shape(leaf), dtype=bool) for leaf in leaves]
        for i, name in zip(self.indices, self.names, strict=True):
            out[i] = jnp.asarray(parts[name])
        return jax.tree_util.tree_unflatten(self.treedef, out)

    def mask_vector(self, masks: Any, name: str = "masks") -> np.ndarray:
        """The selected leaves of a boolean pytree shaped like the parameters, flattened."""
        leaves, treedef = jax.tree_util.tree_flatten(masks)
        if treedef != self.treedef:
            raise ValueError(
                f"{name}: expected a boolean pytree with the structure of params, got {treedef}"
            )
        parts = []
        for i, nm, shape in zip(self.indices, self.names, self.shapes, strict=True):
            leaf = np.asarray(leaves[i])
            if leaf.dtype != np.bool_ or leaf.shape != shape:
                raise TypeError(
                    f"{name}: expected a boolean array of shape {shape} for {nm!r}, "
                    f"got {describe(leaf)}"
                )
            parts.append(leaf)
        return self.flatten(parts, dtype=bool)


def _copy_leaf(leaf: Any) -> Any:
    # numpy leaves are mutable: copy so the new tree never aliases the input.
    return leaf.copy() if isinstance(leaf, np.ndarray) else leaf


def _like(old: Any, values: np.ndarray) -> Any:
    """``values`` as an array of the kind, dtype and placement of ``old``."""
    if isinstance(old, jax.Array):
        new = jnp.asarray(values, dtype=old.dtype)
        try:
            return jax.device_put(new, old.sharding)
        except Exception:  # pragma: no cover - exotic shardings: keep the default device
            return new
    return np.asarray(values, dtype=old.dtype).copy()


def apply_masks(params: Any, masks: Any) -> Any:
    """``params`` with every entry where ``masks`` is ``False`` set to zero (a new pytree).

    Use it after an optimizer step (or mask the updates, see docs/pruning_jax.md)
    to keep pruned weights at zero while fine-tuning. Works under ``jax.jit``.
    """
    return jax.tree_util.tree_map(
        lambda p, m: jnp.where(m, p, jnp.zeros((), dtype=p.dtype)), params, masks
    )


# ----------------------------------------------------------------------- data
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


def _regroup(batches: Iterator[tuple[Any, Any]], size: int, limit: int) -> Iterator[Any]:
    """Re-cut a stream of batches into groups of exactly ``size`` examples.

    Stops after ``limit`` examples; the last group may be shorter. Only about
    one group is held in memory at a time, as host (numpy) arrays: a batch is
    cut to what is needed before it is copied from the device.
    """
    pending: list[Any] = []
    held = 0
    taken = 0
    for batch in batches:
        n = min(_leading(batch[0]), limit - taken)
        batch = jax.tree.map(lambda a, n=n: np.asarray(a[:n]), batch)
        pending.append(batch)
        held += n
        taken += n
        while held >= size:
            joined = _concat(pending)
            yield jax.tree.map(lambda a: a[:size], joined)
            rest = jax.tree.map(lambda a: a[size:], joined)
            held -= size
            pending = [rest] if held else []
        if taken >= limit:
            break
    if held:
        yield _concat(pending)


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


def gradient_matrix(
    loss_fn: LossFn,
    params: Any,
    data: Any,
    *,
    select: Select = None,
    n_samples: int = 1000,
    mini_batch: int = 1,
    chunk_size: int | None = None,
    progress: bool = False,
    layout: PytreeLayout | None = None,
) -> tuple[np.ndarray, np.ndarray, PytreeLayout]:
    """Per-example (or per-mini-batch) gradients of the selected leaves.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, inputs, targets) -> scalar``: the loss of a batch
        (inputs and targets carry a leading example axis). Each gradient row
        is ``grad loss_fn(params, x, y)`` on a batch of ``mini_batch``
        consecutive examples (so a mean loss gives mean gradients).
    params : pytree
        The current parameters (not modified).
    data : tuple of arrays or iterable of batches
        ``(inputs, targets)``, two arrays with a leading example axis; or an
        iterable of ``(inputs, targets)`` batches of any size (e.g. a data
        loader), whose inputs and targets may be pytrees of arrays. Only the
        first ``n_samples * mini_batch`` examples are used.
    select : None, str, sequence of str or callable
        Which leaves to differentiate (see the module docstring).
    n_samples : int, default 1000
        Number of gradient rows ``n``. Fewer rows are returned when the data
        run out (a warning is logged).
    mini_batch : int, default 1
        Examples per gradient row.
    chunk_size : int, optional
        Rows computed per jitted call (default: as many as fit in 64 MiB, at
        most 256). Larger chunks are faster and use more memory.
    progress : bool, default False
        Show a tqdm progress bar.
    layout : PytreeLayout, optional
        A layout already built for ``params`` (overrides ``select``).

    Returns
    -------
    G : ndarray, shape (n, p), float32
        Gradient rows; preallocated once and filled chunk by chunk.
    w : ndarray, shape (p,), float64
        The selected weights, flattened in the same order as the columns of ``G``.
    layout : PytreeLayout
        Where each selected leaf lives in ``w``; ``layout.unflatten_params(w, params)``
        writes a vector back into a copy of ``params``.
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    mini_batch = check_positive_int(mini_batch, "mini_batch")
    chunk_size = check_positive_int(chunk_size, "chunk_size", allow_none=True)
    _check_callable(loss_fn)
    if layout is None:
        layout = PytreeLayout.from_params(params, select)
    grad_rows = _row_gradients(loss_fn, layout)
    G = _fill_rows(
        grad_rows,
        loss_fn,
        params,
        data,
        layout,
        n_samples=n_samples,
        mini_batch=mini_batch,
        chunk_size=chunk_size,
        progress=progress,
    )
    return G, layout.flatten_params(params), layout


def _check_callable(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(
            "loss_fn: expected a callable loss_fn(params, inputs, targets), got "
            f"{describe(loss_fn)}"
        )


def _fill_rows(
    grad_rows: Callable[..., Any],
    loss_fn: LossFn,
    params: Any,
    data: Any,
    layout: PytreeLayout,
    *,
    n_samples: int,
    mini_batch: int,
    chunk_size: int | None,
    progress: bool,
    columns: np.ndarray | None = None,
    buffer: np.ndarray | None = None,
) -> np.ndarray:
    """Stream chunks of examples through ``grad_rows`` into one preallocated ``G``.

    ``columns`` (sorted indices into the flat vector) keeps only those
    columns; ``buffer`` (float32, at least ``n_samples * n_columns`` entries)
    is reused for ``G`` instead of allocating a new array.
    """
    rows_per_call = _chunk_rows(layout.p, n_samples, chunk_size)
    n_cols = layout.p if columns is None else int(columns.size)
    if buffer is None:
        G = np.empty((n_samples, n_cols), dtype=np.float32)
    else:
        G = buffer[: n_samples * n_cols].reshape(n_samples, n_cols)
    sel, rest = _split(params, layout)
    bar = _progress_bar(n_samples, progress, "gradients")
    filled = 0
    checked = False
    try:
        for group in _regroup(_batches(data), rows_per_call * mini_batch, n_samples * mini_batch):
            rows = _leading(group[0]) // mini_batch
            if rows == 0:
                break
            group = jax.tree.map(lambda a, r=rows: a[: r * mini_batch], group)
            if not checked:
                first = jax.tree.map(lambda a: a[:mini_batch], group)
                _check_loss(loss_fn, params, first[0], first[1])
                checked = True
            xs, ys = (
                jax.tree.map(lambda a, r=rows: _pad_rows(a, r, rows_per_call, mini_batch), part)
                for part in group
            )
            block = np.asarray(grad_rows(sel, rest, xs, ys))[:rows]
            G[filled : filled + rows] = block if columns is None else block[:, columns]
            filled += rows
            bar.update(rows)
    finally:
        bar.close()
    if filled == 0:
        raise ValueError(
            f"data: expected at least mini_batch={mini_batch} examples, got none usable"
        )
    if filled < n_samples:
        logger.warning(
            "data ran out: computed %d gradient rows instead of n_samples=%d", filled, n_samples
        )
        G = G[:filled]
    if not np.all(np.isfinite(G)):
        raise ValueError(
            "loss_fn: gradients contain NaN or Inf; check the loss and the data "
            f"({int((~np.isfinite(G)).sum())} non-finite entries)"
        )
    return G


def _pad_rows(a: np.ndarray, rows: int, rows_per_call: int, mini_batch: int) -> np.ndarray:
    """``(rows * m, ...)`` -> ``(rows_per_call, m, ...)``, padding by repeating rows.

    Every jitted call sees the same shape, so the last, shorter chunk does not
    trigger a second compilation; padded rows are computed and dropped.
    """
    a = a.reshape((rows, mini_batch, *a.shape[1:]))
    if rows < rows_per_call:
        a = a[np.arange(rows_per_call) % rows]
    return a


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional for JAX users: run without a bar
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="row", leave=False)


# ---------------------------------------------------------------------- prune
def _replayable(data: Any, limit: int) -> Any:
    """``data`` itself if it can be iterated again, else its first ``limit`` examples.

    Multi-stage pruning recomputes gradients at every stage; a one-shot
    iterator (a generator, ``iter(loader)``) would be empty at stage 2, so the
    examples it yields are kept (memory: the data of ``n_samples`` rows).
    """
    if _is_tuple_of_arrays(data):
        return data
    if isinstance(data, Iterator):
        groups = list(_regroup(_batches(data), limit, limit))
        return groups
    return data


def held_out_loss(loss_fn: LossFn, params: Any, data: Any, *, batch_size: int = 1024) -> float:
    """Mean of ``loss_fn`` over all examples of ``data`` (weighted by batch size).

    ``data`` is a tuple of arrays or an iterable of batches, as for
    :func:`gradient_matrix`; examples are evaluated in jitted batches of
    ``batch_size``.
    """
    _check_callable(loss_fn)
    batch_size = int(check_positive_int(batch_size, "batch_size"))  # type: ignore[arg-type]
    batch_loss = jax.jit(loss_fn)
    total = 0.0
    count = 0
    for inputs, targets in _regroup(_batches(data), batch_size, sys.maxsize):
        n = _leading(inputs)
        total += float(batch_loss(params, inputs, targets)) * n
        count += n
    if count == 0:
        raise ValueError("held_out: expected at least one example, got none")
    return total / count


def prune(
    loss_fn: LossFn,
    params: Any,
    data: Any,
    *,
    sparsity: float,
    method: str = "chita",
    stages: int = 1,
    schedule: str | Sequence[float] = "exp",
    base_level: float | None = None,
    select: Select = None,
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
    masks: Any = None,
    solver_options: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> tuple[Any, Any, PruneReport]:
    """Prune a pytree of parameters with CHITA / CHITA++ (or magnitude pruning).

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, inputs, targets) -> scalar`` (see :func:`gradient_matrix`).
    params : pytree
        The trained parameters; never modified.
    data : tuple of arrays or iterable of batches
        Examples for the gradient rows (see :func:`gradient_matrix`). With
        ``stages > 1`` gradients are recomputed at every stage: a re-iterable
        ``data`` (arrays, a list, a loader) is iterated again, a one-shot
        iterator is read once and its examples kept.
    sparsity : float
        Fraction of the selected weights set to exactly zero, in ``[0, 1)``;
        ``k = p - round(sparsity * p)`` weights survive.
    method : str, default "chita"
        Solver for every stage (see :func:`chita_opt.available_methods`);
        ``"magnitude"`` keeps the largest ``|w|`` and computes no gradients.
    stages : int, default 1
        1 is one-shot CHITA; more stages is CHITA++ (gradients recomputed at
        the current weights between stages, along ``schedule``).
    schedule : {"exp", "poly", "linear", "const"} or sequence of float
        Sparsity schedule over the stages (:func:`chita_opt.pruning.sparsity_schedule`).
    base_level : float, optional
        Sparsity of the first stage (default ``min(0.1, sparsity)``).
    select : None, str, sequence of str or callable
        Which leaves to prune (see the module docstring); the sparsity is
        global over all selected leaves.
    n_samples : int, default 1000
        Gradient rows per stage.
    mini_batch : int, default 1
        Examples per gradient row.
    damping : float or "auto", default 1e-3 (``chita_opt.pruning.DEFAULT_DAMPING``)
        Ridge added to the empirical Fisher (``l2 = n * damping``). ``"auto"``
        prunes once per value of ``damping_grid`` and keeps the one with the
        lowest loss on ``held_out`` (:func:`held_out_loss`).
    damping_grid : sequence of float
        Candidates for ``damping="auto"``.
    held_out : tuple of arrays or iterable of batches, optional
        Held-out data for ``damping="auto"`` (not the gradient data).
    first_order : bool, default False
        Include the mean-gradient (linear) term of the local model; helps
        CHITA++ at high sparsity.
    first_order_scale : float, optional
        Multiplier of the linear term; default ``1 / mini_batch`` (see
        :func:`chita_opt.pruning.multistage_prune`).
    block_size : int, optional
        Block approximation: blocks of about this many weights inside each leaf.
    executor : Executor-like, optional
        Where blocks are solved (``concurrent.futures`` executors,
        ``dask.distributed.Client``).
    max_gradient_columns : int, optional
        With blocks: compute gradients for at most this many weights at a
        time (gradient memory ``n x max_gradient_columns``).
    masks : pytree of bool, optional
        Weights allowed to be non-zero at the start (e.g. the ``masks`` of an
        earlier call), shaped like ``params``.
    solver_options : mapping, optional
        Extra options for :func:`chita_opt.solve`.
    chunk_size : int, optional
        Gradient rows per jitted call (see :func:`gradient_matrix`).
    progress : bool, default True
        Progress bars over stages and gradient rows.

    Returns
    -------
    new_params : pytree
        Same structure, dtypes, shapes and devices as ``params``, pruned.
    masks : pytree of bool
        Same structure as ``params``: ``True`` where a weight may be non-zero
        (exactly ``k`` over the selected leaves; all ``True`` in the others).
        Keep pruned weights at zero while fine-tuning with :func:`apply_masks`
        or by masking the updates (docs/pruning_jax.md).
    report : PruneReport
        Sparsity per leaf, objective and time per stage, options used.
    """
    _check_callable(loss_fn)
    layout = PytreeLayout.from_params(params, select)
    check_sparsity(sparsity, "sparsity")
    n_samples = int(check_positive_int(n_samples, "n_samples"))  # type: ignore[arg-type]
    mini_batch = int(check_positive_int(mini_batch, "mini_batch"))  # type: ignore[arg-type]
    chunk_size = check_positive_int(chunk_size, "chunk_size", allow_none=True)
    auto = isinstance(damping, str)
    if auto and damping != "auto":
        raise ValueError(f"damping: expected a non-negative number or 'auto', got {damping!r}")
    if auto and held_out is None:
        raise TypeError("held_out: expected held-out data for damping='auto', got None")
    if not auto:
        damping = check_nonnegative(damping, "damping")
    if first_order_scale is None:
        first_order_scale = 1.0 / mini_batch
    start_mask = None if masks is None else layout.mask_vector(masks)
    w0 = layout.flatten_params(params)

    gradient_fn = None
    if method != "magnitude":
        replay = _replayable(data, n_samples * mini_batch)
        grad_rows = _row_gradients(loss_fn, layout)
        # One float32 buffer of n x p for every stage: later stages need fewer
        # columns and reuse its front part, so memory stays n x p throughout.
        buffer: list[np.ndarray] = []

        def gradient_fn(w: np.ndarray, columns: np.ndarray) -> np.ndarray:
            if not buffer:
                buffer.append(np.empty(n_samples * layout.p, dtype=np.float32))
            current = layout.unflatten_params(w, params)
            cols = None if bool(columns.all()) else np.flatnonzero(columns)
            return _fill_rows(
                grad_rows,
                loss_fn,
                current,
                replay,
                layout,
                n_samples=n_samples,
                mini_batch=mini_batch,
                chunk_size=chunk_size,
                progress=progress,
                columns=cols,
                buffer=buffer[0],
            )

    def run(damping_value: float) -> PruneReport:
        return multistage_prune(
            w0,
            gradient_fn,
            sparsity=sparsity,
            stages=stages,
            schedule=schedule,
            base_level=base_level,
            method=method,
            damping=damping_value,
            first_order=first_order,
            first_order_scale=first_order_scale,
            mask=start_mask,
            layout=layout,
            block_size=block_size,
            executor=executor,
            max_columns=max_gradient_columns,
            solver_options=solver_options,
            progress=progress,
            options={
                "framework": "jax",
                "n_samples": n_samples,
                "mini_batch": mini_batch,
                "leaves": list(layout.names),
            },
        )

    if auto:
        held = _replayable(held_out, sys.maxsize)
        selection = select_damping(
            run,
            lambda rep: held_out_loss(loss_fn, layout.unflatten_params(rep.weights, params), held),
            damping_grid,
        )
        report = selection.report
        report.options["damping"] = selection.damping
        report.options["damping_selection"] = "auto"
    else:
        report = run(float(damping))  # type: ignore[arg-type]
    new_params = layout.unflatten_params(report.weights, params)
    return new_params, layout.masks(report.mask, params), report
