"""The CHITA paper's MLPNet (784-40-20-10, no biases, ReLU, log-softmax).

Importing this module imports torch (it is not imported by ``import chita_opt``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import describe

__all__ = ["MLPNet", "TrainResult", "evaluate", "load_checkpoint", "train_mlpnet"]

logger = logging.getLogger(__name__)


class MLPNet(nn.Module):
    """784-40-20-10 fully connected network without biases (the CHITA paper's MLPNet).

    ``forward`` flattens its input to ``(-1, 784)`` and returns log-probabilities,
    so the matching criterion is ``torch.nn.functional.nll_loss``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 40, bias=False)
        self.fc2 = nn.Linear(40, 20, bias=False)
        self.fc3 = nn.Linear(20, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 784)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


def _as_tensors(X: Any, y: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32) if not torch.is_tensor(X) else X)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64) if not torch.is_tensor(y) else y)
    if Xt.ndim < 2 or Xt[0].numel() != 784:
        raise ValueError(
            f"X: expected an array of n flattened 28x28 images (n, 784), got {describe(X)}"
        )
    if yt.ndim != 1 or yt.shape[0] != Xt.shape[0]:
        raise ValueError(f"y: expected {Xt.shape[0]} integer labels, got {describe(y)}")
    return Xt.to(device=device, dtype=torch.float32), yt.to(device=device, dtype=torch.long)


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (fraction in [0, 1]) and mean negative log-likelihood on a data set."""

    accuracy: float
    loss: float


@torch.no_grad()
def evaluate(model: nn.Module, X: Any, y: Any, *, batch_size: int = 2500) -> Evaluation:
    """Accuracy and mean NLL loss of ``model`` (which returns log-probabilities).

    The model is put in eval mode for the evaluation and its previous mode is
    restored afterwards.
    """
    device = next(model.parameters()).device
    Xt, yt = _as_tensors(X, y, device)
    was_training = model.training
    model.eval()
    try:
        correct = 0
        total_loss = 0.0
        for start in range(0, Xt.shape[0], batch_size):
            out = model(Xt[start : start + batch_size])
            target = yt[start : start + batch_size]
            total_loss += float(F.nll_loss(out, target, reduction="sum"))
            correct += int((out.argmax(dim=1) == target).sum())
    finally:
        model.train(was_training)
    n = int(Xt.shape[0])
    return Evaluation(accuracy=correct / n, loss=total_loss / n)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_mlpnet` did: epochs, final training loss and wall time."""

    epochs: int
    train_loss: float
    time: float


