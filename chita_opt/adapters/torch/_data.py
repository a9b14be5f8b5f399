"""Batches of (inputs, targets) for the PyTorch adapter: validation, counting, indexing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from ..._validation import describe


def _is_tensor_tree(x: Any) -> bool:
    leaves = pytree.tree_leaves(x)
    return bool(leaves) and all(torch.is_tensor(leaf) for leaf in leaves)


def iter_batches(data: Any) -> Iterator[tuple[Any, Any]]:
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


def batch_len(x: Any, y: Any) -> int:
    sizes = {int(leaf.shape[0]) if leaf.ndim else -1 for leaf in pytree.tree_leaves((x, y))}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "data: expected inputs and targets with the same leading (batch) dimension, "
            f"got leading sizes {sorted(sizes)}"
        )
    return sizes.pop()


def _slice(tree: Any, start: int, stop: int) -> Any:
    return pytree.tree_map(lambda a: a[start:stop], tree)


def cat(trees: list[Any]) -> Any:
    if len(trees) == 1:
        return trees[0]
    return pytree.tree_map(lambda *a: torch.cat(a), *trees)


def to_device(tree: Any, device: torch.device) -> Any:
    return pytree.tree_map(lambda a: a.to(device, non_blocking=True), tree)




def take(tree: Any, index: np.ndarray) -> Any:
    """Samples at positions ``index`` of every tensor in ``tree``."""
    idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
    return pytree.tree_map(lambda a: a.index_select(0, idx.to(a.device)), tree)


def row(tree: Any, j: int) -> Any:
    return pytree.tree_map(lambda a: a[j], tree)
