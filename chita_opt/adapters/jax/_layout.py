"""Selecting the leaves of a pytree and flattening them (``PytreeLayout``)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._validation import describe
from ...pruning import ParamLayout

Select = Callable[[str, Any], bool] | str | Sequence[str] | None

# Leaf names that are never pruned by default: biases and normalisation scales
# are tiny and pruning them hurts far more than it saves; embedding tables are
# lookups, not products, and the per-example gradient model fits them badly.
_SKIP_LAST = re.compile(r"bias|scale", re.IGNORECASE)
_SKIP_ANY = re.compile(r"embed", re.IGNORECASE)


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