def train_mlpnet(
    X: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    model: MLPNet | None = None,
) -> tuple[MLPNet, TrainResult]:
    """Train an MLPNet with Adam; deterministic for a given ``seed``.

    About two seconds on one CPU core for the 4,000 training digits of the demo
    split (the network has 32,360 weights); reaches about 94% on the 1,000 test
    digits, close to the paper's model (93.97% on the full MNIST test set).
    Runs on one torch thread (restored afterwards).

    Parameters
    ----------
    X : array_like, shape (n, 784)
        Normalised images.
    y : array_like, shape (n,)
        Labels 0..9.
    epochs, batch_size, lr
        Adam training schedule (learning rate decays by cosine to 0).
    seed : int
        Seeds the initial weights and the mini-batch order.
    model : MLPNet, optional
        Continue training this model instead of a fresh one.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {describe(value)}")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr: expected a positive number, got {describe(lr)}")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    # A 32k-weight network: one thread is faster than several (thread hand-offs
    # dominate) and immune to oversubscription on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if model is None:
            # Initialise under a private seed so the global torch RNG is untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                model = MLPNet()
        running = _adam_epochs(model, X, y, epochs, batch_size, float(lr), gen)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model, TrainResult(epochs=epochs, train_loss=running, time=time.perf_counter() - t0)


def _adam_epochs(
    model: nn.Module, X: Any, y: Any, epochs: int, batch_size: int, lr: float,
    gen: torch.Generator,
) -> float:
    """Adam with a cosine-decaying step; returns the last epoch's mean training loss.

    Written out (a dozen lines) rather than ``torch.optim.Adam`` because
    constructing a torch optimizer imports ``torch._dynamo``, which costs
    seconds -- more than the whole training of this network.
    """
    device = next(model.parameters()).device
    Xt, yt = _as_tensors(X, y, device)
    n = int(Xt.shape[0])
    params = [p for p in model.parameters() if p.requires_grad]
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    steps = epochs * ((n + batch_size - 1) // batch_size)
    step = 0
    running = float("nan")
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            for p in params:
                p.grad = None
            loss = F.nll_loss(model(Xt[idx]), yt[idx])
            loss.backward()
            step += 1
            lr_t = lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps))
            with torch.no_grad():
                for p, a, b in zip(params, m1, m2, strict=True):
                    a.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                    b.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    denom = (b / (1 - beta2**step)).sqrt_().add_(eps)
                    p.addcdiv_(a, denom, value=-lr_t / (1 - beta1**step))
            total += loss.item() * idx.numel()
        running = total / n
        logger.debug("epoch %d: training loss %.4f", epoch + 1, running)
    for p in params:
        p.grad = None
    return running


# "module.fc1._layer.weight" (the paper's checkpoint) -> "fc1.weight"
_PAPER_KEY = re.compile(r"^(?:module\.)?(fc[123])\.(?:_layer\.)?weight$")
_MASK_KEY = re.compile(r"^(?:module\.)?(fc[123])\._weight_mask$")


def _extract_state_dict(obj: Any) -> Mapping[str, Any]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"checkpoint: expected a path, a state dict or a checkpoint dict, got {describe(obj)}"
        )
    for key in ("model_state_dict", "state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
        if isinstance(inner, nn.Module):
            return inner.state_dict()
    return obj


def load_checkpoint(checkpoint: Any, *, map_location: str | torch.device = "cpu") -> MLPNet:
    """An :class:`MLPNet` with the weights of a checkpoint.

    Parameters
    ----------
    checkpoint : str, path, dict or nn.Module
        A file written by ``torch.save``, or what it holds: a plain state dict
        (``fc1.weight``, ...), a checkpoint dict with the state dict under
        ``model_state_dict`` / ``state_dict`` / ``model``, the CHITA paper's
        format (``module.fc1._layer.weight`` with ``module.fc1._weight_mask``
        entries, which are applied) or a model.
    map_location
        Passed to ``torch.load``.

    Raises
    ------
    FileNotFoundError
        If a path is given that does not exist.
    ValueError
        If the weights are missing or do not have MLPNet's shapes.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint: no such file {path!r}")
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except Exception:
            # The paper's checkpoint pickles the optimizer class, which the safe
            # loader refuses; fall back to a full load of a file the user chose.
            obj = torch.load(path, map_location=map_location, weights_only=False)
    else:
        obj = checkpoint
    state = _extract_state_dict(obj)
    weights: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if (m := _PAPER_KEY.match(key)) is not None:
            weights[m.group(1)] = torch.as_tensor(value)
        elif (m := _MASK_KEY.match(key)) is not None:
            masks[m.group(1)] = torch.as_tensor(value)
    model = MLPNet()
    expected = {name: tuple(getattr(model, name).weight.shape) for name in ("fc1", "fc2", "fc3")}
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise ValueError(
            "checkpoint: expected MLPNet weights fc1/fc2/fc3 (as 'fcN.weight' or "
            f"'module.fcN._layer.weight'), missing {missing}; keys found: "
            f"{sorted(state)[:10]}"
        )
    with torch.no_grad():
        for name, shape in expected.items():
            w = weights[name]
            if tuple(w.shape) != shape:
                raise ValueError(
                    f"checkpoint: expected {name} weight of shape {shape}, got {tuple(w.shape)}"
                )
            if name in masks:
                w = w * masks[name].to(w.dtype)
            getattr(model, name).weight.copy_(w.to(torch.float32))
    model.eval()
    return model
