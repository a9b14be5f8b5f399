"""Where each pruned tensor lives in the flat weight vector.

A :class:`ParamLayout` is the bridge between a framework's named tensors and
the flat vector ``w`` (length ``p``) that the solvers see: tensor ``i`` occupies
``w[offsets[i] : offsets[i] + sizes[i]]`` in C (row-major) order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

from .._validation import check_positive_int, describe

__all__ = ["ParamLayout", "uniform_blocks"]


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of the pruned tensors, in flat-vector order.

    Parameters
    ----------
    names : sequence of str
        One distinct name per tensor (e.g. ``"fc1.weight"``).
    shapes : sequence of tuple of int
        The tensors' shapes, in the same order.

    Attributes
    ----------
    sizes, offsets : tuple of int
        Number of entries of each tensor and where it starts in ``w``.
    p : int
        Total number of entries.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    sizes: tuple[int, ...] = field(init=False)
    offsets: tuple[int, ...] = field(init=False)
    p: int = field(init=False)

    def __init__(self, names: Iterable[str], shapes: Iterable[Sequence[int]]) -> None:
        names = tuple(names)
        shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"names: expected strings, got {describe(name)}")
        if len(names) != len(shapes):
            raise ValueError(
                f"shapes: expected one shape per name ({len(names)}), got {len(shapes)}"
            )
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"names: expected distinct names, got repeats {dup}")
        for name, shape in zip(names, shapes, strict=True):
            if any(d < 0 for d in shape):
                raise ValueError(
                    f"shapes: expected non-negative dimensions, got {shape} for {name!r}"
                )
        sizes = tuple(int(prod(s)) for s in shapes)
        offsets = (
            tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]])) if sizes else ()
        )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "p", int(sum(sizes)))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> ParamLayout:
        """Layout of named arrays (anything with a ``.shape``), in mapping order."""
        return cls(list(arrays), [tuple(np.shape(a)) for a in arrays.values()])

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of ``name`` in the layout."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"name: expected one of {list(self.names)}, got {name!r}") from None

    def slice(self, name: str) -> slice:
        """The slice of ``w`` holding tensor ``name``."""
        i = self.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.sizes[i])

    def ranges(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every tensor in ``w``."""
        return [(o, o + s) for o, s in zip(self.offsets, self.sizes, strict=True)]

    def split(self, w: Any) -> dict[str, np.ndarray]:
        """Views of ``w`` reshaped to each tensor's shape."""
        w = np.asarray(w)
        if w.shape != (self.p,):
            raise ValueError(f"w: expected shape ({self.p},), got {describe(w)}")
        return {
            name: w[o : o + s].reshape(shape)
            for name, shape, o, s in zip(
                self.names, self.shapes, self.offsets, self.sizes, strict=True
            )
        }

    def flatten(
        self, arrays: Mapping[str, Any] | Sequence[Any], dtype: Any = np.float64
    ) -> np.ndarray:
        """Concatenate tensors (a mapping by name, or a sequence in layout order) into ``w``."""
        if isinstance(arrays, Mapping):
            missing = [n for n in self.names if n not in arrays]
            if missing:
                raise KeyError(f"arrays: missing entries for {missing}")
            items = [arrays[n] for n in self.names]
        else:
            items = list(arrays)
            if len(items) != len(self.names):
                raise ValueError(f"arrays: expected {len(self.names)} tensors, got {len(items)}")
        out = np.empty(self.p, dtype=dtype)
        for name, shape, o, s, a in zip(
            self.names, self.shapes, self.offsets, self.sizes, items, strict=True
        ):
            a = np.asarray(a)
            if tuple(a.shape) != shape:
                raise ValueError(f"arrays[{name!r}]: expected shape {shape}, got {describe(a)}")
            out[o : o + s] = a.reshape(-1)
        return out

    def blocks(self, block_size: int) -> list[tuple[int, int]]:
        """Split every tensor into contiguous blocks of about ``block_size`` entries.

        Blocks never straddle two tensors. A tensor of size ``s`` is cut into
        ``max(1, s // block_size)`` nearly equal blocks, so no block is larger
        than ``2 * block_size`` and none is tiny (the research code's rule).
        """
        block_size = int(check_positive_int(block_size, "block_size"))  # type: ignore[arg-type]
        out: list[tuple[int, int]] = []
        for start, stop in self.ranges():
            out.extend(uniform_blocks(start, stop, block_size))
        return out


def uniform_blocks(start: int, stop: int, block_size: int) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into ``max(1, size // block_size)`` nearly equal blocks."""
    size = stop - start
    if size <= 0:
        return []
    n_blocks = max(1, size // block_size)
    edges = start + (np.arange(n_blocks + 1) * size) // n_blocks
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
